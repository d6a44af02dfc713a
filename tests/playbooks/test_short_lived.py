"""pki.yml with short-lived certificates (pki_leaf_valid_hours) on a fake fleet: every certificate lives 24 hours,
a rerun changes nothing, moving back and forth between days and hours re-issues only when the new request is
shorter, and the renewal policy's settings reach pki_leaf (renew_at as the policy puts it)."""
import json
import subprocess

import pytest

from test_preflight import FLEET, inventory, playbook


def lifetimes(pki):
    """{file name: (notBefore, notAfter)} of every issued certificate, as openssl reads them."""
    found = {}
    for path in sorted((pki / 'issued').glob('*-cert.pem')):
        out = subprocess.run(['openssl', 'x509', '-noout', '-startdate', '-enddate', '-in', str(path)],
                             check=True, capture_output=True, text=True).stdout
        dates = dict(line.split('=', 1) for line in out.splitlines())
        found[path.name] = (dates['notBefore'], dates['notAfter'])
    return found


def seconds(openssl_date):
    return int(subprocess.run(['date', '-u', '-d', openssl_date, '+%s'], check=True, capture_output=True,
                              text=True).stdout)


def serials(pki):
    certs = json.loads((pki / 'ca' / 'metadata.json').read_text())['certs']
    return dict((name, record['serial']) for name, record in certs.items())


def test_short_lived_certificates_through_the_pki_play(tmp_path):
    hosts = inventory(tmp_path, FLEET)
    pki = tmp_path / 'pki'
    rc, output = playbook(hosts, 'pki.yml', '-e', 'pki_leaf_valid_hours=24')
    assert rc == 0, output[-4000:]
    found = lifetimes(pki)
    assert len(found) == 5
    for name, (start, end) in found.items():
        # 24 hours, plus the 5 minutes notBefore is backdated.
        assert seconds(end) - seconds(start) == 24 * 3600 + 300, (name, start, end)
    issued = serials(pki)

    rc, output = playbook(hosts, 'pki.yml', '-e', 'pki_leaf_valid_hours=24')
    assert rc == 0 and serials(pki) == issued, output[-4000:]
    assert 'changed=0' in output[output.rindex('PLAY RECAP'):].split('localhost', 1)[1].splitlines()[0]

    # Back to the days: nothing re-issued early; then hours again: nothing either (the certificates are 24 hours).
    rc, output = playbook(hosts, 'pki.yml')
    assert rc == 0 and serials(pki) == issued, output[-4000:]
    # Shorter than they live: every certificate re-issued at once, with the reason.
    rc, output = playbook(hosts, 'pki.yml', '-e', 'pki_leaf_valid_hours=12', '-v')
    assert rc == 0, output[-4000:]
    assert 'request changed: validity (valid_hours 12)' in output
    assert all(issued[name] != serial for name, serial in serials(pki).items())


def test_minutes_long_certificates_for_a_compressed_test_fleet(tmp_path):
    """pki_leaf_valid_hours=0.1: 6-minute certificates, backdated 30 s (a twelfth), as the lifecycle proof runs."""
    hosts = inventory(tmp_path, FLEET)
    rc, output = playbook(hosts, 'pki.yml', '-e', 'pki_leaf_valid_hours=0.1', '-e', 'pki_renew_fraction=0.5',
                          '-e', 'pki_allow_minutes_validity=true')
    assert rc == 0, output[-4000:]
    for name, (start, end) in lifetimes(tmp_path / 'pki').items():
        assert seconds(end) - seconds(start) == 6 * 60 + 30, (name, start, end)


@pytest.mark.parametrize('extra', [['-e', 'pki_renew_fraction=0.95'], ['-e', 'pki_renew_splay=1.5'],
                                   ['-e', 'pki_leaf_valid_hours=24', '-e', 'renew_days=1'],
                                   ['-e', 'pki_leaf_valid_hours=-1'], ['-e', 'pki_leaf_valid_hours=0.05'],
                                   ['-e', 'pki_leaf_valid_hours=0.5'],
                                   ['-e', 'pki_leaf_valid_hours=0.05', '-e', 'pki_allow_minutes_validity=true'],
                                   ['-e', 'pki_renew_fraction=third']])
def test_a_bad_renewal_setting_stops_before_anything_is_made(tmp_path, extra):
    hosts = inventory(tmp_path, FLEET)
    rc, output = playbook(hosts, 'pki.yml', *extra)
    flat = ' '.join(output.split())
    assert rc != 0 and 'pki_renew_fraction is above 0 and at most 0.9' in flat, output[-3000:]
    assert 'Nothing was changed' in flat
    assert not (tmp_path / 'pki' / 'ca').exists() or not any((tmp_path / 'pki' / 'ca').iterdir())
