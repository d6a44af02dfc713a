"""The PKI tasks run on the control node as the user running the playbook, never become another user there.

-b, become in ansible.cfg or AWX's privilege escalation turn become on for localhost too: the PKI would then be
written by root. pki.yml (site's first play) stops before any change, naming the causes and the fix. Fleet hosts
are local (ansible_connection: local) and nothing is contacted; `su -s /bin/sh nobody` stands in for a become to
another user (root, in a real run by a non-root operator), since these tests run as any user.
"""
import os

import yaml

from test_preflight import ROOT, run_playbook

BECOME_NOBODY = ['--become-method', 'su', '--become-user', 'nobody', '-e', 'ansible_become_flags="-s /bin/sh"']


def inventory(tmp_path, fleet_vars=None):
    path = tmp_path / 'hosts.yml'
    path.write_text(yaml.safe_dump({'fleet': {
        'vars': dict({'ansible_connection': 'local', 'fleetpki_pki_dir': str(tmp_path / 'pki'),
                      'fleetpki_redis_password': 'control-node-become-test'}, **(fleet_vars or {})),
        'children': {group: {'hosts': {host: None}} for group, host in [
            ('redis_servers', 'cb-redis1'), ('workers', 'cb-worker1'), ('api_servers', 'cb-api1')]}}}))
    return path


def pki(tmp_path, *extra, fleet_vars=None):
    return run_playbook(inventory(tmp_path, fleet_vars), ROOT / 'playbooks' / 'pki.yml', *extra)


def test_become_on_the_command_line_stops_before_the_pki(tmp_path):
    rc, output = pki(tmp_path, '-b', *BECOME_NOBODY)
    flat = ' '.join(output.split())
    assert rc != 0
    assert 'The PKI tasks would run on the control node as' in flat, flat[-3000:]
    assert 'not as you (uid %d)' % os.getuid() in flat, flat[-3000:]
    assert '-b / --become on the command line, "become = True" in ansible.cfg' in flat
    assert 'privilege escalation in the AWX job template' in flat
    assert 'ansible_become: true under "fleet: vars:" in hosts.yml, or in group_vars/fleet/' in flat
    assert not (tmp_path / 'pki').exists(), 'the PKI was touched'


def test_become_in_the_environment_stops_before_the_pki(tmp_path, monkeypatch):
    monkeypatch.setenv('ANSIBLE_BECOME', 'true')  # what "become = True" in ansible.cfg sets
    rc, output = pki(tmp_path, *BECOME_NOBODY)
    assert rc != 0 and 'The PKI tasks would run on the control node as' in ' '.join(output.split()), output[-3000:]
    assert not (tmp_path / 'pki').exists()


def test_become_on_the_fleet_group_does_not_reach_the_control_node(tmp_path):
    """What README says to do: become set on the fleet's hosts in the inventory; the PKI still runs as the user."""
    rc, output = pki(tmp_path, fleet_vars={'ansible_become': True, 'ansible_become_method': 'su',
                                           'ansible_become_user': 'nobody', 'ansible_become_flags': '-s /bin/sh'})
    assert rc == 0, output[-3000:]
    assert (tmp_path / 'pki' / 'ca' / 'ca-cert.pem').is_file()
    assert (tmp_path / 'pki' / 'ca' / 'ca-key.pem').stat().st_uid == os.getuid()
