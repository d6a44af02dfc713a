"""pki.yml with two tiers (pki_root_dir) on a fake fleet: a root signs the CA of pki_ca_dir (an issuing CA, path
length 0), which signs every leaf; the trust bundle holds the root alone, every certificate file carries its issuing
CA's certificate and verifies against the bundle with openssl; the CRL bundle holds both CAs' CRLs; a rerun changes
nothing; check mode on a new fleet writes nothing; a rollover of an issuing CA under a root is refused; the control
node's part of the move of a fleet of one CA under a new root (the lifecycle lab moves its hosts under load)."""
import json
import subprocess

from test_preflight import FLEET, inventory, playbook

PASSPHRASE = 'two-tiers-ca-passphrase-41Kz'
ROOT_PASSPHRASE = 'two-tiers-root-passphrase-8Hw'
# Beside the inventory, as the scaffold keeps them (the same on localhost and every fleet host).
TWO_TIERS = ('pki_ca_passphrase: %s\npki_root_passphrase: %s\npki_ca_name_constraints_permitted_dns: [%s]\n'
             % (PASSPHRASE, ROOT_PASSPHRASE, ', '.join(host for hosts in FLEET.values() for host in hosts)))


def openssl(*argv):
    proc = subprocess.run(['openssl'] + [str(arg) for arg in argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    return proc.returncode, proc.stdout


def test_two_tiers_through_the_pki_play(tmp_path):
    hosts = inventory(tmp_path, FLEET)
    (tmp_path / 'group_vars').mkdir()
    (tmp_path / 'group_vars' / 'all.yml').write_text(TWO_TIERS)
    pki = tmp_path / 'pki'
    root = pki / 'root'
    rc, output = playbook(hosts, 'pki.yml', '-e', 'pki_root_dir=%s' % root)
    assert rc == 0, output[-4000:]
    assert (root / 'ca-cert.pem').read_text() == (pki / 'ca-bundle.pem').read_text(), 'the bundle is the root alone'
    rc, text = openssl('x509', '-noout', '-issuer', '-subject', '-ext', 'basicConstraints', '-in', pki / 'ca' / 'ca-cert.pem')
    assert 'issuer=CN = Fleet Root CA' in text and 'pathlen:0' in text, text
    assert b'ENCRYPTED' in (root / 'ca-key.pem').read_bytes()
    certs = sorted((pki / 'issued').glob('*-cert.pem'))
    assert len(certs) == 5
    for cert in certs:
        assert cert.read_text().count('BEGIN CERTIFICATE') == 2, cert
        rc, text = openssl('verify', '-x509_strict', '-CAfile', pki / 'ca-bundle.pem', '-untrusted', cert, cert)
        assert rc == 0, text
    assert (pki / 'crl-bundle.pem').read_text().count('BEGIN X509 CRL') == 2

    rc, output = playbook(hosts, 'pki.yml', '-e', 'pki_root_dir=%s' % root)
    assert rc == 0, output[-4000:]
    assert 'changed=0' in output[output.rindex('PLAY RECAP'):].split('localhost', 1)[1].splitlines()[0], output[-3000:]

    rc, output = playbook(hosts, 'ca_rollover.yml', '-e', 'pki_root_dir=%s' % root, '-e', 'rollover_phase=1')
    flat = ' '.join(output.split())
    assert rc != 0 and 'not an issuing CA already under a root' in flat, output[-3000:]
    assert not (pki / 'ca-next').exists()


def test_check_mode_on_a_new_two_tier_fleet_writes_nothing(tmp_path):
    hosts = inventory(tmp_path, FLEET)
    (tmp_path / 'group_vars').mkdir()
    (tmp_path / 'group_vars' / 'all.yml').write_text(TWO_TIERS)
    rc, output = playbook(hosts, 'pki.yml', '--check', '-e', 'pki_root_dir=%s' % (tmp_path / 'pki' / 'root'))
    assert rc == 0, output[-4000:]
    assert not (tmp_path / 'pki' / 'root').exists() and not (tmp_path / 'pki' / 'ca').exists()


def test_a_fleet_on_its_own_ca_is_not_put_under_a_new_root_by_setting_pki_root_dir(tmp_path):
    """Its bundle would trust the new root alone and refuse every certificate of the old CA: refused before the
    root is made."""
    hosts = inventory(tmp_path, FLEET)
    (tmp_path / 'group_vars').mkdir()
    (tmp_path / 'group_vars' / 'all.yml').write_text(TWO_TIERS)
    rc, output = playbook(hosts, 'pki.yml')
    assert rc == 0, output[-3000:]
    before = (tmp_path / 'pki' / 'ca-bundle.pem').read_text()
    rc, output = playbook(hosts, 'pki.yml', '-e', 'pki_root_dir=%s' % (tmp_path / 'pki' / 'root'))
    flat = ' '.join(output.split())
    assert rc != 0 and 'move the running fleet under a new root with ca_rollover.yml -e rollover_new=true' in flat, \
        output[-3000:]
    assert not (tmp_path / 'pki' / 'root').exists()
    assert (tmp_path / 'pki' / 'ca-bundle.pem').read_text() == before


def test_two_tiers_without_the_roots_own_secret_or_the_fleets_names_stop_before_anything_is_made(tmp_path):
    hosts = inventory(tmp_path, FLEET)
    (tmp_path / 'group_vars').mkdir()
    every_name = ', '.join(host for hosts in FLEET.values() for host in hosts)
    for settings in ('pki_ca_passphrase: %s\npki_ca_name_constraints_permitted_dns: [%s]\n' % (PASSPHRASE, every_name),
                     'pki_ca_passphrase: %s\npki_root_passphrase: %s\n' % (PASSPHRASE, ROOT_PASSPHRASE),
                     'pki_ca_passphrase: %s\npki_root_passphrase: %s\npki_ca_name_constraints_permitted_ip: '
                     '[10.0.0.0/8]\n' % (PASSPHRASE, PASSPHRASE)):
        (tmp_path / 'group_vars' / 'all.yml').write_text(settings)
        rc, output = playbook(hosts, 'pki.yml', '-e', 'pki_root_dir=%s' % (tmp_path / 'pki' / 'root'))
        flat = ' '.join(output.split())
        assert rc != 0 and 'Two tiers (pki_root_dir' in flat and 'Nothing was changed' in flat, output[-3000:]
        assert PASSPHRASE not in output and ROOT_PASSPHRASE not in output
        assert not (tmp_path / 'pki' / 'root').exists() and not (tmp_path / 'pki' / 'ca').exists()


def verifies(bundle, cert):
    rc, text = openssl('verify', '-x509_strict', '-CAfile', bundle, '-untrusted', cert, cert)
    return rc == 0


def files_of(directory):
    """{path: bytes} of every file under the PKI directory but the metrics it publishes."""
    return {str(path.relative_to(directory)): path.read_bytes() for path in sorted(directory.rglob('*'))
            if path.is_file() and path.relative_to(directory).parts[0] != 'metrics'}


def test_the_move_of_a_fleet_of_one_ca_under_a_new_root_on_the_control_node(tmp_path):
    """The control node's part of the move, on a fake fleet (the roll is off: no host is reached), and what the
    lifecycle lab (molecule: the hosts reload under load through the phases, each phase's bundles checked) does not
    show: ca_rollover.yml --check previews the start of phase 1 and writes nothing, on one CA and once a root is
    set; names outside the new CA's constraints stop phase 1 before the root and the next CA are made; the exact
    bundle after phases 1 and 2 (the old CA and the root: a host still on its old certificate is accepted until phase
    3); mid-move, a run without pki_root_dir is refused; at the end every leaf verifies against the root alone,
    pki.yml changes nothing, and a phase 3 killed after its promotion but before its state was written is resumed,
    not refused."""
    hosts = inventory(tmp_path, FLEET)
    (tmp_path / 'group_vars').mkdir()
    settings = tmp_path / 'group_vars' / 'all.yml'
    settings.write_text(TWO_TIERS)
    pki = tmp_path / 'pki'
    rc, output = playbook(hosts, 'pki.yml')
    assert rc == 0, output[-3000:]
    old_ca = (pki / 'ca' / 'ca-cert.pem').read_text()
    old_leaf = tmp_path / 'old-leaf.pem'
    old_leaf.write_text((pki / 'issued' / 'redis-pf-redis1-cert.pem').read_text())
    before = files_of(pki)

    # Check mode on one CA: what phase 1 would make on the control node (what a phase writes to bundles and hosts
    # depends on the CA its start makes).
    rc, output = playbook(hosts, 'ca_rollover.yml', '--check')
    assert rc == 0, output[-4000:]
    flat = ' '.join(output.split())
    assert 'check mode previews the start of phase 1 on the control node only' in flat, flat[-3000:]
    assert 'Make the next CA' in flat[flat.rindex('CHANGES BY HOST'):], flat[-3000:]
    assert files_of(pki) == before

    # pf-pxe1 left out of pki_ca_name_constraints_permitted_dns: the next CA would keep those constraints for good
    # and refuse pf-pxe1's leaf in phase 2. The message names the host, its names and the variables.
    root_dir = 'pki_root_dir: %s\n' % (pki / 'root')
    settings.write_text(TWO_TIERS.replace(', pf-pxe1', '') + root_dir)
    rc, output = playbook(hosts, 'ca_rollover.yml', '-e', 'rollover_new=true', '-e', 'phase=1')
    flat = ' '.join(output.split())
    assert rc != 0 and "pf-pxe1: its certificate client-pf-pxe1 names pf-pxe1, outside the name constraints" in flat, \
        flat[-3000:]
    assert 'Nothing was changed.' in flat
    assert files_of(pki) == before and not (pki / 'root').exists() and not (pki / 'ca-next').exists()

    # The operator adds the root to the inventory: check mode previews the root too, and writes nothing.
    settings.write_text(TWO_TIERS + root_dir)
    rc, output = playbook(hosts, 'ca_rollover.yml', '--check')
    assert rc == 0, output[-4000:]
    flat = ' '.join(output.split())
    assert 'Make or load the root' in flat[flat.rindex('CHANGES BY HOST'):], flat[-3000:]
    assert files_of(pki) == before and not (pki / 'root').exists()

    roll_off = ('-e', 'fleetpki_roll_enabled=false')
    rc, output = playbook(hosts, 'ca_rollover.yml', '-e', 'phase=1', *roll_off)
    assert rc == 0, output[-4000:]
    rc, text = openssl('x509', '-noout', '-issuer', '-ext', 'basicConstraints', '-in', pki / 'ca-next' / 'ca-cert.pem')
    assert 'issuer=CN = Fleet Root CA' in text and 'pathlen:0' in text, text
    assert (pki / 'ca-bundle.pem').read_text() == old_ca + (pki / 'root' / 'ca-cert.pem').read_text()
    assert verifies(pki / 'ca-bundle.pem', old_leaf), 'a host still on its old certificate is refused in phase 1'

    rc, output = playbook(hosts, 'ca_rollover.yml', '-e', 'phase=2', *roll_off)
    assert rc == 0, output[-4000:]
    next_ca = (pki / 'ca-next' / 'ca-cert.pem').read_text()
    assert (pki / 'ca-bundle.pem').read_text() == old_ca + (pki / 'root' / 'ca-cert.pem').read_text()
    for cert in sorted((pki / 'issued').glob('*-cert.pem')):
        assert cert.read_text().endswith(next_ca), '%s does not carry the issuing CA' % cert
        assert verifies(pki / 'ca-bundle.pem', cert), cert
    assert verifies(pki / 'ca-bundle.pem', old_leaf), 'phase 2 no longer trusts the old CA'
    # Mid-move, a run without the root (another inventory, a timer) would bundle the issuing CA without it.
    bundle = (pki / 'ca-bundle.pem').read_text()
    rc, output = playbook(hosts, 'pki.yml', '-e', 'pki_root_dir=')
    assert rc != 0 and 'Keep pki_root_dir (and pki_root_passphrase) set' in ' '.join(output.split()), output[-3000:]
    assert (pki / 'ca-bundle.pem').read_text() == bundle

    rc, output = playbook(hosts, 'ca_rollover.yml', *roll_off)
    assert rc == 0, output[-4000:]
    assert 'phases to run: 3 (resuming rollover' in output, output[-3000:]
    assert (pki / 'ca-bundle.pem').read_text() == (pki / 'root' / 'ca-cert.pem').read_text(), 'the root alone'
    assert (pki / 'ca' / 'ca-cert.pem').read_text() == next_ca, 'the issuing CA is promoted to pki_ca_dir'
    assert [path.read_text() for path in (pki / 'retired-ca').glob('*/ca-cert.pem')] == [old_ca]
    for cert in sorted((pki / 'issued').glob('*-cert.pem')):
        assert cert.read_text().endswith(next_ca), '%s does not carry the issuing CA' % cert
        assert verifies(pki / 'ca-bundle.pem', cert), cert
    assert not verifies(pki / 'ca-bundle.pem', old_leaf), 'the old CA is still trusted after phase 3'
    rc, output = playbook(hosts, 'pki.yml')
    assert rc == 0, output[-4000:]
    assert 'changed=0' in output[output.rindex('PLAY RECAP'):].split('localhost', 1)[1].splitlines()[0], output[-3000:]
    # A phase 3 killed after its promotion but before its state was written is resumed, not refused.
    state = json.loads((pki / 'rollover.json').read_text())
    state['status'] = 'running'
    (pki / 'rollover.json').write_text(json.dumps(state))
    rc, output = playbook(hosts, 'ca_rollover.yml', '-e', 'phase=3', *roll_off)
    assert rc == 0, output[-4000:]
    assert json.loads((pki / 'rollover.json').read_text())['status'] == 'done'
    assert (pki / 'ca-bundle.pem').read_text() == (pki / 'root' / 'ca-cert.pem').read_text()


def test_names_outside_the_constraints_stop_a_new_fleet_of_two_tiers_before_any_ca_is_made(tmp_path):
    """pf-pxe1 left out of pki_ca_name_constraints_permitted_dns on a new fleet: pki.yml stops before it makes the
    root and the CA (which would keep those constraints for good), naming the host (the move's phase 1 does the
    same: test_the_move_of_a_fleet_of_one_ca_under_a_new_root_on_the_control_node)."""
    hosts = inventory(tmp_path, FLEET)
    (tmp_path / 'group_vars').mkdir()
    (tmp_path / 'group_vars' / 'all.yml').write_text(TWO_TIERS.replace(', pf-pxe1', '')
                                                     + 'pki_root_dir: %s\n' % (tmp_path / 'pki' / 'root'))
    rc, output = playbook(hosts, 'pki.yml')
    flat = ' '.join(output.split())
    assert rc != 0 and 'pf-pxe1: its certificate client-pf-pxe1 names pf-pxe1, outside' in flat, flat[-3000:]
    assert not (tmp_path / 'pki' / 'root').exists() and not (tmp_path / 'pki' / 'ca').exists()
