"""fleetpki.mtls.summary (enabled in the project's ansible.cfg): after the recap, per host, the names of the
tasks that changed or failed, never a value; a no_log task with a templated name shows as (hidden).

Runs a small playbook on two local hosts (ansible_connection: local) with the project's ansible.cfg.
"""
import os
import pathlib
import subprocess

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
SECRET = 'summary-test-secret-0123456789'

PLAYBOOK = [{
    'name': 'Summary test',
    'hosts': 'all',
    'gather_facts': False,
    'vars': {'secret': SECRET},
    'tasks': [
        {'name': 'Change something', 'ansible.builtin.command': 'true', 'changed_when': True},
        {'name': 'Nothing to do', 'ansible.builtin.command': 'true', 'changed_when': False},
        {'name': 'Write {{ secret }}', 'ansible.builtin.command': 'true', 'changed_when': True, 'no_log': True},
        {'name': 'Write the vaulted password', 'ansible.builtin.command': 'true', 'changed_when': True,
         'no_log': True},
        {'name': 'Show {{ secret }} openly', 'ansible.builtin.debug': {'msg': '{{ secret }}'},
         'changed_when': True, 'when': "inventory_hostname == 'nowhere'"},
        {'name': 'Reload item', 'ansible.builtin.command': 'echo {{ item }}', 'changed_when': True,
         'loop': [1, 2, 3], 'when': "inventory_hostname == 'sum-b'"},
        {'name': 'Fail on purpose', 'ansible.builtin.fail': {'msg': 'value {{ secret }}'},
         'when': "inventory_hostname == 'sum-b'"},
        {'name': 'Ignored failure', 'ansible.builtin.command': 'false', 'ignore_errors': True},
    ],
}]


def run(tmp_path, *extra, hosts=('sum-a', 'sum-b')):
    (tmp_path / 'hosts.yml').write_text(yaml.safe_dump(
        {'all': {'vars': {'ansible_connection': 'local', 'ansible_python_interpreter': '{{ ansible_playbook_python }}'},
                 'hosts': {host: None for host in hosts}}}))
    (tmp_path / 'play.yml').write_text(yaml.safe_dump(PLAYBOOK, sort_keys=False))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    proc = subprocess.run(['ansible-playbook', '-i', str(tmp_path / 'hosts.yml'), str(tmp_path / 'play.yml')]
                          + list(extra), cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300, check=False)
    return proc.returncode, proc.stdout


def summary_lines(output):
    assert 'CHANGES BY HOST' in output, output[-3000:]
    after = output.split('CHANGES BY HOST', 1)[1].splitlines()[1:]
    assert output.index('PLAY RECAP') < output.index('CHANGES BY HOST'), 'the summary comes after the recap'
    return [line for line in after if line.strip()]


def test_changed_and_failed_task_names_per_host_and_no_value(tmp_path):
    rc, output = run(tmp_path)
    assert rc != 0  # sum-b failed on purpose
    lines = summary_lines(output)
    assert lines == [
        'sum-a: changed: Change something, (hidden), Write the vaulted password',
        'sum-b: changed: Change something, (hidden), Write the vaulted password, Reload item (x3)'
        ' | failed: Fail on purpose',
    ], output[-3000:]
    summary = '\n'.join(lines)
    assert SECRET not in summary and 'Ignored failure' not in summary and 'Nothing to do' not in summary


def test_hosts_with_the_same_outcome_share_a_line(tmp_path):
    hosts = ['sum-%d' % number for number in range(7)]
    rc, output = run(tmp_path, '--limit', 'sum-0:sum-1:sum-2:sum-3:sum-4:sum-5:sum-6', hosts=hosts)
    assert rc == 0, output[-3000:]
    assert summary_lines(output) == [
        'sum-0, sum-1, sum-2, sum-3, sum-4 and 2 more: changed: Change something, (hidden), Write the vaulted password',
    ], output[-3000:]


def test_check_mode_says_would_change(tmp_path):
    rc, output = run(tmp_path, '--check', '--limit', 'sum-a')
    lines = summary_lines(output)
    assert lines and all(line.startswith('sum-a: ') for line in lines), output[-3000:]
    # command is skipped in check mode; nothing runs, so nothing changed
    assert lines == ['sum-a: no change'] or 'would change' in lines[0], output[-3000:]
