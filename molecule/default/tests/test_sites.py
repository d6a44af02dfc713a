"""Two sites under one root (molecule.yml: site-a holds redis1, worker1 and api1, site-b worker2 and pxe1): each host's
certificate is signed by its site's issuing CA and its file carries that CA after it; every host trusts the root
alone; a worker of site-b reaches Redis and the API of site-a with no extra trust; the servers present their chain."""
import pytest

from fleetlab import CA_BUNDLE, WORKER_CERT

WORKER_KEY = '/etc/fleetpki/worker/client-key.pem'
SITE_OF = {'redis1': 'site-a', 'worker1': 'site-a', 'api1': 'site-a', 'worker2': 'site-b', 'pxe1': 'site-b'}
CERT_OF = {'redis1': '/etc/redis/tls/redis-cert.pem', 'worker1': WORKER_CERT, 'worker2': WORKER_CERT,
           'api1': '/etc/fleetpki/api/api-cert.pem', 'pxe1': '/etc/fleetpki/client/client-cert.pem'}


def test_the_hosts_trust_the_root_alone(fleet, pki_dir):
    root = (pki_dir / 'root' / 'ca-cert.pem').read_text()
    for name, host in fleet.items():
        assert host.file(CA_BUNDLE).content_string == root, name


@pytest.mark.parametrize('name', sorted(SITE_OF))
def test_each_host_is_signed_by_its_sites_ca_and_its_file_carries_the_chain(fleet, name):
    host = fleet[name]
    issuer = host.check_output('openssl x509 -noout -issuer -in %s' % CERT_OF[name])
    assert issuer == 'issuer=CN = %s Issuing CA' % SITE_OF[name], issuer
    assert host.file(CERT_OF[name]).content_string.count('BEGIN CERTIFICATE') == 2
    path = CERT_OF[name]
    verified = host.run('openssl verify -x509_strict -CAfile %s -untrusted %s %s' % (CA_BUNDLE, path, path))
    assert verified.rc == 0, verified.stdout + verified.stderr


@pytest.mark.parametrize('port,servername', [(6379, 'redis1'), (8443, 'api1')])
def test_a_worker_of_site_b_reaches_the_servers_of_site_a_which_present_their_chain(fleet, port, servername):
    result = fleet['worker2'].run(
        'openssl s_client -connect %s:%d -servername %s -verify_hostname %s -verify_return_error -CAfile %s -cert %s '
        '-key %s -showcerts < /dev/null 2>&1' % (servername, port, servername, servername, CA_BUNDLE, WORKER_CERT,
                                                 WORKER_KEY))
    assert 'Verify return code: 0 (ok)' in result.stdout, result.stdout[-2000:]
    assert ' 1 s:CN = site-a Issuing CA' in result.stdout, 'the server does not present its chain'
