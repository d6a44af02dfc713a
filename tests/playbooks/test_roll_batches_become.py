"""A fleet host where the roles would not run as root fails at the start of the roll with a message that says
to set ansible_become: true, not with a permission error deep inside a role.

Local hosts (ansible_connection: local); `su -s /bin/sh nobody` stands in for an SSH login as a non-root user.
Only the check and the batch message run (--tags fleetpki_roll_batch; the check is tagged always).
"""
import re

import yaml

from test_preflight import run_playbook, ROOT

HOSTS = ['worker1', 'worker2']
AS_NOBODY = {'ansible_become': True, 'ansible_become_method': 'su', 'ansible_become_user': 'nobody',
             'ansible_become_flags': '-s /bin/sh'}


def roll(tmp_path, host_vars):
    path = tmp_path / 'hosts.yml'
    path.write_text(yaml.safe_dump({'fleet': {
        'vars': dict({'ansible_connection': 'local', 'fleetpki_pki_dir': str(tmp_path / 'pki')}, **host_vars),
        'children': {'workers': {'hosts': {host: None for host in HOSTS}}}}}))
    return run_playbook(path, ROOT / 'playbooks' / 'roll.yml', '--tags', 'fleetpki_roll_batch',
                        '-e', '{"fleetpki_roll_services": ["workers"]}')


def test_a_non_root_user_stops_the_roll_before_any_role(tmp_path):
    rc, output = roll(tmp_path, AS_NOBODY)
    assert rc != 0
    flat = ' '.join(output.split())
    assert 'worker1: the roles run there as uid 65534' in flat, flat[-3000:]
    assert 'Set ansible_become: true for the fleet\'s hosts in the inventory (under "fleet: vars:" in hosts.yml, ' \
        'or in group_vars/fleet/; not in group_vars/all' in flat, flat[-3000:]
    assert 'batch 1 of' not in flat, 'the roll went on past the check'


def test_root_passes(tmp_path):
    rc, output = roll(tmp_path, {})
    assert rc == 0, output[-3000:]
    assert 'batch 1 of 2: worker1' in output


def test_become_to_root_is_trusted_without_asking_the_host(tmp_path):
    rc, output = roll(tmp_path, {'ansible_become': True, 'ansible_become_method': 'su'})
    assert rc == 0, output[-3000:]
    flat = ' '.join(output.split())
    # The hosts answer in any order (forks): look at the whole task's block, up to the next task.
    block = re.search(r'Ask which user the roles run as on each host\] \**(.*?)TASK \[', flat)
    assert block, flat[-3000:]
    assert sorted(re.findall(r'(\w+): \[(\w+)\]', block.group(1))) == [('skipping', 'worker1'), ('skipping', 'worker2')], \
        block.group(1)
