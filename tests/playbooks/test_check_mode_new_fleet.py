"""pki.yml --check on a brand-new fleet (no CA yet) previews the run: exit 0, nothing written, changes reported.

The CA, its CRL, the trust and CRL bundles and every certificate would be made; check mode makes none of them, so
every step that needs the CA must say what it would do instead of failing on the files it did not make. After a
real run, --check finds nothing to do.
"""
import re

import yaml

from test_preflight import FLEET, inventory, playbook

# Secrets of the inventory: neither may appear in any output, diff included.
CA_PASSPHRASE = 'check-mode-ca-passphrase-not-shown'
REDIS_PASSWORD = 'check-mode-redis-password-not-shown'


def recap_changed(output, host):
    """changed= of HOST in the play recap."""
    match = re.search(r'^%s\s*:.*\bchanged=(\d+)' % re.escape(host), output, re.MULTILINE)
    assert match, output[-2500:]
    return int(match.group(1))


def test_check_mode_on_a_new_fleet_previews_and_writes_nothing(tmp_path):
    hosts = inventory(tmp_path, FLEET, {'fleetpki_redis_password': REDIS_PASSWORD})
    # Where the scaffold sets it (group_vars/all): the control node's checks read it from localhost too.
    groups = yaml.safe_load(hosts.read_text())
    groups['all'] = {'vars': {'pki_ca_passphrase': CA_PASSPHRASE}}
    hosts.write_text(yaml.safe_dump(groups))
    pki = tmp_path / 'pki'

    rc, output = playbook(hosts, 'pki.yml', '--check', '--diff')
    assert rc == 0, output[-4000:]
    assert not pki.exists() or not any(pki.rglob('*')), sorted(str(p) for p in pki.rglob('*'))
    assert recap_changed(output, 'pf-redis1') > 0, output[-2500:]
    flat = ' '.join(output.split())
    # What a real run would do, said in so many words.
    assert 'would issue 5 certificates' in flat, output[-4000:]
    assert 'would write the trust bundle' in flat, output[-4000:]
    # Only the directory pki_ca reported it would make is previewed (pki_crl and pki_leaf are told so: ca_planned).
    assert 'there is no CA in %s yet. A real run would make it' % (pki / 'ca') in flat, output[-4000:]
    for secret in (CA_PASSPHRASE, REDIS_PASSWORD, 'PRIVATE KEY'):
        assert secret not in output

    rc, output = playbook(hosts, 'pki.yml')
    assert rc == 0, output[-4000:]
    assert (pki / 'ca' / 'ca-cert.pem').is_file()
    assert (pki / 'ca-bundle.pem').is_file()
    assert (pki / 'crl-bundle.pem').is_file()
    assert len(list((pki / 'issued').glob('*-cert.pem'))) == 5
    written = dict((p, p.stat().st_mtime_ns) for p in pki.rglob('*') if p.is_file())

    rc, output = playbook(hosts, 'pki.yml', '--check', '--diff')
    assert rc == 0, output[-4000:]
    assert recap_changed(output, 'pf-redis1') == 0, output[-4000:]
    assert recap_changed(output, 'localhost') == 0, output[-4000:]
    assert dict((p, p.stat().st_mtime_ns) for p in pki.rglob('*') if p.is_file()) == written
    for secret in (CA_PASSPHRASE, REDIS_PASSWORD, 'PRIVATE KEY'):
        assert secret not in output
