"""The TLS policy as a real scanner sees it: the roles' own templates and defaults rendered (render.yml), a real
redis-server 7.0 and the reference API (fleet-api.py) started on loopback with exactly those files and the
environment their units give them (OPENSSL_CONF), then sslyze against Mozilla's profiles.

Also checks that the scanner does flag the settings from before the policy (redis.conf with tls-protocols only,
processes without OPENSSL_CONF): a scan that saw nothing would pass everything.
"""
import datetime
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from tls_scan import scan, summary  # noqa: E402  pylint: disable=wrong-import-position

ROOT = pathlib.Path(__file__).resolve().parents[2]
REDIS_SERVER = '/usr/bin/redis-server'
MOZILLA_SUITES_12 = {'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384',
                     'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256'}
SUITES_13 = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256']
GROUPS = ['X25519', 'secp256r1', 'secp384r1']


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_cert(directory, name, key, cert):
    (directory / (name + '-key.pem')).write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (directory / (name + '-cert.pem')).write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _ca(subject, key, issuer=None, issuer_key=None, path_length=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer or subject))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .sign(issuer_key or key, hashes.SHA256()))


def make_pki(directory, two_tiers):
    """A CA, a server and a client certificate like the pki role's (EC P-256, SHA-256, 365 days). Two tiers: the
    hosts trust a root alone (ca-cert.pem), an issuing CA signs the leaves and every certificate file carries it after
    the leaf, so the scanner presents a chain as the lab's clients do."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _ca('tls test CA', ca_key)
    _write_cert(directory, 'ca', ca_key, ca)
    chain = b''
    if two_tiers:
        root_key, root = ca_key, ca
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _ca('tls test issuing CA', ca_key, 'tls test CA', root_key, path_length=0)
        chain = ca.public_bytes(serialization.Encoding.PEM)
    for name in ('server', 'client'):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=364))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName('localhost')]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        _write_cert(directory, name, key, cert)
        with open(directory / (name + '-cert.pem'), 'ab') as handle:
            handle.write(chain)
    return directory


@pytest.fixture(scope='module')
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp('pki'), two_tiers=False)


@pytest.fixture(scope='module')
def pki_two_tiers(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp('pki-two-tiers'), two_tiers=True)


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def render(out_dir, pki_dir, profile, redis_port):
    """The roles' templates with their defaults for one profile (render.yml), test paths and ports."""
    extra = {'out_dir': str(out_dir), 'fleetpki_tls_profile': profile, 'redis_tls_port': redis_port,
             'redis_tls_bind': '127.0.0.1', 'redis_tls_cert_file': str(pki_dir / 'server-cert.pem'),
             'redis_tls_key_file': str(pki_dir / 'server-key.pem'), 'redis_tls_ca_file': str(pki_dir / 'ca-cert.pem'),
             'redis_tls_openssl_conf': str(out_dir / 'redis-openssl.cnf'),
             'api_tls_openssl_conf': str(out_dir / 'api-openssl.cnf')}
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    proc = subprocess.run([str(pathlib.Path(sys.executable).parent / 'ansible-playbook'), str(ROOT / 'tests/tls/render.yml'),
                           '-e', json.dumps(extra)], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def unit_environment(path):
    """Environment= lines of a rendered unit or drop-in, as systemd gives them to the process."""
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r'^Environment=([A-Z_]+)=(.*)$', line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def wait_listening(port, proc, log):
    deadline = time.time() + 15
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail('the server exited with %s: %s' % (proc.returncode, log.read_text()[-2000:]))
        try:
            socket.create_connection(('127.0.0.1', port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail('nothing listens on %d after 15 s: %s' % (port, log.read_text()[-2000:]))


def clean_env(extra):
    env = {k: v for k, v in os.environ.items() if k != 'OPENSSL_CONF'}
    env.update(extra)
    return env


def start_redis(work, conf, port, unit_env):
    log = work / 'redis.log'
    # The rendered redis.conf as the role writes it; the command line only moves its files into the test dir.
    argv = [REDIS_SERVER, str(conf), '--dir', str(work), '--logfile', str(log), '--pidfile', str(work / 'redis.pid'),
            '--save', '', '--daemonize', 'no']
    proc = subprocess.Popen(argv, env=clean_env(unit_env), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    log.touch()
    wait_listening(port, proc, log)
    return proc


def start_api(work, pki_dir, port, policy_env, unit_env):
    """The reference API as installed by reference_services: fleet-api and fleet_env.py side by side."""
    shutil.copy(ROOT / 'roles/reference_services/files/fleet-api.py', work / 'fleet-api')
    shutil.copy(ROOT / 'plugins/module_utils/_fleet_env.py', work / 'fleet_env.py')
    shutil.copy(ROOT / 'plugins/module_utils/_fleet_enroll.py', work / 'fleet_enroll.py')
    entries = {'API_BIND': '127.0.0.1', 'API_PORT': str(port), 'API_USE_TLS': 'true',
               'API_TLS_CERT': str(pki_dir / 'server-cert.pem'), 'API_TLS_KEY': str(pki_dir / 'server-key.pem'),
               'API_TLS_CA': str(pki_dir / 'ca-cert.pem'), 'API_REQUIRE_CLIENT_CERT': 'true'}
    entries.update(policy_env)
    (work / '.env').write_text(''.join('%s=%s\n' % item for item in entries.items()))
    log = work / 'api.log'
    with open(log, 'w') as handle:
        proc = subprocess.Popen([sys.executable, str(work / 'fleet-api'), '--env', str(work / '.env')],
                                env=clean_env(unit_env), stdout=handle, stderr=subprocess.STDOUT, cwd=str(work))
    wait_listening(port, proc, log)
    return proc, log


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def client(pki_dir):
    return {'client_cert': str(pki_dir / 'client-cert.pem'), 'client_key': str(pki_dir / 'client-key.pem')}


def assert_compliant(found, profile):
    text = summary(found)
    print(text)
    assert found['policy_issues'] == {}, 'not compliant with Mozilla %s:\n%s' % (profile, text)
    assert found['groups'] == GROUPS, text
    if profile == 'modern':
        assert found['versions'] == ['TLSv1.3'], text
    else:
        assert found['versions'] == ['TLSv1.2', 'TLSv1.3'], text
        assert set(found['suites']['TLSv1.2']) == MOZILLA_SUITES_12, text
    assert found['suites']['TLSv1.3'] == SUITES_13, text


# Two tiers under the lab's profile: the scanner presents a client chain, as the lab's clients do.
@pytest.mark.parametrize('profile,tiers', [('intermediate', 'pki'), ('modern', 'pki'), ('intermediate', 'pki_two_tiers')])
def test_redis_and_api_comply(tmp_path, request, profile, tiers):
    pki = request.getfixturevalue(tiers)
    redis_port, api_port = free_port(), free_port()
    render(tmp_path, pki, profile, redis_port)
    redis = start_redis(tmp_path, tmp_path / 'redis.conf', redis_port, unit_environment(tmp_path / 'redis-dropin.conf'))
    try:
        found = scan('localhost', redis_port, ip_address='127.0.0.1', profile=profile, **client(pki))
    finally:
        stop(redis)
    print('redis-server, %s:' % profile)
    assert_compliant(found, profile)

    api_work = tmp_path / 'api'
    api_work.mkdir()
    policy_env = json.loads((tmp_path / 'api-policy.json').read_text())
    api, log = start_api(api_work, pki, api_port, policy_env, unit_environment(tmp_path / 'fleet-api.service'))
    try:
        found = scan('localhost', api_port, ip_address='127.0.0.1', profile=profile, **client(pki))
    finally:
        stop(api)
    print('fleet-api, %s:' % profile)
    assert_compliant(found, profile)
    assert 'fleet-api: WARNING' not in log.read_text(), log.read_text()


def test_scanner_flags_the_settings_from_before_the_policy(tmp_path, pki):
    """redis.conf with tls-protocols only and no OPENSSL_CONF (the role before the policy): CBC suites and the
    X448 and P-521 groups are offered, and the scan says so. The API without OPENSSL_CONF: the groups."""
    redis_port, api_port = free_port(), free_port()
    render(tmp_path, pki, 'intermediate', redis_port)
    old = [line for line in (tmp_path / 'redis.conf').read_text().splitlines()
           if not line.startswith(('tls-ciphers ', 'tls-ciphersuites '))]
    (tmp_path / 'redis-old.conf').write_text('\n'.join(old) + '\n')
    redis = start_redis(tmp_path, tmp_path / 'redis-old.conf', redis_port, {})
    try:
        found = scan('localhost', redis_port, ip_address='127.0.0.1', **client(pki))
    finally:
        stop(redis)
    print('redis-server, before the policy:\n' + summary(found))
    assert set(found['policy_issues']) == {'ciphers', 'tls_curves'}, summary(found)
    assert any('CBC' in suite for suite in found['suites']['TLSv1.2']), summary(found)
    assert {'X448', 'secp521r1'} <= set(found['groups']), summary(found)

    api_work = tmp_path / 'api'
    api_work.mkdir()
    api, log = start_api(api_work, pki, api_port, json.loads((tmp_path / 'api-policy.json').read_text()), {})
    try:
        found = scan('localhost', api_port, ip_address='127.0.0.1', **client(pki))
    finally:
        stop(api)
    print('fleet-api without OPENSSL_CONF:\n' + summary(found))
    assert set(found['policy_issues']) == {'tls_curves'}, summary(found)
    # The API says why at its start.
    assert 'key-exchange groups are not restricted' in log.read_text()
