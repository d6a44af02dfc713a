"""The lab's TLS listeners as an auditor's scanner sees them: sslyze from the control node against redis1:6379 and
api1:8443, presenting the lab's client certificate (Redis requires one; the API asks for one, and requires it on
every route but the validation reports), judged against Mozilla's "intermediate" profile (the lab's
fleetpki_tls_profile). The scan code is tests/tls/tls_scan.py, shared with the loopback test of make tls.
"""
import subprocess
import sys

import pytest

from fleetlab import PKI_DIR, PROJECT

sys.path.insert(0, str(PROJECT / 'tests' / 'tls'))
from tls_scan import scan, summary  # noqa: E402  pylint: disable=wrong-import-position

PROFILE = 'intermediate'
CLIENT_CERT = PKI_DIR / 'issued' / 'client-pxe1-cert.pem'
# pxe1's key was born on pxe1 (fleetpki_host_keys): the scanner on the control node borrows it from there.
CLIENT_KEY_ON_HOST = ('pxe1', '/etc/fleetpki/client/client-key.pem')
GROUPS = ['X25519', 'secp256r1', 'secp384r1']


def container_ip(name):
    """The lab's container names resolve only inside its docker network: scan the container's address, with
    the name as SNI."""
    out = subprocess.run(['docker', 'inspect', '-f', '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}', name],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out, 'container %s has no IP address' % name
    return out[0]


@pytest.fixture(scope='module')
def client_key(tmp_path_factory):
    """pxe1's client key, copied out of pxe1 into a 0600 file for the scan."""
    path = tmp_path_factory.mktemp('scan') / 'client-key.pem'
    container, key_path = CLIENT_KEY_ON_HOST
    data = subprocess.run(['docker', 'exec', container, 'cat', key_path], capture_output=True, check=True).stdout
    path.touch(mode=0o600)
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize('host,port', [('redis1', 6379), ('api1', 8443)])
def test_listener_complies_with_mozilla_intermediate(host, port, client_key):
    assert CLIENT_CERT.is_file(), 'no client certificate %s (converge first)' % CLIENT_CERT
    found = scan(host, port, client_cert=str(CLIENT_CERT), client_key=client_key, ip_address=container_ip(host),
                 profile=PROFILE)
    text = summary(found)
    print('%s:%d\n%s' % (host, port, text))
    assert found['policy_issues'] == {}, '%s:%d is not compliant with Mozilla %s:\n%s' % (host, port, PROFILE, text)
    assert found['versions'] == ['TLSv1.2', 'TLSv1.3'], text
    assert found['groups'] == GROUPS, text
    assert not [suite for suite in found['suites']['TLSv1.2'] if 'CBC' in suite or '_ECDHE_' not in suite], text


@pytest.mark.parametrize('host,unit,conf', [('redis1', 'redis-server', '/etc/redis/openssl-tls-policy.cnf'),
                                            ('api1', 'fleet-api', '/etc/fleetpki/api/openssl-tls-policy.cnf')])
def test_unit_loads_the_openssl_config(fleet, host, unit, conf):
    """The units point at the OpenSSL config (the groups); the scan above shows the running processes loaded it
    (Redis's /proc environ cannot show it: Redis writes its process title over it)."""
    assert fleet[host].file(conf).contains('^Groups = X25519:P-256:P-384$')
    assert 'OPENSSL_CONF=%s' % conf in fleet[host].check_output('systemctl show -p Environment %s' % unit)
