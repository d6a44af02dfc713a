"""fleetpki.mtls.roll_metrics (enabled in the project's ansible.cfg): after a roll playbook, each host's result in
<PKI dir>/metrics/fleetpki_roll.prom, also when the run stopped on a failure; hosts a run did not reach keep their
line; check mode and other playbooks write nothing.

Runs a small playbook named roll.yml on local hosts (ansible_connection: local) with the project's ansible.cfg.
"""
import os
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
# As roll.yml's plays: any_errors_fatal, so Ansible runs no further play once a host failed.
# Its first play on localhost, as rotate.yml's: the PKI dir is found from a fleet host's variables all the same.
PLAYBOOK = [
    {'name': 'Check the options', 'hosts': 'localhost', 'gather_facts': False, 'tasks': [
        {'ansible.builtin.debug': {'msg': 'options'}}]},
    {'name': 'A roll', 'hosts': 'all', 'gather_facts': False, 'any_errors_fatal': True, 'tasks': [
        {'name': 'Reach the host', 'ansible.builtin.command': 'true', 'changed_when': False},
        {'name': 'Fail where told', 'ansible.builtin.fail': {'msg': 'failed on purpose'},
         'when': "inventory_hostname in (fail_on | default('')).split(',')"}]},
    {'name': 'Never reached after a failure', 'hosts': 'localhost', 'gather_facts': False, 'tasks': [
        {'ansible.builtin.debug': {'msg': 'last play'}}]},
]


def run(tmp_path, *extra, name='roll.yml', hosts=('rm-a', 'rm-b')):
    pki = tmp_path / 'pki'
    (pki / 'ca').mkdir(parents=True, exist_ok=True)
    (tmp_path / 'hosts.yml').write_text(yaml.safe_dump(
        {'all': {'vars': {'ansible_connection': 'local', 'ansible_python_interpreter': '{{ ansible_playbook_python }}',
                          'fleetpki_pki_dir': str(pki)},
                 'hosts': {host: None for host in hosts}}}))
    (tmp_path / name).write_text(yaml.safe_dump(PLAYBOOK, sort_keys=False))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    proc = subprocess.run(['ansible-playbook', '-i', str(tmp_path / 'hosts.yml'), str(tmp_path / name)] + list(extra),
                          cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300, check=False)
    return proc.returncode, proc.stdout, pki / 'metrics' / 'fleetpki_roll.prom'


def results(path):
    return dict(re.findall(r'^fleetpki_roll_last_success\{host="([^"]+)"\} ([01])$', path.read_text(), re.M))


def test_each_hosts_result_also_when_the_run_stopped(tmp_path):
    rc, output, path = run(tmp_path, '-e', 'fail_on=rm-b')
    assert rc != 0 and 'last play' not in output
    assert results(path) == {'rm-a': '1', 'rm-b': '0'}, path.read_text()
    assert oct(path.stat().st_mode & 0o777) == '0o644'
    assert 'fleetpki_roll_last_playbook_info{playbook="roll.yml"} 1' in path.read_text()
    assert len(re.findall(r'^fleetpki_roll_last_run_seconds\{host="rm-[ab]"\} \d+$', path.read_text(), re.M)) == 2
    if shutil.which('promtool'):
        check = subprocess.run(['promtool', 'check', 'metrics'], input=path.read_text(), capture_output=True,
                               universal_newlines=True, check=False)
        assert check.returncode == 0, check.stdout + check.stderr
    # A run limited to rm-b that succeeds: rm-b's line changes, rm-a's stays.
    rc, output, path = run(tmp_path, '--limit', 'rm-b')
    assert rc == 0, output[-2000:]
    assert results(path) == {'rm-a': '1', 'rm-b': '1'}
    # rm-a gone from the inventory: kept for a day (a source that failed to load must not clear a failure), then
    # its line goes, or a decommissioned host's last failure would alert forever.
    rc, output, path = run(tmp_path, '-e', 'fail_on=rm-a')
    assert results(path) == {'rm-a': '0', 'rm-b': '1'}
    rc, output, path = run(tmp_path, hosts=('rm-b',))
    assert rc == 0 and results(path) == {'rm-a': '0', 'rm-b': '1'}, path.read_text()
    text = path.read_text()
    stamp = re.search(r'^fleetpki_roll_last_run_seconds\{host="rm-a"\} (\d+)$', text, re.M).group(1)
    path.write_text(text.replace('{host="rm-a"} %s' % stamp, '{host="rm-a"} %d' % (int(stamp) - 2 * 86400)))
    rc, output, path = run(tmp_path, hosts=('rm-b',))
    assert rc == 0 and results(path) == {'rm-b': '1'}, path.read_text()


@pytest.mark.parametrize('extra, name', [(['--check'], 'roll.yml'), ([], 'other.yml')])
def test_check_mode_and_other_playbooks_write_nothing(tmp_path, extra, name):
    rc, output, path = run(tmp_path, *extra, name=name)
    assert rc == 0, output[-2000:]
    assert not path.exists()


def test_a_run_refused_on_the_control_node_records_nothing(tmp_path):
    """Checks on the control node fail before any host is contacted (as under become): no line. The checks are
    delegated to it, or actions that never reach the host (assert, fail, set_fact...)."""
    refused = [{'name': 'Checks', 'hosts': 'all', 'gather_facts': False, 'any_errors_fatal': True, 'tasks': [
        {'name': 'Ask', 'ansible.builtin.command': 'id -u', 'delegate_to': 'localhost', 'run_once': True,
         'changed_when': False},
        {'name': 'Refuse', 'ansible.builtin.assert': {'that': ['false']}, 'run_once': True}]}]
    (tmp_path / 'roll.yml').write_text(yaml.safe_dump(refused, sort_keys=False))
    pki = tmp_path / 'pki'
    (pki / 'ca').mkdir(parents=True)
    (tmp_path / 'hosts.yml').write_text(yaml.safe_dump(
        {'all': {'vars': {'ansible_connection': 'local', 'ansible_python_interpreter': '{{ ansible_playbook_python }}',
                          'fleetpki_pki_dir': str(pki)}, 'hosts': {'rm-a': None}}}))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    proc = subprocess.run(['ansible-playbook', '-i', str(tmp_path / 'hosts.yml'), str(tmp_path / 'roll.yml')],
                          cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300, check=False)
    assert proc.returncode != 0
    assert not (pki / 'metrics').exists()
