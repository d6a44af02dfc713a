"""Sites under one root, as the pki role makes them, against the real fleet-api.py on loopback with real TLS: the
hosts trust the root alone, each site's leaves chain through its own issuing CA; a client of site B reaches the API
of site A with no extra trust; once the root revokes site B's issuing CA (a compromised site) and the API reloads its
CRL bundle, every client of site B is refused and site A's keep working."""
import subprocess

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.ca import CaManager
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.crl import CrlManager
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.leaf import LeafIssuer

from test_api_reload import Api


class Root:
    """What Api needs of a PKI: a directory whose ca-cert.pem is what the hosts trust (the root alone)."""

    def __init__(self, directory):
        self.dir = directory


def make_ca(directory, **kwargs):
    manager = CaManager(str(directory), **kwargs)
    manager.plan()
    return manager.apply()


def publish_crl(directory, **kwargs):
    manager = CrlManager(str(directory), **kwargs)
    manager.plan()
    return manager.apply()


def issue(ca_dir, out, name, usage):
    issuer = LeafIssuer(str(ca_dir), [{'name': name, 'dns': ['localhost'], 'ip': ['127.0.0.1'], 'usage': usage}],
                        default_dir=str(out))
    issuer.run()


def test_a_revoked_sites_clients_are_refused_by_the_api_and_the_other_sites_are_not(tmp_path):
    pki, work = tmp_path / 'pki', tmp_path / 'api'
    pki.mkdir()
    work.mkdir()
    make_ca(pki / 'root', common_name='Fleet Root CA')
    for site in ('site-a', 'site-b'):
        make_ca(pki / site, issuer_dir=str(pki / 'root'), common_name='%s Issuing CA' % site,
                name_constraints_permitted_dns=['localhost'], name_constraints_permitted_ip=['127.0.0.0/8'])
    issue(pki / 'site-a', work, 'api', 'server')
    issue(pki / 'site-a', pki, 'client', 'client')
    issue(pki / 'site-b', pki, 'worker-b', 'client')
    crl_bundle = work / 'crl-bundle.pem'

    def write_crl_bundle():
        crl_bundle.write_bytes(b''.join((pki / name / 'crl.pem').read_bytes() for name in ('root', 'site-a', 'site-b')))

    for name in ('root', 'site-a', 'site-b'):
        publish_crl(pki / name)
    write_crl_bundle()
    (pki / 'ca-cert.pem').write_bytes((pki / 'root' / 'ca-cert.pem').read_bytes())
    api = Api(work, Root(pki))
    try:
        api.write_env(API_TLS_CRL=str(crl_bundle))
        assert 'reloaded' in api.reload()
        assert (work / 'api-cert.pem').read_text().count('BEGIN CERTIFICATE') == 2, 'the API serves its chain'

        def status(client):
            proc = subprocess.run(['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--cacert',
                                   str(pki / 'ca-cert.pem'), '--cert', str(pki / ('%s-cert.pem' % client)),
                                   '--key', str(pki / ('%s-key.pem' % client)), '-X', 'POST', '-d', '{}',
                                   'https://localhost:%d/callback/report' % api.port],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                                  timeout=30, check=False)
            return proc.stdout

        assert status('client') == '202' and status('worker-b') == '202', 'one root: both sites reach the API'
        revoked = publish_crl(pki / 'root', revoke_ca_dirs=[str(pki / 'site-b')], reason='ca_compromise')
        assert revoked['revoked_now']
        write_crl_bundle()
        assert 'reloaded' in api.reload()
        assert status('client') == '202'
        refused = status('worker-b')
        # curl reads the server's "certificate revoked" alert, or (TLS 1.3: the handshake ends on the client's side
        # before the server checks its certificate) finds the connection closed; the API logs why either way.
        assert not refused.endswith('202'), refused
        assert 'revoked' in refused or 'revoked' in api.log.read_text().split('reloaded')[-1], refused
    finally:
        api.stop()
