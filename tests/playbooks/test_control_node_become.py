"""The PKI tasks run on the control node as the user running the playbook, never become another user there.

-b, become in ansible.cfg or AWX's privilege escalation turn become on for localhost too: the PKI would then be
written by root. Every playbook that writes in the PKI directory on the control node (pki.yml, which site.yml and
rotate.yml import, ca_rollover, ca_renew, revoke, pki_backup, pki_restore, expiry_report) stops before any change,
naming the causes and the fix, also when the become times out (Ansible then reports localhost unreachable). Fleet hosts
are local (ansible_connection: local) and nothing is contacted; `su -s /bin/sh nobody` stands in for a become to
another user (root, in a real run by a non-root operator), since these tests run as any user.
"""
import json
import os
import shutil
import stat

import pytest
import yaml

from test_preflight import ROOT, run_playbook

BECOME_NOBODY = ['--become-method', 'su', '--become-user', 'nobody', '-e', 'ansible_become_flags="-s /bin/sh"']


def inventory(tmp_path, fleet_vars=None):
    path = tmp_path / 'hosts.yml'
    path.write_text(yaml.safe_dump({'fleet': {
        # The hosts are this machine (local): keys made on the control node, none in this machine's /etc.
        'vars': dict({'ansible_connection': 'local', 'fleetpki_pki_dir': str(tmp_path / 'pki'), 'fleetpki_host_keys': [],
                      'fleetpki_redis_password': 'control-node-become-test'}, **(fleet_vars or {})),
        'children': {group: {'hosts': {host: None}} for group, host in [
            ('redis_servers', 'cb-redis1'), ('workers', 'cb-worker1'), ('api_servers', 'cb-api1')]}}}))
    return path


def pki(tmp_path, *extra, fleet_vars=None):
    return run_playbook(inventory(tmp_path, fleet_vars), ROOT / 'playbooks' / 'pki.yml', *extra)


def snapshot(pki_dir):
    """Every entry of the PKI directory: its mode, owner and content (a file's bytes)."""
    return {str(path.relative_to(pki_dir)): (path.lstat().st_mode, path.lstat().st_uid,
                                             path.read_bytes() if stat.S_ISREG(path.lstat().st_mode) else None)
            for path in sorted(pki_dir.rglob('*'))}


@pytest.fixture(scope='module')
def built_pki(tmp_path_factory):
    """A fleet's PKI made once, without become: each test below gets a copy to leave untouched."""
    base = tmp_path_factory.mktemp('built')
    rc, output = pki(base)
    assert rc == 0, output[-3000:]
    return base / 'pki'


def assert_stopped(tmp_path, rc, output, before):
    flat = ' '.join(output.split())
    assert rc != 0
    assert 'The PKI tasks would run on the control node as' in flat, flat[-3000:]
    assert 'not as you (uid %d)' % os.getuid() in flat, flat[-3000:]
    assert 'Nothing was changed.' in flat
    assert snapshot(tmp_path / 'pki') == before, 'the PKI directory changed'


# Each with the options that make it write in the PKI directory (ca_renew: renew now; expiry_report: its metrics).
WRITERS = [('ca_rollover.yml', []), ('ca_renew.yml', ['-e', 'ca_renew_days=4000']),
           ('revoke.yml', ['-e', 'revoke_host=cb-worker1']),
           ('pki_backup.yml', ['-e', 'pki_backup_passphrase=control-node-become-backup']),
           ('pki_restore.yml', ['-e', 'pki_backup_passphrase=control-node-become-backup', '-e', 'pki_restore_force=true']),
           ('expiry_report.yml', []), ('rotate.yml', ['-e', 'force=true'])]


@pytest.mark.parametrize('name,extra', WRITERS, ids=[name for name, extra in WRITERS])
def test_every_playbook_that_writes_the_pki_stops_under_become(tmp_path, built_pki, name, extra):
    shutil.copytree(built_pki, tmp_path / 'pki', symlinks=True)
    archive = tmp_path / 'backups' / 'pki.fpkb'
    before = snapshot(tmp_path / 'pki')
    rc, output = run_playbook(inventory(tmp_path), ROOT / 'playbooks' / name, '-b', *BECOME_NOBODY,
                              '-e', 'pki_backup_archive=%s' % archive, *extra)
    assert_stopped(tmp_path, rc, output, before)
    assert not archive.exists()


def rollover_recorded(pki_dir, phase, status):
    """pki/rollover.json as playbooks/ca_rollover.yml leaves it after phase PHASE (STATUS: done, or running when
    interrupted), with the next CA beside the current one."""
    shutil.copytree(pki_dir / 'ca', pki_dir / 'ca-next', symlinks=True)
    history = [{'phase': done, 'status': mark, 'at': '2026-01-01T00:00:00Z'}
               for done in range(1, phase + 1) for mark in ('running', 'done')][:2 * phase - (status == 'running')]
    (pki_dir / 'rollover.json').write_text(json.dumps({
        'id': '20260101T000000Z', 'mode': 'new_key', 'phase': phase, 'status': status,
        'ca_common_name': 'fleetpki CA', 'next_ca_common_name': 'fleetpki CA 20260101T000000Z',
        'started_at': '2026-01-01T00:00:00Z', 'updated_at': '2026-01-01T00:00:00Z', 'history': history}))


# A run that resumes a rollover starts at phase 2 or 3: it must stop as the first phase does, before its phase's
# first write (rollover.json recorded as running).
RESUMED = [('phase 1 done, resumes at 2', 1, 'done', []), ('phase 2 interrupted, resumes it', 2, 'running', []),
           ('phase 2 done, phase 3 asked for', 2, 'done', ['-e', 'phase=3'])]


@pytest.mark.parametrize('phase,status,extra', [case[1:] for case in RESUMED], ids=[case[0] for case in RESUMED])
def test_a_resumed_ca_rollover_stops_under_become(tmp_path, built_pki, phase, status, extra):
    shutil.copytree(built_pki, tmp_path / 'pki', symlinks=True)
    rollover_recorded(tmp_path / 'pki', phase, status)
    before = snapshot(tmp_path / 'pki')
    rc, output = run_playbook(inventory(tmp_path), ROOT / 'playbooks' / 'ca_rollover.yml', '-b', *BECOME_NOBODY, *extra)
    assert_stopped(tmp_path, rc, output, before)


def test_a_become_that_times_out_is_named_not_reported_unreachable(tmp_path, built_pki):
    """A sudo password prompt nobody answers: Ansible gives up after the become timeout and calls localhost
    unreachable. A become executable that never answers stands in for it."""
    shutil.copytree(built_pki, tmp_path / 'pki', symlinks=True)
    silent = tmp_path / 'silent-sudo'
    silent.write_text('#!/bin/sh\nexec sleep 5\n')
    silent.chmod(0o755)
    before = snapshot(tmp_path / 'pki')
    rc, output = run_playbook(inventory(tmp_path), ROOT / 'playbooks' / 'ca_renew.yml', '-b', '--become-method', 'sudo', '--become-user', 'nobody',
                              '-e', 'ansible_become_exe=%s' % silent, '-e', 'ansible_local_become_success_timeout=1',
                              '-e', 'ca_renew_days=4000')
    assert_stopped(tmp_path, rc, output, before)
    assert 'the become there timed out' in ' '.join(output.split())


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
