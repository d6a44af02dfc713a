"""Enrollment on the control node's side: pki.yml with fleetpki_enrollment makes the enrollment CA, an anchor of its
own outside the fleet's trust bundle, limited to client certificates under its suffix and to no address, with its CRL
in the bundle the API hosts check; a name another CA has is refused before anything is made; enrollment_token.yml
writes one machine's token (mode 0600) without printing it, even at -vvv, and refuses what it cannot use."""
import yaml

from test_preflight import FLEET, assert_stopped_before_any_change, inventory, playbook
from test_sites import name_localhost, openssl

PASSPHRASE = 'enroll-ca-passphrase-4Tq8z'


def fleet_with_enrollment(tmp_path, **extra):
    """The fake fleet, one CA (enrollment needs no root), enrollment on."""
    hosts = inventory(tmp_path, FLEET)
    settings = {'pki_ca_passphrase': PASSPHRASE, 'fleetpki_pki_dir': str(tmp_path / 'pki'),
                'fleetpki_enrollment': True, 'fleetpki_enrollment_dns_suffix': 'enroll.example.com'}
    settings.update(extra)
    (tmp_path / 'group_vars').mkdir()
    (tmp_path / 'group_vars' / 'all.yml').write_text(yaml.safe_dump(settings))
    return hosts


def test_the_enrollment_ca_is_an_anchor_of_its_own_for_client_certificates_under_its_suffix(tmp_path):
    hosts = fleet_with_enrollment(tmp_path)
    pki = tmp_path / 'pki'
    rc, output = playbook(hosts, 'pki.yml')
    assert rc == 0, output[-4000:]
    ca_cert = pki / 'enrollment-ca' / 'ca-cert.pem'
    rc, text = openssl('x509', '-noout', '-issuer', '-subject', '-ext',
                       'basicConstraints,nameConstraints,extendedKeyUsage', '-in', ca_cert)
    assert 'issuer=CN = Fleet Enrollment CA' in text and 'subject=CN = Fleet Enrollment CA' in text, text
    assert 'pathlen:0' in text and 'TLS Web Client Authentication' in text and 'Server' not in text, text
    permitted, dummy, excluded = ' '.join(text.split()).partition('Excluded:')
    assert 'Permitted: DNS:enroll.example.com' in permitted and 'IP:' not in permitted, text
    assert 'IP:0.0.0.0/0.0.0.0' in excluded and 'IP:0:0:0:0:0:0:0:0/0:0:0:0:0:0:0:0' in excluded, text
    key = pki / 'enrollment-ca' / 'ca-key.pem'
    assert oct(key.stat().st_mode & 0o777) == '0o600' and 'ENCRYPTED' not in key.read_text()
    assert ca_cert.read_text() not in (pki / 'ca-bundle.pem').read_text(), 'the fleet trusts the enrollment CA'
    # The fleet CA's and the enrollment CA's: the API checks CRLs along every client's chain.
    assert (pki / 'crl-bundle.pem').read_text().count('BEGIN X509 CRL') == 2
    rc, output = playbook(hosts, 'pki.yml')
    assert rc == 0, output[-4000:]
    assert 'changed=0' in output[output.rindex('PLAY RECAP'):].split('localhost', 1)[1].splitlines()[0], output[-3000:]
    # ca_renew.yml renews it near its end: the same key, usage and name constraints, a new certificate.
    old_cert, old_key = ca_cert.read_text(), key.read_text()
    name_localhost(hosts)
    rc, output = playbook(hosts, 'ca_renew.yml', '-e', 'ca_renew_days=4000', '--limit', 'localhost')
    assert rc == 0 and 'enrollment CA renewed' in output, output[-3000:]
    assert ca_cert.read_text() != old_cert and key.read_text() == old_key
    rc, renewed = openssl('x509', '-noout', '-ext', 'basicConstraints,nameConstraints,extendedKeyUsage', '-in', ca_cert)
    assert renewed == text.split('\n', 2)[2], renewed


def test_an_enrollment_ca_named_as_another_ca_stops_before_anything_is_made(tmp_path):
    hosts = fleet_with_enrollment(tmp_path, pki_enrollment_ca_common_name='Fleet Internal Root CA')
    rc, output = playbook(hosts, 'pki.yml')
    assert_stopped_before_any_change(tmp_path, rc, output, 'apart from every other CA\'s name')


def test_a_token_is_written_for_its_machine_and_never_printed(tmp_path):
    hosts = fleet_with_enrollment(tmp_path)
    name_localhost(hosts)
    rc, output = playbook(hosts, 'enrollment_token.yml', '-vvv', '-e', 'enroll_machine=52-54-00-AB-CD-EF',
                          '--limit', 'localhost')
    assert rc == 0, output[-3000:]
    token_file = tmp_path / 'pki' / 'enrollment-tokens' / 'mac-525400abcdef.token'
    assert oct(token_file.stat().st_mode & 0o777) == '0o600'
    assert oct(token_file.parent.stat().st_mode & 0o777) == '0o700'
    token = token_file.read_text().strip()
    assert len(token) == 43 and token not in output, 'the token is in the -vvv output'
    assert 'The token for 52:54:00:ab:cd:ef is in %s' % token_file in ' '.join(output.split()), output[-2000:]
    assert 'valid until' in output and 'on pf-api1 only' in ' '.join(output.split())
    for bad, message in ((['-e', 'enroll_machine=../../etc'], 'a machine is named by its MAC address'),
                         ([], 'Name the machine: -e enroll_machine='),
                         (['-e', 'enroll_machine=sn1', '-e', 'enroll_api_host=pf-worker1'],
                          'enroll_api_host (pf-worker1) must be one of api_servers (pf-api1)'),
                         (['-e', 'enroll_machine=sn1', '-e', 'enroll_token_seconds=90000'], 'at most 86400 seconds')):
        rc, output = playbook(hosts, 'enrollment_token.yml', '--limit', 'localhost', *bad)
        assert rc != 0 and message in ' '.join(output.split()), output[-2000:]
    assert sorted(path.name for path in token_file.parent.iterdir()) == ['mac-525400abcdef.token']
