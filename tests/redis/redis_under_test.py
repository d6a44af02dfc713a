"""A real redis-server with TLS and client certificates in tmp_path, for the redis_admin tests (fixtures in
conftest.py).

Certificates are made at test time with cryptography (never committed); Redis listens on a free loopback port.
"""
import datetime
import os
import socket
import subprocess
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.fleetpki.mtls.plugins.module_utils._redis.acl import password_hash

# Distinctive values, so a leak anywhere is found by a plain substring search.
ADMIN_PASSWORD = 'Adm1n-redis-admin-test-pw-x7Q2'
LEGACY_PASSWORD = 'Legacy-shared-requirepass-k3M9'
WORKER_PASSWORD = 'W0rker-own-redis-password-Zz81'
REDIS_SERVER = '/usr/bin/redis-server'


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject_key, subject, issuer_key, issuer, ca=False, days=30, san=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(subject_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                               ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        builder = builder.add_extension(x509.SubjectAlternativeName(san or []), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path, data, mode=0o600):
    with open(path, 'wb') as handle:
        handle.write(data)
    os.chmod(path, mode)


def make_pki(directory):
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert(ca_key, 'test CA', ca_key, 'test CA', ca=True)
    files = {'ca': os.path.join(directory, 'ca.pem')}
    _write(files['ca'], ca.public_bytes(serialization.Encoding.PEM), 0o644)
    for name in ('server', 'server2', 'worker'):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(key, name, ca_key, 'test CA', san=[x509.DNSName('localhost')])
        files[name + '_cert'] = os.path.join(directory, name + '-cert.pem')
        files[name + '_key'] = os.path.join(directory, name + '-key.pem')
        _write(files[name + '_cert'], cert.public_bytes(serialization.Encoding.PEM), 0o644)
        _write(files[name + '_key'], key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    return files


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class RedisUnderTest:
    """redis-server started from a redis.conf in tmp_path; conf() rewrites that file (as the role does)."""

    def __init__(self, tmp_path, plain=False, legacy=False):
        self.dir = str(tmp_path)
        self.pki = make_pki(self.dir)
        self.tls_port = free_port()
        self.plain_port = free_port() if plain else 0
        self.legacy = legacy
        self.conf_path = os.path.join(self.dir, 'redis.conf')
        self.write_conf()
        self.proc = subprocess.Popen([REDIS_SERVER, self.conf_path], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.wait()

    def conf_text(self, **overrides):
        lines = {
            'port': str(self.plain_port), 'tls-port': str(self.tls_port), 'bind': '127.0.0.1',
            'tls-cert-file': self.pki['server_cert'], 'tls-key-file': self.pki['server_key'],
            'tls-ca-cert-file': self.pki['ca'], 'tls-auth-clients': 'yes', 'dir': self.dir, 'save': '""',
            'daemonize': 'no', 'pidfile': os.path.join(self.dir, 'redis.pid'),
            'logfile': os.path.join(self.dir, 'redis.log'),
        }
        lines.update(overrides)
        text = ''.join('%s %s\n' % item for item in lines.items())
        if self.legacy:
            text += 'requirepass "%s"\n' % LEGACY_PASSWORD
        else:
            text += ('user default off resetpass\nuser fleetpki-admin reset on #%s ~* &* +@all\n'
                     % password_hash(ADMIN_PASSWORD))
        return text

    def write_conf(self, **overrides):
        with open(self.conf_path, 'w') as handle:
            handle.write(self.conf_text(**overrides))

    def wait(self):
        for dummy in range(100):
            try:
                socket.create_connection(('127.0.0.1', self.tls_port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError('redis-server did not start: %s' % open(os.path.join(self.dir, 'redis.log')).read())

    def params(self, command, **extra):
        params = dict(command=command, conf_path=self.conf_path, login_user='fleetpki-admin',
                      login_password=ADMIN_PASSWORD, legacy_password=LEGACY_PASSWORD if self.legacy else None,
                      tls_cert_file=None, tls_key_file=None, tls_ca_file=None, verify_server=True,
                      desired_conf=None, expect_cert=None, drain_timeout=0, users=None, purge=False,
                      default_user='unchanged')
        params.update(extra)
        return params

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
