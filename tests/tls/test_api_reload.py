"""The reference API's hitless reload (SIGHUP), with the real fleet-api.py on loopback and real TLS, no mocks:
new handshakes get the swapped certificate, a connection whose handshake came before it is served on the old one,
no request fails meanwhile, the PID stays; a key that does not match its certificate keeps the old context; the
.env's CRL setting is re-read.
"""
import datetime
import http.client
import os
import pathlib
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = pathlib.Path(__file__).resolve().parents[2]
NOW = datetime.datetime.now(datetime.timezone.utc)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Pki:
    def __init__(self, directory):
        self.dir = directory
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = (x509.CertificateBuilder().subject_name(_name('reload test CA')).issuer_name(_name('reload test CA'))
                   .public_key(self.ca_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(NOW - datetime.timedelta(minutes=5)).not_valid_after(NOW + datetime.timedelta(days=30))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(self.ca_key, hashes.SHA256()))
        (directory / 'ca-cert.pem').write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))

    def issue(self, name):
        """Writes <name>-cert.pem and <name>-key.pem; returns the certificate's serial."""
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(self.ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(NOW - datetime.timedelta(minutes=5)).not_valid_after(NOW + datetime.timedelta(days=20))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName('localhost')]), critical=False)
                .sign(self.ca_key, hashes.SHA256()))
        (self.dir / (name + '-key.pem')).write_bytes(_pem_key(key))
        (self.dir / (name + '-cert.pem')).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert.serial_number

    def crl(self, path, serials):
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.ca.subject)
                   .last_update(NOW - datetime.timedelta(minutes=5)).next_update(NOW + datetime.timedelta(days=7)))
        for serial in serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(NOW).build())
        path.write_bytes(builder.sign(self.ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def replace(src, dest):
    """As tls_files writes: a new file renamed over the old one."""
    tmp = dest.with_name(dest.name + '.new')
    shutil.copy(src, tmp)
    os.replace(tmp, dest)


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


class Api:
    """fleet-api and fleet_env.py side by side, as reference_services installs them, serving api-cert.pem."""

    def __init__(self, work, pki):
        self.work, self.pki, self.port = work, pki, free_port()
        shutil.copy(ROOT / 'roles/reference_services/files/fleet-api.py', work / 'fleet-api')
        shutil.copy(ROOT / 'plugins/module_utils/_fleet_env.py', work / 'fleet_env.py')
        shutil.copy(ROOT / 'plugins/module_utils/_fleet_enroll.py', work / 'fleet_enroll.py')
        self.cert, self.key = work / 'api-cert.pem', work / 'api-key.pem'
        self.write_env()
        self.log = work / 'api.log'
        env = {k: v for k, v in os.environ.items() if k != 'OPENSSL_CONF'}
        with open(self.log, 'w') as handle:
            self.proc = subprocess.Popen([sys.executable, str(work / 'fleet-api'), '--env', str(work / '.env')],
                                         env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=str(work))
        deadline = time.time() + 15
        while time.time() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                self.served_serial()
                return
            except OSError:
                time.sleep(0.1)
        pytest.fail('the API did not start: ' + self.log.read_text())

    def write_env(self, **extra):
        entries = {'API_BIND': '127.0.0.1', 'API_PORT': str(self.port), 'API_USE_TLS': 'true',
                   'API_TLS_CERT': str(self.cert), 'API_TLS_KEY': str(self.key),
                   'API_TLS_CA': str(self.pki.dir / 'ca-cert.pem'), 'API_REQUIRE_CLIENT_CERT': 'true'}
        entries.update(extra)
        (self.work / '.env.new').write_text(''.join('%s=%s\n' % item for item in entries.items()))
        os.replace(self.work / '.env.new', self.work / '.env')

    def serve(self, name):
        replace(self.pki.dir / (name + '-key.pem'), self.key)
        replace(self.pki.dir / (name + '-cert.pem'), self.cert)

    def reload(self):
        """SIGHUP, then wait until the API logged the outcome; returns the new log lines."""
        before = len(self.log.read_text())
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline:
            new = self.log.read_text()[before:]
            if 'fleet-api: reload' in new:
                return new
            time.sleep(0.05)
        pytest.fail('no reload logged: ' + self.log.read_text()[-2000:])

    def context(self, client='client'):
        context = ssl.create_default_context(cafile=str(self.pki.dir / 'ca-cert.pem'))
        context.load_cert_chain(str(self.pki.dir / (client + '-cert.pem')), str(self.pki.dir / (client + '-key.pem')))
        return context

    def connection(self, client='client'):
        return http.client.HTTPSConnection('localhost', self.port, context=self.context(client), timeout=5)

    def get(self, conn):
        """GET /health on conn; returns (status, body, serial of the certificate conn's server presented)."""
        conn.request('GET', '/health')
        der = conn.sock.getpeercert(binary_form=True)
        response = conn.getresponse()
        body = response.read()
        return response.status, body, x509.load_der_x509_certificate(der).serial_number

    def served_serial(self, client='client'):
        conn = self.connection(client)
        try:
            return self.get(conn)[2]
        finally:
            conn.close()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def api(tmp_path):
    pki = Pki(tmp_path)
    pki.issue('client')
    pki.issue('other-client')
    pki.old_serial = pki.issue('old')
    pki.new_serial = pki.issue('new')
    work = tmp_path / 'api'
    work.mkdir()
    replace(tmp_path / 'old-key.pem', work / 'api-key.pem')
    replace(tmp_path / 'old-cert.pem', work / 'api-cert.pem')
    running = Api(work, pki)
    yield running
    running.stop()


class Load(threading.Thread):
    """A new TLS connection (client certificate) for every request, no retry: every failure counts."""

    def __init__(self, api):
        super().__init__(daemon=True)
        self.api, self.stop, self.ok, self.failures, self.serials = api, threading.Event(), 0, [], set()

    def run(self):
        while not self.stop.is_set():
            try:
                status, dummy, serial = self.api.get(self.api.connection())
                if status != 200:
                    raise AssertionError('HTTP %s' % status)
                self.ok += 1
                self.serials.add(serial)
            except Exception as exc:  # pylint: disable=broad-except
                self.failures.append(repr(exc))


def test_sighup_swaps_the_certificate_without_a_failed_request(api):
    pid = api.proc.pid
    # werkzeug closes every connection after its response (no HTTP keep-alive): the connection in flight is one
    # whose TLS handshake was done before the reload and whose request comes after it.
    kept = api.connection()
    kept.connect()
    kept_socket = kept.sock
    assert x509.load_der_x509_certificate(kept_socket.getpeercert(True)).serial_number == api.pki.old_serial
    load = Load(api)
    load.start()
    time.sleep(0.5)
    api.serve('new')
    log = api.reload()
    assert 'reloaded' in log, log
    assert api.served_serial() == api.pki.new_serial
    time.sleep(0.5)
    load.stop.set()
    load.join(10)
    # The connection opened before the reload: its request now is answered, on the old certificate.
    status, body, serial = api.get(kept)
    assert kept.sock is kept_socket or kept.sock is None  # http.client did not open another connection
    kept.close()
    assert (status, serial) == (200, api.pki.old_serial)
    assert b'commonName=client' in body
    print('reload under load: %d requests, %d failed, serials %s' % (load.ok, len(load.failures), len(load.serials)))
    assert load.failures == []
    assert load.ok > 20
    assert load.serials == {api.pki.old_serial, api.pki.new_serial}
    assert api.proc.poll() is None and api.proc.pid == pid


def test_a_key_that_does_not_match_keeps_the_previous_certificate(api):
    replace(api.pki.dir / 'new-cert.pem', api.cert)  # the new certificate with the old key
    log = api.reload()
    assert 'reload failed' in log, log
    assert api.proc.poll() is None
    assert api.served_serial() == api.pki.old_serial
    # A later reload with a matching pair takes it.
    replace(api.pki.dir / 'new-key.pem', api.key)
    assert 'reloaded' in api.reload()
    assert api.served_serial() == api.pki.new_serial


def test_a_reload_reads_the_crl_setting_of_the_env(api):
    revoked = x509.load_pem_x509_certificate((api.pki.dir / 'client-cert.pem').read_bytes()).serial_number
    api.pki.crl(api.work / 'crl.pem', [revoked])
    assert api.served_serial() == api.pki.old_serial
    api.write_env(API_TLS_CRL=str(api.work / 'crl.pem'))
    assert 'reloaded' in api.reload()
    with pytest.raises((ssl.SSLError, ConnectionError)):
        api.served_serial()
    assert api.served_serial('other-client') == api.pki.old_serial
    # Restart-only settings are not applied by a reload, and it says so.
    api.write_env(API_TLS_CRL=str(api.work / 'crl.pem'), API_PORT='1')
    log = api.reload()
    assert 'API_PORT changed' in log and 'restart' in log, log
    assert api.served_serial('other-client') == api.pki.old_serial
