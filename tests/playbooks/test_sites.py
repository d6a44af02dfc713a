"""pki.yml with sites under one root (pki_sites, each host's fleetpki_site) on a fake fleet: each site gets an issuing
CA of its own, limited to its names, and every host's certificate file chains through its site's CA to the one root
that every host trusts; the CRL bundle holds every CA's CRL; a rerun changes nothing; bad site settings stop before
anything is made."""
import json
import subprocess
import sys

import pytest
import yaml

from test_preflight import FLEET, inventory, playbook

PASSPHRASE = 'sites-ca-passphrase-7Qm2x'
ROOT_PASSPHRASE = 'sites-root-passphrase-3Rv9'
SITES = {'site-a': ['pf-redis1', 'pf-worker1', 'pf-api1'], 'site-b': ['pf-worker2', 'pf-pxe1']}


def two_sites(tmp_path, sites=None, host_sites=None):
    """The fake fleet split into two sites: pki_sites in group_vars/all.yml, each host's site in its host_vars."""
    hosts = inventory(tmp_path, FLEET)
    sites = SITES if sites is None else sites
    settings = {'pki_ca_passphrase': PASSPHRASE, 'pki_root_passphrase': ROOT_PASSPHRASE,
                'pki_root_dir': str(tmp_path / 'pki' / 'root'),
                'pki_ca_name_constraints_permitted_dns': sorted(host for names in FLEET.values() for host in names),
                'pki_sites': {site: {'name_constraints_permitted_dns': names} for site, names in sites.items()}}
    (tmp_path / 'group_vars').mkdir()
    (tmp_path / 'group_vars' / 'all.yml').write_text(yaml.safe_dump(settings))
    (tmp_path / 'host_vars').mkdir()
    host_sites = host_sites or dict((host, site) for site, names in SITES.items() for host in names)
    for host, site in host_sites.items():
        (tmp_path / 'host_vars' / ('%s.yml' % host)).write_text(yaml.safe_dump({'fleetpki_site': site}))
    return hosts


def name_localhost(hosts):
    """localhost named in the inventory, so --limit can take it alone: the control node's plays of a playbook run,
    those on the fake hosts (which cannot be reached) have no host."""
    inventory = yaml.safe_load(hosts.read_text())
    inventory['control'] = {'hosts': {'localhost': {'ansible_connection': 'local',
                                                    'ansible_python_interpreter': sys.executable}}}
    hosts.write_text(yaml.safe_dump(inventory))


def openssl(*argv):
    proc = subprocess.run(['openssl'] + [str(arg) for arg in argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    return proc.returncode, proc.stdout


def issuer_of(path):
    return openssl('x509', '-noout', '-issuer', '-in', path)[1].strip()


def test_each_site_gets_its_own_issuing_ca_under_the_one_root(tmp_path):
    hosts = two_sites(tmp_path)
    pki = tmp_path / 'pki'
    rc, output = playbook(hosts, 'pki.yml')
    assert rc == 0, output[-4000:]
    assert (pki / 'ca-bundle.pem').read_text() == (pki / 'root' / 'ca-cert.pem').read_text(), 'the root alone'
    for site, names in SITES.items():
        rc, text = openssl('x509', '-noout', '-issuer', '-subject', '-ext', 'basicConstraints,nameConstraints',
                           '-in', pki / 'sites' / site / 'ca-cert.pem')
        assert 'issuer=CN = Fleet Root CA' in text and 'subject=CN = %s Issuing CA' % site in text, text
        assert 'pathlen:0' in text and all('DNS:%s' % name in text for name in names), text
    certs = sorted((pki / 'issued').glob('*-cert.pem'))
    assert len(certs) == 5
    for cert in certs:
        host = cert.name.split('-', 1)[1].rsplit('-cert.pem', 1)[0]
        site = [name for name, members in SITES.items() if host in members][0]
        assert issuer_of(cert) == 'issuer=CN = %s Issuing CA' % site, cert
        assert cert.read_text().endswith((pki / 'sites' / site / 'ca-cert.pem').read_text()), 'the site CA follows'
        rc, text = openssl('verify', '-x509_strict', '-CAfile', pki / 'ca-bundle.pem', '-untrusted', cert, cert)
        assert rc == 0, text
    # The root's, pki_ca_dir's and each site's CRL.
    assert (pki / 'crl-bundle.pem').read_text().count('BEGIN X509 CRL') == 4

    rc, output = playbook(hosts, 'pki.yml')
    assert rc == 0, output[-4000:]
    assert 'changed=0' in output[output.rindex('PLAY RECAP'):].split('localhost', 1)[1].splitlines()[0], output[-3000:]

    # ca_renew.yml renews each site's issuing CA with its root, the same key.
    before = dict((site, openssl('x509', '-noout', '-serial', '-pubkey', '-in', pki / 'sites' / site / 'ca-cert.pem')[1])
                  for site in SITES)
    name_localhost(hosts)
    rc, output = playbook(hosts, 'ca_renew.yml', '-e', 'ca_renew_days=4000', '--limit', 'localhost')
    assert rc == 0 and 'sites renewed: site-a, site-b' in ' '.join(output.split()), output[-3000:]
    for site in SITES:
        serial, key = before[site].split('\n', 1)
        after = openssl('x509', '-noout', '-serial', '-pubkey', '-in', pki / 'sites' / site / 'ca-cert.pem')[1]
        assert not after.startswith(serial) and after.endswith(key), site


def test_check_mode_on_a_new_fleet_with_sites_writes_nothing(tmp_path):
    hosts = two_sites(tmp_path)
    rc, output = playbook(hosts, 'pki.yml', '--check')
    assert rc == 0, output[-4000:]
    assert not (tmp_path / 'pki' / 'root').exists() and not (tmp_path / 'pki' / 'sites').exists()


@pytest.mark.parametrize('case', ['unknown site', 'no names', 'bad name', 'one tier', 'shared names'])
def test_bad_site_settings_stop_before_anything_is_made(tmp_path, case):
    sites, host_sites = dict(SITES), None
    if case == 'unknown site':
        host_sites = {'pf-worker2': 'site-c'}
    elif case == 'no names':
        sites['site-b'] = []
    elif case == 'bad name':
        sites['Site B'] = sites.pop('site-b')
    elif case == 'shared names':
        sites['site-b'] = sites['site-b'] + ['prov.pf-redis1']
    hosts = two_sites(tmp_path, sites, host_sites)
    extra = ['-e', 'pki_root_dir='] if case == 'one tier' else []
    rc, output = playbook(hosts, 'pki.yml', *extra)
    flat = ' '.join(output.split())
    assert rc != 0 and 'pki_sites: ' in flat and 'Nothing was changed' in flat, output[-3000:]
    assert {'unknown site': 'fleetpki_site of pf-worker2 (site-c) is not one of pki_sites (site-a, site-b)',
            'no names': 'site site-b: give name_constraints_permitted_dns',
            'bad name': "site 'Site B': a site name is lower-case letters",
            'one tier': 'pki_sites needs two tiers: set pki_root_dir',
            'shared names': 'sites site-a and site-b share names or addresses (DNS pf-redis1 / prov.pf-redis1)',
            }[case] in flat, flat[-2000:]
    assert PASSPHRASE not in output and ROOT_PASSPHRASE not in output
    assert not (tmp_path / 'pki' / 'root').exists() and not (tmp_path / 'pki' / 'ca').exists()


def test_revoke_site_cuts_one_site_off_and_the_next_run_gives_it_a_new_issuing_ca(tmp_path):
    """revoke.yml -e revoke_site=site-b on the control node (--limit localhost: the fake hosts cannot be reached, so
    the Redis and roll plays have no host): the root's CRL revokes site-b's issuing CA and every host of site-b is kept
    out. The next pki run replaces site-b's CA with a new key and issues nothing to the kept-out hosts; with the CRL
    bundle checked along the chain, the old site-b certificates are refused and site-a's pass."""
    hosts = two_sites(tmp_path)
    pki = tmp_path / 'pki'
    rc, output = playbook(hosts, 'pki.yml')
    assert rc == 0, output[-4000:]
    old_b = (pki / 'sites' / 'site-b' / 'ca-cert.pem').read_text()
    (tmp_path / 'old-worker2.pem').write_text((pki / 'issued' / 'worker-pf-worker2-cert.pem').read_text())

    name_localhost(hosts)
    rc, output = playbook(hosts, 'revoke.yml', '-e', 'revoke_site=site-b', '--limit', 'localhost')
    assert rc == 0, output[-4000:]
    assert sorted(path.name for path in (pki / 'kept-out').iterdir()) == ['pf-pxe1', 'pf-worker2']
    assert 'the issuing CA of site site-b' in output
    rc, text = openssl('crl', '-noout', '-text', '-in', pki / 'root' / 'crl.pem')
    serial = openssl('x509', '-noout', '-serial', '-in', pki / 'sites' / 'site-b' / 'ca-cert.pem')[1].split('=')[1]
    assert serial.strip() in text.replace(':', '').upper() and 'CA Compromise' in text, text
    assert ROOT_PASSPHRASE not in output and PASSPHRASE not in output
    # The site's hosts' own certificates too, in the site's CA: their keys are presumed stolen and are replaced when
    # the hosts come back.
    revoked = json.loads((pki / 'sites' / 'site-b' / 'revoked.json').read_text())['revoked']
    assert sorted(entry['name'] for entry in revoked) == ['client-pf-pxe1', 'worker-pf-worker2']
    assert set(entry['reason'] for entry in revoked) == {'key_compromise'}

    before = dict((path.name, path.read_text()) for path in (pki / 'issued').glob('*-pf-worker2-*'))
    rc, output = playbook(hosts, 'pki.yml')
    assert rc == 0, output[-4000:]
    new_b = (pki / 'sites' / 'site-b' / 'ca-cert.pem').read_text()
    assert new_b != old_b and 'was revoked by its root' in ' '.join(output.split())
    assert dict((path.name, path.read_text()) for path in (pki / 'issued').glob('*-pf-worker2-*')) == before, \
        'nothing is issued to a kept-out host'
    crls = pki / 'crl-bundle.pem'
    for cert, wanted in ((pki / 'issued' / 'worker-pf-worker1-cert.pem', 0), (tmp_path / 'old-worker2.pem', 1)):
        rc, text = openssl('verify', '-crl_check_all', '-CRLfile', crls, '-CAfile', pki / 'ca-bundle.pem',
                           '-untrusted', cert, cert)
        assert (rc == 0) == (wanted == 0), text
