"""The cron job's log and the job the role replaces: a log the role creates as root must never lead it elsewhere,
and a job of the other method (or of root, before the job ran as the project's owner) is removed or named.

Crontabs are the fake one of test_renewal_timer (a crontab first on PATH, one file per user): the real crontabs
are never touched. No fleet host is contacted.
"""
import os
import pwd
import shlex
from pathlib import Path

import pytest

from test_preflight import FLEET, ROOT, inventory
from test_renewal_timer import checked_project, fake_crontab, renewal_timer
# operator: a fixture (a user with sudo and a venv of his own), used by name.
from test_renewal_timer_nonroot import SYSTEM_PYTHON, operator  # noqa: F401 pylint: disable=unused-import

OLD_ROOT_ENTRY = '#Ansible: fleetpki renewal\n17 3 * * * cd /srv/old && ansible-playbook old.yml\n'


def cron(hosts, units, project, log, *extra):
    return renewal_timer(hosts, units, '-e', 'renewal_timer_method=cron', '-e', 'renewal_timer_project_dir=%s' % project,
                         '-e', 'renewal_timer_cron_log=%s' % log, *extra)


def cron_project(tmp_path, monkeypatch):
    """(crontabs dir, inventory, project, units dir, log dir) of a cron check: the log dir is root's, mode 0755."""
    tables = fake_crontab(tmp_path, monkeypatch)
    hosts, project, units = checked_project(tmp_path)
    logs = tmp_path / 'logs'
    logs.mkdir(mode=0o755)
    return tables, hosts, project, units, logs


@pytest.mark.parametrize('make_link, reason', [
    (lambda victim, log: log.symlink_to(victim), 'is a symbolic link'),
    (lambda victim, log: os.link(str(victim), str(log)), 'has 2 names (a hard link)'),
], ids=['symbolic link', 'hard link'])
def test_a_cron_log_that_leads_to_another_file_is_refused_and_that_file_untouched(tmp_path, monkeypatch, make_link, reason):
    """The role creates the log as root with the job user as owner: a log that is a link (to /etc/shadow) would give
    that file to the job's user."""
    tables, hosts, project, units, logs = cron_project(tmp_path, monkeypatch)
    victim = tmp_path / 'victim'
    victim.write_text('root:secret\n')
    os.chmod(str(victim), 0o600)
    log = logs / 'renewal.log'
    make_link(victim, log)
    before = victim.stat()
    rc, output = cron(hosts, units, project, log)
    assert rc != 0
    flat = ' '.join(output.split())
    assert 'renewal_timer_cron_log %s is refused: %s %s' % (log, log, reason) in flat, flat[-3000:]
    after = victim.stat()
    assert (after.st_uid, after.st_gid, after.st_mode, after.st_mtime) == (
        before.st_uid, before.st_gid, before.st_mode, before.st_mtime)
    assert list(tables.iterdir()) == []


def test_a_cron_log_directory_others_can_write_is_refused_with_the_logs_own_message(tmp_path, monkeypatch):
    """A sticky world-writable directory (/tmp): another user could put a link where the log goes between the
    check and its creation by root. The message names the variable and a fix that leaves /var/log alone."""
    tables = fake_crontab(tmp_path, monkeypatch)
    hosts, project, units = checked_project(tmp_path)
    logs = tmp_path / 'shared'
    logs.mkdir()
    os.chmod(str(logs), 0o1777)
    rc, output = cron(hosts, units, project, logs / 'renewal.log')
    assert rc != 0
    flat = ' '.join(output.split())
    assert 'renewal_timer_cron_log %s is refused: %s (writable by others, mode 1777)' % (logs / 'renewal.log', logs) in flat, \
        flat[-3000:]
    assert 'leave it at the default /var/log/fleetpki/<name>.log, or name a file in a root:root 0755 directory' in flat
    assert 'run their code' not in flat and 'chown root:root' not in flat
    assert list(tables.iterdir()) == [] and not (logs / 'renewal.log').exists()


def test_installing_the_timer_names_a_cron_entry_of_the_same_job(tmp_path, monkeypatch):
    """Switching from cron to systemd: the old cron entry would run the job a second time each night."""
    tables = fake_crontab(tmp_path, monkeypatch)
    # The older version's name, and the name the cron method gives it now (the unit's).
    (tables / 'root').write_text(OLD_ROOT_ENTRY + OLD_ROOT_ENTRY.replace('fleetpki renewal', 'fleetpki-renewal'))
    hosts, project, units = checked_project(tmp_path)
    rc, output = renewal_timer(hosts, units, '-e', 'renewal_timer_project_dir=%s' % project)
    assert rc == 0, output[-3000:]
    flat = ' '.join(output.split()).replace('\\"', '"')  # debug prints its message as JSON
    for name in ['fleetpki renewal', 'fleetpki-renewal']:
        assert ("WARNING: root's crontab has the cron entry '%s': it runs the job a second time. Remove it: sudo "
                "ansible localhost -m ansible.builtin.cron -a \"name='%s' user=root state=absent\"" % (name, name)) in flat, \
            flat[-3000:]
    assert (units / 'fleetpki-renewal.timer').exists()


def test_installing_the_cron_entry_names_a_timer_of_the_same_job(tmp_path, monkeypatch):
    """Switching from systemd to cron: the timer would run the job a second time each night."""
    fake_crontab(tmp_path, monkeypatch)
    hosts, project, units = checked_project(tmp_path)
    rc, output = renewal_timer(hosts, units, '-e', 'renewal_timer_project_dir=%s' % project)
    assert rc == 0, output[-3000:]
    logs = tmp_path / 'logs'
    logs.mkdir(mode=0o755)
    # The older version's log at its real path (a wrong path in the role would go unnoticed with an override).
    old_log = Path('/var/log/fleetpki-renewal.log')
    if old_log.exists():
        pytest.skip('%s exists on this machine: not the test\'s to create or remove' % old_log)
    old_log.write_text('')
    try:
        rc, output = cron(hosts, units, project, logs / 'renewal.log')
    finally:
        old_log.unlink()
    assert rc == 0, output[-3000:]
    flat = ' '.join(output.split())
    assert ('WARNING: %s is an older version\'s log of this job and is no longer written (the job logs to %s): keep '
            'what you need from it, then remove it: sudo rm %s' % (old_log, logs / 'renewal.log', old_log)) in flat, \
        flat[-3000:]
    assert ('WARNING: the systemd timer fleetpki-renewal.timer (%s/fleetpki-renewal.timer) runs the job a second '
            'time. Remove it: sudo systemctl disable --now fleetpki-renewal.timer; sudo rm %s/fleetpki-renewal.timer '
            '%s/fleetpki-renewal.service; sudo systemctl daemon-reload' % (units, units, units)) in flat, flat[-3000:]


def test_a_job_of_roots_crontab_is_removed_when_the_job_runs_as_the_projects_owner(tmp_path, monkeypatch, operator):
    """An upgrade: the older version's job ran from root's crontab; the job now runs as the project's owner, and
    root's entry would run it a second time, as root."""
    name, home, bindir = operator
    tables = fake_crontab(tmp_path, monkeypatch)
    project = home / 'fleets' / 'cron'
    (tables / 'root').write_text('MAILTO=ops\n' + legacy_entry(project))
    (project / 'inventory').mkdir(parents=True)
    (project / 'ansible.cfg').write_text('[defaults]\ncollections_path = %s\ninject_facts_as_vars = False\n'
                                         % (ROOT / 'collections'))
    hosts = inventory(project / 'inventory', FLEET)
    for path in [home / 'fleets', project, project / 'inventory', project / 'ansible.cfg', hosts]:
        os.chown(str(path), pwd.getpwnam(name).pw_uid, -1)
    units = tmp_path / 'units'
    units.mkdir()
    logs = tmp_path / 'logs'
    logs.mkdir(mode=0o755)
    # The tasks that run as him need a Python he can read (this checkout's is under /root).
    rc, output = cron(hosts, units, project, logs / 'renewal.log', '-e', 'ansible_python_interpreter=%s' % SYSTEM_PYTHON,
                      '-e', 'renewal_timer_ansible_playbook=%s' % (bindir / 'ansible-playbook'))
    assert rc == 0, output[-3000:]
    assert (tables / 'root').read_text() == 'MAILTO=ops\n', 'root keeps its other lines, loses the old job'
    assert '#Ansible: fleetpki-renewal\n' in (tables / name).read_text()
    # The checks root runs with his HOME leave nothing of root's there (a root-owned ~/.ansible/tmp would stop the
    # nightly job, which runs as him).
    owned_by_root = [str(path) for path in home.rglob('*') if path.lstat().st_uid == 0]
    assert not owned_by_root, owned_by_root


def legacy_entry(project):
    """An older version's entry: its fixed name, the command line as the role wrote it for project."""
    return '#Ansible: fleetpki renewal\n17 3 * * * cd %s && ansible-playbook old.yml\n' % shlex.quote(str(project))


def test_an_upgrade_replaces_this_projects_entry_of_the_older_name_and_names_another_projects(tmp_path, monkeypatch):
    """The entry is named from renewal_timer_unit_name; the older version's entry "fleetpki renewal" of this project
    (cd to it) would run the job a second time and is removed; one of another project stays, named in a WARNING."""
    tables, hosts, project, units, logs = cron_project(tmp_path, monkeypatch)
    (tables / 'root').write_text('MAILTO=ops\n' + legacy_entry(project))
    rc, output = cron(hosts, units, project, logs / 'renewal.log')
    assert rc == 0, output[-3000:]
    table = (tables / 'root').read_text()
    assert '#Ansible: fleetpki renewal\n' not in table and table.count('#Ansible: fleetpki-renewal\n') == 1, table
    assert 'cd %s && ' % project in table and 'MAILTO=ops\n' in table
    # Another project's entry of the older name: not ours to remove.
    (tables / 'root').write_text(OLD_ROOT_ENTRY)
    rc, output = cron(hosts, units, project, logs / 'renewal.log')
    assert rc == 0, output[-3000:]
    assert OLD_ROOT_ENTRY in (tables / 'root').read_text()
    flat = ' '.join(output.split()).replace('\\"', '"')
    assert ("WARNING: root's crontab has the cron entry 'fleetpki renewal' (17 3 * * * cd /srv/old && ansible-playbook "
            "old.yml), of another project or an older version of this job: if it runs this job, it runs it a second "
            "time. Remove it: sudo ansible localhost -m ansible.builtin.cron -a \"name='fleetpki renewal' user=root "
            "state=absent\"") in flat, flat[-3000:]


def test_a_second_project_with_the_same_entry_name_is_refused_not_overwritten(tmp_path, monkeypatch):
    """Two projects of one user: the second one's entry, named like the first's, would replace it."""
    tables, hosts, project, units, logs = cron_project(tmp_path, monkeypatch)
    first = '#Ansible: fleetpki-renewal\n17 3 * * * cd /srv/first && ansible-playbook site.yml\n'
    (tables / 'root').write_text(first)
    rc, output = cron(hosts, units, project, logs / 'renewal.log')
    assert rc != 0
    assert (tables / 'root').read_text() == first
    flat = ' '.join(output.split())
    assert ("root's cron entry 'fleetpki-renewal' runs another project's job (17 3 * * * cd /srv/first && "
            "ansible-playbook site.yml): set renewal_timer_unit_name to a name of this project's own") in flat, flat[-3000:]
    rc, output = cron(hosts, units, project, logs / 'renewal.log', '-e', 'renewal_timer_unit_name=fleetpki-renewal-second')
    assert rc == 0, output[-3000:]
    table = (tables / 'root').read_text()
    assert table.startswith(first) and '#Ansible: fleetpki-renewal-second\n' in table


def test_a_log_of_another_owner_is_refused_with_the_command_that_fixes_it(tmp_path, monkeypatch):
    """After renewal_timer_user changed (or the project was chowned) the log is the previous user's: the message
    gives the chown (or rm) that fixes it, not the default it may already be."""
    tables, hosts, project, units, logs = cron_project(tmp_path, monkeypatch)
    log = logs / 'renewal.log'
    log.write_text('')
    os.chown(str(log), 12345, 12345)
    rc, output = cron(hosts, units, project, log)
    assert rc != 0
    flat = ' '.join(output.split())
    assert '%s (owner uid 12345)' % log in flat, flat[-3000:]
    assert 'Fix: sudo chown root: %s (or sudo rm %s)' % (log, log) in flat, flat[-3000:]
    assert 'root writes it every night' in flat
    assert list(tables.iterdir()) == []


@pytest.mark.parametrize('mode, gid, reason', [
    (0o1777, 0, 'writable by others, mode 1777'),
    (0o775, 12345, 'group-writable, gid 12345'),
], ids=['sticky world-writable', 'group-writable'])
def test_a_missing_log_directory_needs_a_parent_only_root_can_write(tmp_path, monkeypatch, mode, gid, reason):
    """Root creates the log's directory: in a parent others can write, a link planted there would be followed. Only
    the syslog directory (/var/log, Ubuntu's root:syslog 0775; here the parent, as if it were) may be group-writable."""
    tables = fake_crontab(tmp_path, monkeypatch)
    hosts, project, units = checked_project(tmp_path)
    parent = tmp_path / 'shared'
    parent.mkdir()
    os.chown(str(parent), 0, gid)
    os.chmod(str(parent), mode)
    log = parent / 'fleetpki' / 'renewal.log'
    rc, output = cron(hosts, units, project, log)
    assert rc != 0
    flat = ' '.join(output.split())
    assert '%s is missing and its parent %s (%s)' % (log.parent, parent, reason) in flat, flat[-3000:]
    assert not log.parent.exists() and list(tables.iterdir()) == []
    if gid:
        rc, output = cron(hosts, units, project, log, '-e', '__renewal_timer_syslog_dir=%s' % parent)
        assert rc == 0, output[-3000:]
        directory = log.parent.lstat()
        assert (directory.st_uid, directory.st_gid, directory.st_mode & 0o7777) == (0, 0, 0o755)
