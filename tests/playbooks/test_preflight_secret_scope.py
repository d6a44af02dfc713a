"""pki_ca_passphrase has one value on localhost and on every fleet host, or the preflight refuses the run.

The PKI tasks of playbooks/pki.yml run once for the fleet play (run_once, delegated to the control node), so
they template pki_ca_passphrase with the variables of the play's first fleet host, while ca_renew.yml, revoke.yml
and ca_rollover.yml run on localhost with localhost's. The preflight read localhost's only: a passphrase set for
the fleet group only (fleet: vars:, group_vars/fleet) made an encrypted CA, then every later run was refused with
"pki_ca_passphrase is not set"; a passphrase only localhost had passed while the PKI tasks saw none (an unencrypted
CA key). Now both, and a value of one group only, are refused before anything is written, naming where each value
comes from and the fix (group_vars/all). Each case runs the real playbooks/pki.yml, which contacts no fleet host.
"""
import os
import pathlib
import re
import shlex
import subprocess

import yaml

from test_preflight import FLEET, ROOT, inventory, playbook

PASSPHRASE = 'scope-test-ca-passphrase-0123456789'


def fleet_inventory(tmp_path, fleet_vars=None, localhost_vars=None, all_vars=None):
    """hosts.yml with the fleet's groups (fleet_vars under fleet: vars:), and the given group_vars/all and
    host_vars/localhost beside it."""
    path = inventory(tmp_path, FLEET, fleet_vars)
    for directory, name, values in (('group_vars', 'all', all_vars), ('host_vars', 'localhost', localhost_vars)):
        if values:
            (tmp_path / directory).mkdir()
            (tmp_path / directory / (name + '.yml')).write_text(yaml.safe_dump(values))
    return path


def ca_key(tmp_path):
    return pathlib.Path(tmp_path / 'pki' / 'ca' / 'ca-key.pem')


def is_encrypted(path):
    return 'ENCRYPTED' in path.read_text().split('\n', 1)[0]


def test_a_passphrase_of_the_fleet_group_only_is_refused_on_every_run_before_a_ca_is_made(tmp_path):
    """pki.yml would make an encrypted CA with it (its PKI tasks read the fleet host's variables) that the plays run
    on localhost (ca_renew.yml, revoke.yml, ca_rollover.yml) cannot open; today the first run made the CA and every
    later run was refused with "pki_ca_passphrase is not set"."""
    path = fleet_inventory(tmp_path, fleet_vars={'pki_ca_passphrase': PASSPHRASE})
    for _run in range(2):
        rc, output = playbook(path, 'pki.yml')
        flat = ' '.join(output.split())
        assert rc != 0, 'the passphrase of the fleet group only was taken: %s' % output[-2000:]
        assert not ca_key(tmp_path).exists(), 'the PKI was touched before the preflight failed'
        assert 'pki_ca_passphrase is not set' not in flat, output[-3000:]
        assert 'pki_ca_passphrase is not the same on localhost and every fleet host' in flat, output[-3000:]
        assert 'not set on localhost' in flat and '%s:' % path in flat, output[-3000:]
        assert 'Set it once in group_vars/all' in flat, output[-3000:]
        assert PASSPHRASE not in output


def test_a_passphrase_only_localhost_has_is_refused_before_a_ca_is_made(tmp_path):
    """The PKI tasks would not see it: the CA key would be written unencrypted."""
    path = fleet_inventory(tmp_path, localhost_vars={'pki_ca_passphrase': PASSPHRASE})
    rc, output = playbook(path, 'pki.yml')
    flat = ' '.join(output.split())
    assert rc != 0, 'a CA was made while the PKI tasks saw no passphrase: %s' % output[-2000:]
    assert not ca_key(tmp_path).exists(), 'the PKI was touched before the preflight failed'
    assert 'pki_ca_passphrase' in flat and 'group_vars/all' in flat, output[-3000:]
    # Where each value comes from, as far as Ansible knows it: localhost's file, and the fleet host that has none.
    assert 'host_vars/localhost.yml' in flat, output[-3000:]
    assert 'pf-redis1' in flat, output[-3000:]
    assert PASSPHRASE not in output


def test_a_passphrase_set_for_one_group_of_the_fleet_is_refused(tmp_path):
    """Under --limit the PKI tasks run with another host's variables: every fleet host must see the same value."""
    path = fleet_inventory(tmp_path)
    hosts = yaml.safe_load(path.read_text())
    hosts['fleet']['children']['workers']['vars'] = {'pki_ca_passphrase': PASSPHRASE}
    path.write_text(yaml.safe_dump(hosts))
    rc, output = playbook(path, 'pki.yml', '--limit', 'pf-worker1')
    flat = ' '.join(output.split())
    assert rc != 0, output[-2000:]
    assert not ca_key(tmp_path).exists(), 'the PKI was touched before the preflight failed'
    assert 'pki_ca_passphrase' in flat and 'group_vars/all' in flat, output[-3000:]
    assert PASSPHRASE not in output


def test_a_passphrase_in_group_vars_all_passes_twice(tmp_path):
    path = fleet_inventory(tmp_path, all_vars={'pki_ca_passphrase': PASSPHRASE})
    for _run in range(2):
        rc, output = playbook(path, 'pki.yml')
        assert rc == 0, output[-3000:]
    assert is_encrypted(ca_key(tmp_path))


def test_a_passphrase_set_for_a_ca_key_written_unencrypted_names_the_way_out_and_it_works(tmp_path):
    """A project the old bug left with an unencrypted CA key (its passphrase was set on localhost only): following
    "set it once in group_vars/all" made pki_ca refuse with "omit ca_passphrase". The preflight now stops first with
    both ways out; the command it gives encrypts the key in place, and the next run passes."""
    path = fleet_inventory(tmp_path)
    rc, output = playbook(path, 'pki.yml')
    assert rc == 0, output[-3000:]
    assert not is_encrypted(ca_key(tmp_path))
    cert = (tmp_path / 'pki' / 'ca' / 'ca-cert.pem').read_bytes()
    (tmp_path / 'group_vars').mkdir()
    (tmp_path / 'group_vars' / 'all.yml').write_text(yaml.safe_dump({'pki_ca_passphrase': PASSPHRASE}))

    rc, output = playbook(path, 'pki.yml')
    flat = ' '.join(output.split()).replace('\\"', '"')
    assert rc != 0, output[-3000:]
    assert 'omit ca_passphrase' not in flat, 'pki_ca ran before the preflight: ' + output[-3000:]
    assert 'the CA key %s is not encrypted but pki_ca_passphrase is set' % ca_key(tmp_path) in flat, output[-3000:]
    assert 'unset pki_ca_passphrase' in flat and 'encrypt_existing_key' in flat, output[-3000:]
    assert PASSPHRASE not in output and not is_encrypted(ca_key(tmp_path))
    command = re.search(r"(ansible localhost -i <inventory> -m fleetpki\.mtls\.pki_ca -a '[^']*')", flat).group(1)

    proc = subprocess.run(shlex.split(command.replace('<inventory>', str(path))), cwd=str(ROOT),
                          env=dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1'),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=300,
                          check=False)
    assert proc.returncode == 0 and 'encrypt_key' in proc.stdout, proc.stdout[-3000:]
    assert PASSPHRASE not in proc.stdout
    assert is_encrypted(ca_key(tmp_path)) and (tmp_path / 'pki' / 'ca' / 'ca-cert.pem').read_bytes() == cert
    assert oct(ca_key(tmp_path).stat().st_mode & 0o777) == '0o600'

    rc, output = playbook(path, 'pki.yml')
    assert rc == 0, output[-3000:]
    assert (tmp_path / 'pki' / 'ca' / 'ca-cert.pem').read_bytes() == cert
