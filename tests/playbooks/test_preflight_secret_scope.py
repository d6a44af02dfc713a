"""The preflight reads the CA passphrase from the host whose variables the PKI tasks use.

The PKI tasks of playbooks/pki.yml run once for the fleet play (run_once, delegated to the control node), so
they template pki_ca_passphrase with the variables of the play's first fleet host, not with localhost's. A
passphrase set for the fleet group only (fleet: vars:, group_vars/fleet) makes an encrypted CA and must keep
working on the next run; a passphrase only localhost has is not seen by the PKI tasks and must be refused before
a CA key is written unencrypted. Each case runs the real playbooks/pki.yml, which contacts no fleet host.
"""
import pathlib

import yaml

from test_preflight import FLEET, playbook

PASSPHRASE = 'scope-test-ca-passphrase-0123456789'


def fleet_inventory(tmp_path, fleet_vars=None, localhost_vars=None, all_vars=None):
    """hosts.yml with the fleet's groups, and the given group_vars/all and host_vars/localhost beside it."""
    fleet = {'vars': dict({'ansible_connection': 'community.docker.docker',
                           'fleetpki_pki_dir': str(tmp_path / 'pki'),
                           'fleetpki_redis_password': 'preflight-test-password'}, **(fleet_vars or {})),
             'children': {group: {'hosts': {host: None for host in hosts}} for group, hosts in FLEET.items()}}
    path = tmp_path / 'hosts.yml'
    path.write_text(yaml.safe_dump({'fleet': fleet}))
    for directory, name, values in (('group_vars', 'all', all_vars), ('host_vars', 'localhost', localhost_vars)):
        if values:
            (tmp_path / directory).mkdir()
            (tmp_path / directory / (name + '.yml')).write_text(yaml.safe_dump(values))
    return path


def ca_key(tmp_path):
    return pathlib.Path(tmp_path / 'pki' / 'ca' / 'ca-key.pem')


def is_encrypted(path):
    return 'ENCRYPTED' in path.read_text().split('\n', 1)[0]


def test_a_passphrase_of_the_fleet_group_only_makes_an_encrypted_ca_and_is_found_on_the_next_run(tmp_path):
    path = fleet_inventory(tmp_path, fleet_vars={'pki_ca_passphrase': PASSPHRASE})
    rc, output = playbook(path, 'pki.yml')
    assert rc == 0, output[-3000:]
    assert is_encrypted(ca_key(tmp_path)), 'the PKI tasks did not use the fleet group passphrase'
    rc, output = playbook(path, 'pki.yml')
    assert rc == 0, output[-3000:]
    assert 'pki_ca_passphrase is not set' not in output
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
