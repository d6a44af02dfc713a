"""The renewal job installed from this checkout (its ansible.cfg and collections/ link), on the control node only.

The units are written to a temp dir; the checks the role makes before it installs anything are driven with
inventories and projects another user could write. No fleet host is contacted.
"""
import json
import os
import pwd
import shutil
import re
import shlex
import sys

import pytest

from test_preflight import FLEET, ROOT, inventory, playbook
# operator: the fixture of a throwaway user, used by name below.
from test_renewal_timer_nonroot import SYSTEM_PYTHON, as_operator, operator, run  # noqa: F401 pylint: disable=unused-import


def test_renewal_timer_renders_units_that_run_the_scheduled_playbook_from_the_checkout(tmp_path):
    hosts = inventory(tmp_path, FLEET)
    vault_pass = tmp_path / 'vault-pass'
    vault_pass.write_text('not-a-real-vault-password\n')
    os.chmod(str(vault_pass), 0o600)
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = playbook(hosts, 'renewal_timer.yml', '-e', 'renewal_timer_unit_dir=%s' % units,
                          '-e', 'renewal_timer_manage_service=false',
                          '-e', 'renewal_timer_vault_password_file=%s' % vault_pass)
    assert rc == 0, output[-3000:]
    service = (units / 'fleetpki-renewal.service').read_text()
    timer = (units / 'fleetpki-renewal.timer').read_text()
    exec_start = re.search(r'^ExecStart=(.*)$', service, re.M).group(1)
    assert exec_start.endswith(' fleetpki.mtls.scheduled_renewal --vault-password-file %s' % vault_pass)
    assert ' -i %s ' % hosts in exec_start and os.path.isfile(exec_start.split()[0])
    assert 'WorkingDirectory=%s\n' % ROOT in service and 'Type=oneshot' in service
    assert 'Environment="ANSIBLE_CONFIG=%s/ansible.cfg"' % ROOT in service
    assert 'OnCalendar=daily' in timer and 'Persistent=true' in timer
    rc, output = playbook(hosts, 'renewal_timer.yml', '-e', 'renewal_timer_unit_dir=%s' % units,
                          '-e', 'renewal_timer_manage_service=false',
                          '-e', 'renewal_timer_vault_password_file=%s' % vault_pass)
    assert rc == 0 and 'changed=0' in output[output.rindex('PLAY RECAP'):]


def test_the_timer_runs_often_enough_for_short_lived_certificates_and_a_window_they_do_not_fit_is_refused(tmp_path):
    """The cadence follows the shortest validity; a window the certificates do not fit is refused; and the PKI play
    warns while the installed timer runs too seldom for the certificates in use (a daily timer in a window, then the
    fleet moves to 24-hour certificates), until the timer is re-run for them."""
    hosts = inventory(tmp_path, FLEET)
    units = tmp_path / 'units'
    units.mkdir()
    # 365-day certificates: once a day, in the window.
    rc, output = renewal_timer(hosts, units, '-e', 'renewal_timer_window=02:00-04:00')
    assert rc == 0, output[-3000:]
    timer = (units / 'fleetpki-renewal.timer').read_text()
    assert 'OnCalendar=*-*-* 02:00:00\n' in timer and 'RandomizedDelaySec=3600\n' in timer, timer
    assert 'fleetpki-interval-minutes=1440:' in timer
    rc, output = playbook(hosts, 'pki.yml', '-e', 'pki_leaf_valid_hours=24', '-e', 'renewal_timer_unit_dir=%s' % units)
    flat = ' '.join(output.split())
    assert rc == 0, output[-3000:]
    assert ('WARNING: the renewal timer %s/fleetpki-renewal.timer runs every 1440 minutes, but certificates of 24 hours '
            'need a run every 160 minutes or less' % units) in flat, output[-3000:]
    assert 'ansible-playbook fleetpki.mtls.renewal_timer -K' in flat
    rc, output = renewal_timer(hosts, units, '-e', 'pki_leaf_valid_hours=24')
    assert rc == 0, output[-3000:]
    timer = (units / 'fleetpki-renewal.timer').read_text()
    assert 'OnCalendar=*-*-* 00/2:00:00\n' in timer and 'RandomizedDelaySec=1440\n' in timer, timer
    assert 'The renewal job runs every 120 minutes: certificates of 24 hours are due with 8.0 hours' in output
    rc, output = playbook(hosts, 'pki.yml', '-e', 'pki_leaf_valid_hours=24', '-e', 'renewal_timer_unit_dir=%s' % units)
    assert rc == 0 and 'WARNING: the renewal timer' not in output, output[-3000:]
    before = timer
    rc, output = renewal_timer(hosts, units, '-e', 'pki_leaf_valid_hours=24', '-e', 'renewal_timer_window=02:00-04:00')
    assert rc != 0 and 'the window 02:00-04:00 lets the renewal run once a day' in output, output[-3000:]
    assert (units / 'fleetpki-renewal.timer').read_text() == before
    # A compressed test fleet: 6-minute certificates renewed at half their life, every minute.
    rc, output = renewal_timer(hosts, units, '-e', 'pki_leaf_valid_hours=0.1', '-e', 'pki_renew_fraction=0.5')
    assert rc == 0, output[-3000:]
    timer = (units / 'fleetpki-renewal.timer').read_text()
    assert 'OnCalendar=*-*-* *:00/1:00\n' in timer and 'AccuracySec=6s\n' in timer, timer
    assert 'every minute: certificates of 0.1 hours are due with 3 minutes or more left' in output, output[-3000:]


def renewal_timer(hosts, units, *extra):
    return playbook(hosts, 'renewal_timer.yml', '-e', 'renewal_timer_unit_dir=%s' % units,
                    '-e', 'renewal_timer_manage_service=false', *extra)


def fake_project(tmp_path, name='proj'):
    """An operator's project whose ansible.cfg finds this checkout's collection, root-owned, mode 0755."""
    project = tmp_path / name
    (project / 'playbooks').mkdir(parents=True)
    (project / 'ansible.cfg').write_text('[defaults]\ninject_facts_as_vars = False\ncollections_path = %s\n'
                                         % (ROOT / 'collections'))
    return project


def checked_project(tmp_path):
    """(inventory, project, units dir) of a check: the inventory in a directory of its own, a root-owned project."""
    (tmp_path / 'inv').mkdir()
    hosts = inventory(tmp_path / 'inv', FLEET)
    units = tmp_path / 'units'
    units.mkdir()
    return hosts, fake_project(tmp_path), units


def with_venv(hosts, units, project, venv):
    return renewal_timer(hosts, units, '-e', 'renewal_timer_project_dir=%s' % project,
                         '-e', 'renewal_timer_ansible_playbook=%s' % (venv / 'bin' / 'ansible-playbook'))


@pytest.mark.parametrize('make_unsafe', [
    lambda tmp_path, project: (project / 'roles' / 'local' / 'tasks' / 'main.yml', 0o666, None),
    lambda tmp_path, project: (tmp_path / 'inv' / 'group_vars' / 'all.yml', 0o644, 12345),
    lambda tmp_path, project: (tmp_path / 'venv' / 'lib' / 'site-packages' / 'sitecustomize.py', 0o664, None),
])
def test_files_inside_the_project_the_inventory_dir_and_the_venv_are_checked(tmp_path, make_unsafe):
    """Not only the top directories: a role of the project, the inventory's group_vars or a module of the venv
    another user can write would run as the job's user. The message names the file."""
    (tmp_path / 'inv' / 'group_vars').mkdir(parents=True)
    hosts = inventory(tmp_path / 'inv', FLEET)
    project = fake_project(tmp_path)
    (project / 'roles' / 'local' / 'tasks').mkdir(parents=True)
    venv = fake_venv(tmp_path)
    path, mode, owner = make_unsafe(tmp_path, project)
    path.write_text('---\n')
    os.chmod(str(path), mode)
    if owner:
        os.chown(str(path), owner, -1)
    if mode & 0o020:
        os.chown(str(path), -1, 12345)
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = renewal_timer(hosts, units, '-e', 'renewal_timer_project_dir=%s' % project,
                               '-e', 'renewal_timer_ansible_playbook=%s' % (venv / 'bin' / 'ansible-playbook'))
    assert rc != 0
    flat = ' '.join(output.split())
    assert 'these paths can be written by another user' in flat and '%s (' % path in flat, flat[-3000:]
    assert list(units.iterdir()) == []


@pytest.mark.parametrize('make_unsafe, expected', [
    (lambda project, hosts: os.chmod(str(project), 0o777), '(writable by others, mode 777)'),
    (lambda project, hosts: os.chown(str(project / 'ansible.cfg'), 12345, -1), '(owner uid 12345)'),
    (lambda project, hosts: (os.chown(str(project), 0, 12345), os.chmod(str(project), 0o775)),
     '(group-writable, gid 12345)'),
    (lambda project, hosts: os.chown(str(hosts), 12345, -1), '(owner uid 12345)'),
    (lambda project, hosts: os.chmod(str(project / 'ansible.cfg'), 0o666), '(writable by others, mode 666)'),
])
def test_renewal_timer_refuses_paths_another_user_can_write(tmp_path, make_unsafe, expected):
    """The job runs as root daily: a checkout, venv or inventory another user can write would run their code."""
    hosts = inventory(tmp_path, FLEET)
    project = fake_project(tmp_path)
    units = tmp_path / 'units'
    units.mkdir()
    make_unsafe(project, hosts)
    rc, output = renewal_timer(hosts, units, '-e', 'renewal_timer_project_dir=%s' % project)
    assert rc != 0
    flat = ' '.join(output.split())
    assert 'these paths can be written by another user' in flat and expected in flat, flat[-3000:]
    assert list(units.iterdir()) == [], 'units were written before the check failed'


def test_renewal_timer_refuses_a_writable_parent_of_the_venv(tmp_path):
    hosts = inventory(tmp_path, FLEET)
    venv = tmp_path / 'shared' / 'venv'
    (venv / 'bin').mkdir(parents=True)
    for tool in ['ansible-playbook', 'ansible-doc']:
        (venv / 'bin' / tool).symlink_to(ROOT / '.venv' / 'bin' / tool)
    os.chmod(str(tmp_path / 'shared'), 0o777)
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = renewal_timer(hosts, units,
                               '-e', 'renewal_timer_ansible_playbook=%s' % (venv / 'bin' / 'ansible-playbook'))
    assert rc != 0
    assert '%s (writable by others, mode 777)' % (tmp_path / 'shared') in ' '.join(output.split()), output[-3000:]


def test_renewal_timer_quotes_every_path(tmp_path):
    """A checkout path with a space: ExecStart splits into exactly the intended arguments."""
    hosts = inventory(tmp_path, FLEET)
    project = fake_project(tmp_path, 'my fleet')
    (tmp_path / 'vault pass').write_text('not-a-real-vault-password\n')
    os.chmod(str(tmp_path / 'vault pass'), 0o600)
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = renewal_timer(hosts, units, '-e', '{"renewal_timer_project_dir": "%s"}' % project,
                               '-e', '{"renewal_timer_vault_password_file": "%s/vault pass"}' % tmp_path,
                               '-e', '{"renewal_timer_extra_args": "-e renew_days=45"}')
    assert rc == 0, output[-3000:]
    service = (units / 'fleetpki-renewal.service').read_text()
    exec_start = re.search(r'^ExecStart=(.*)$', service, re.M).group(1)
    assert shlex.split(exec_start)[1:] == ['-i', str(hosts), 'fleetpki.mtls.scheduled_renewal',
                                           '--vault-password-file', '%s/vault pass' % tmp_path, '-e', 'renew_days=45']
    assert 'Environment="ANSIBLE_CONFIG=%s/ansible.cfg"' % project in service


@pytest.mark.parametrize('path', ['/srv/fleet$(id)', '/srv/50%', 'relative/dir'])
def test_renewal_timer_refuses_paths_that_do_not_quote_the_same_for_cron_and_systemd(tmp_path, path):
    hosts = inventory(tmp_path, FLEET)
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = renewal_timer(hosts, units, '-e', '{"renewal_timer_vault_password_file": "%s"}' % path)
    assert rc != 0
    assert 'renewal_timer_vault_password_file must be absolute paths' in ' '.join(output.split()), output[-3000:]


def vault_script(directory):
    """A vault password script that leaves a marker when it runs: the role must never run it before its checks."""
    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / 'ran'
    script = directory / 'vault-pass.sh'
    script.write_text('#!/bin/sh\ntouch %s\necho not-a-real-vault-password\n' % marker)
    os.chmod(str(script), 0o755)
    return script, marker


@pytest.mark.parametrize('make_unsafe, expected', [
    (lambda script: os.chown(str(script), 65534, -1), '(owner uid 65534)'),
    (lambda script: os.chmod(str(script), 0o757), '(writable by others, mode 757)'),
    (lambda script: (os.chown(str(script), 0, 12345), os.chmod(str(script), 0o775)), '(group-writable, gid 12345)'),
])
def test_a_vault_password_script_the_project_names_is_checked_before_it_can_run(tmp_path, make_unsafe, expected):
    """ansible.cfg's vault_password_file is executed by the job's command (as root): another user's script is
    refused before anything runs as the job's user, and the role itself never ran it."""
    (tmp_path / 'inv').mkdir()
    hosts = inventory(tmp_path / 'inv', FLEET)
    project = fake_project(tmp_path)
    script, marker = vault_script(tmp_path / 'tools')
    with (project / 'ansible.cfg').open('a') as cfg:
        cfg.write('vault_password_file = %s\n' % script)
    make_unsafe(script)
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = renewal_timer(hosts, units, '-e', 'renewal_timer_project_dir=%s' % project)
    assert rc != 0
    flat = ' '.join(output.split())
    assert 'these paths can be written by another user' in flat and '%s %s' % (script, expected) in flat, flat[-3000:]
    assert not marker.exists(), 'the role ran the vault password script before refusing it'
    assert 'Nothing was installed and nothing was run as root.' in flat
    assert list(units.iterdir()) == [], 'units were written before the check failed'


def test_a_writable_collections_path_entry_that_could_shadow_the_collection_is_refused(tmp_path):
    (tmp_path / 'inv').mkdir()
    hosts = inventory(tmp_path / 'inv', FLEET)
    project = fake_project(tmp_path)
    shadow = tmp_path / 'shared-collections'
    shadow.mkdir()
    os.chmod(str(shadow), 0o777)
    (project / 'ansible.cfg').write_text('[defaults]\ninject_facts_as_vars = False\ncollections_path = %s:%s\n'
                                         % (shadow, ROOT / 'collections'))
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = renewal_timer(hosts, units, '-e', 'renewal_timer_project_dir=%s' % project)
    assert rc != 0
    flat = ' '.join(output.split())
    assert 'these paths can be written by another user' in flat, flat[-3000:]
    assert '%s (writable by others, mode 777)' % shadow in flat, flat[-3000:]
    assert list(units.iterdir()) == []


def fake_venv(tmp_path):
    """A venv of links to this checkout's tools, with a pyvenv.cfg and a site-packages of its own."""
    venv = tmp_path / 'venv'
    (venv / 'bin').mkdir(parents=True)
    for tool in ['ansible-playbook', 'ansible-doc', 'ansible-config']:
        (venv / 'bin' / tool).symlink_to(ROOT / '.venv' / 'bin' / tool)
    (venv / 'pyvenv.cfg').write_text('home = /usr/bin\nversion = %d.%d.0\n' % sys.version_info[:2])
    (venv / 'lib' / 'site-packages').mkdir(parents=True)
    (venv / 'lib' / 'site-packages' / 'sitecustomize.py').write_text('')
    return venv


def test_a_writable_pki_or_backups_of_the_project_is_refused(tmp_path):
    """pki/ holds the CA the job signs with and pushes: another user who can write it (or where backups/ leads)
    could swap the CA. Searched like the rest of the project, with where a link leads."""
    hosts, project, units = checked_project(tmp_path)
    (project / 'pki').mkdir()
    os.chmod(str(project / 'pki'), 0o777)
    elsewhere = tmp_path / 'elsewhere-backups'
    elsewhere.mkdir()
    os.chmod(str(elsewhere), 0o777)
    (project / 'backups').symlink_to(elsewhere)
    rc, output = renewal_timer(hosts, units, '-e', 'renewal_timer_project_dir=%s' % project)
    flat = ' '.join(output.split())
    assert rc != 0
    assert '%s (writable by others, mode 777)' % (project / 'pki') in flat, flat[-3000:]
    assert '%s (writable by others, mode 777)' % elsewhere in flat, flat[-3000:]
    assert list(units.iterdir()) == []


def test_pki_files_the_job_user_does_not_own_are_refused_with_the_chown(tmp_path):
    """Upgrading from a root job: its renewed keys, certs and journal are root's, which the job's user could not
    read or append every night: refused with the chown that hands them over."""
    hosts, project, units = checked_project(tmp_path)
    (project / 'pki' / 'ca').mkdir(parents=True)
    (project / 'pki' / 'ca' / 'ca-key.pem').write_text('')
    os.chmod(str(project / 'pki' / 'ca' / 'ca-key.pem'), 0o600)
    (project / 'backups').mkdir()
    rc, output = renewal_timer(hosts, units, '-e', 'renewal_timer_project_dir=%s' % project,
                               '-e', 'renewal_timer_user=nobody')
    flat = ' '.join(output.split())
    assert rc != 0
    assert 'sudo chown -R nobody: %s/pki %s/backups' % (project, project) in flat, flat[-3000:]
    assert str(project / 'pki' / 'ca' / 'ca-key.pem') in flat
    assert list(units.iterdir()) == []


@pytest.mark.parametrize('extra_args, bad', [('-e renew_days=50%', 'renew_days=50%'),
                                             ('-e pki=$HOME/pki', 'pki=$HOME/pki'),
                                             ("-e name='a'", "name='a'")])
def test_extra_args_that_systemd_or_cron_would_change_are_refused(tmp_path, extra_args, bad):
    hosts = inventory(tmp_path, FLEET)
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = renewal_timer(hosts, units, '-e', json.dumps({'renewal_timer_extra_args': extra_args}))
    assert rc != 0
    flat = ' '.join(output.split())
    assert 'renewal_timer_extra_args: %s may hold only' % bad in flat, flat[-3000:]
    assert list(units.iterdir()) == []


def test_a_vault_script_named_in_extra_args_is_checked_like_the_paths(tmp_path):
    (tmp_path / 'inv').mkdir()
    hosts = inventory(tmp_path / 'inv', FLEET)
    project = fake_project(tmp_path)
    script, marker = vault_script(tmp_path / 'tools')
    os.chown(str(script), 65534, -1)
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = renewal_timer(hosts, units, '-e', 'renewal_timer_project_dir=%s' % project,
                               '-e', json.dumps({'renewal_timer_extra_args': '--vault-id prod@%s' % script}))
    assert rc != 0
    assert '%s (owner uid 65534)' % script in ' '.join(output.split()), output[-3000:]
    assert not marker.exists(), 'the role ran the vault password script before refusing it'
    assert list(units.iterdir()) == []


def fake_crontab(tmp_path, monkeypatch):
    """A crontab command first on PATH keeping each user's table in a file: the real crontabs are never touched.
    Returns the directory of the tables (one file per user)."""
    tables = tmp_path / 'crontabs'
    tables.mkdir()
    bindir = tmp_path / 'fake-bin'
    bindir.mkdir()
    (bindir / 'crontab').write_text(
        '#!/bin/sh\nuser=$(id -un)\nif [ "$1" = -u ]; then user=$2; shift 2; fi\n'
        'if [ "$1" = -l ]; then cat "%s/$user" 2>/dev/null || { echo "no crontab for $user" >&2; exit 1; }; exit 0; fi\n'
        'cat "$1" > "%s/$user"\n' % (tables, tables))
    os.chmod(str(bindir / 'crontab'), 0o755)
    monkeypatch.setenv('PATH', '%s:%s' % (bindir, os.environ['PATH']))
    return tables


def test_the_cron_entry_and_its_log_in_a_directory_of_its_own(tmp_path, monkeypatch):
    """Ubuntu's /var/log is root:syslog 0775: the log goes to a directory the role creates (root:root 0755), and the
    log's grandparents are not refused (the job only appends to the log; nothing there is run)."""
    tables = fake_crontab(tmp_path, monkeypatch)
    var_log = tmp_path / 'var-log'
    var_log.mkdir()
    os.chown(str(var_log), 0, 12345)
    os.chmod(str(var_log), 0o775)
    log = var_log / 'fleetpki' / 'fleetpki-renewal.log'
    (tmp_path / 'inv').mkdir()
    hosts = inventory(tmp_path / 'inv', FLEET)
    project = fake_project(tmp_path)
    units = tmp_path / 'units'
    units.mkdir()
    # var-log stands for /var/log, the one parent cron.yml lets its (syslog) group write.
    args = ['-e', 'renewal_timer_method=cron', '-e', 'renewal_timer_cron_log=%s' % log,
            '-e', 'renewal_timer_project_dir=%s' % project, '-e', '__renewal_timer_syslog_dir=%s' % var_log]
    rc, output = renewal_timer(hosts, units, *args)
    assert rc == 0, output[-3000:]
    table = (tables / 'root').read_text()
    line, = [line for line in table.splitlines() if line.startswith('17 3 * * * ')]
    assert line.startswith('17 3 * * * cd %s && ANSIBLE_CONFIG=%s/ansible.cfg ' % (project, project)), line
    assert line.endswith(' fleetpki.mtls.scheduled_renewal >> %s 2>&1' % log), line
    directory = log.parent.stat()
    assert (directory.st_uid, directory.st_gid, directory.st_mode & 0o7777) == (0, 0, 0o755)
    assert (log.stat().st_uid, log.stat().st_mode & 0o7777) == (0, 0o640)
    rc, output = renewal_timer(hosts, units, *args)
    assert rc == 0 and 'changed=0' in output[output.rindex('PLAY RECAP'):], output[-3000:]


def test_a_cron_log_directory_another_user_owns_is_refused(tmp_path, monkeypatch):
    tables = fake_crontab(tmp_path, monkeypatch)
    (tmp_path / 'logs').mkdir()
    os.chown(str(tmp_path / 'logs'), 12345, -1)
    (tmp_path / 'inv').mkdir()
    hosts = inventory(tmp_path / 'inv', FLEET)
    project = fake_project(tmp_path)
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = renewal_timer(hosts, units, '-e', 'renewal_timer_method=cron', '-e', 'renewal_timer_project_dir=%s' % project,
                               '-e', 'renewal_timer_cron_log=%s' % (tmp_path / 'logs' / 'renewal.log'))
    assert rc != 0
    flat = ' '.join(output.split())
    assert '%s (owner uid 12345)' % (tmp_path / 'logs') in flat, flat[-3000:]
    assert list(tables.iterdir()) == [] and not (tmp_path / 'logs' / 'renewal.log').exists()


@pytest.mark.parametrize('extra_args, bad', [('-e @../shared/vars.yml', '@../shared/vars.yml'),
                                             ('--vault-id prod@tools/../../pass.sh', 'prod@tools/../../pass.sh'),
                                             ('--vault-password-file ../pass', '../pass'),
                                             ('-e@../shared/vars.yml', '-e@../shared/vars.yml'),
                                             ('--extra-vars=@../shared/vars.yml', '--extra-vars=@../shared/vars.yml'),
                                             ('-i../inv', '-i../inv'),
                                             ('-e pki_dir=/srv/x/../pki', 'pki_dir=/srv/x/../pki')])
def test_relative_paths_in_extra_args_that_leave_the_project_are_refused(tmp_path, extra_args, bad):
    (tmp_path / 'inv').mkdir()
    hosts = inventory(tmp_path / 'inv', FLEET)
    project = fake_project(tmp_path)
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = renewal_timer(hosts, units, '-e', 'renewal_timer_project_dir=%s' % project,
                               '-e', json.dumps({'renewal_timer_extra_args': extra_args}))
    assert rc != 0
    flat = ' '.join(output.split())
    assert 'renewal_timer_extra_args: %s leaves the project' % bad in flat, flat[-3000:]
    assert list(units.iterdir()) == []


def test_a_relative_vault_script_in_extra_args_is_checked_where_the_job_finds_it(tmp_path):
    """--vault-password-file tools/pass.sh is read from the job's WorkingDirectory (the project): a link there to
    another user's script is followed and refused."""
    (tmp_path / 'inv').mkdir()
    hosts = inventory(tmp_path / 'inv', FLEET)
    project = fake_project(tmp_path)
    script, marker = vault_script(tmp_path / 'elsewhere')
    os.chown(str(script), 65534, -1)
    (project / 'tools').mkdir()
    (project / 'tools' / 'pass.sh').symlink_to(script)
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = renewal_timer(hosts, units, '-e', 'renewal_timer_project_dir=%s' % project,
                               '-e', json.dumps({'renewal_timer_extra_args': '--vault-password-file tools/pass.sh'}))
    assert rc != 0
    assert '%s (owner uid 65534)' % script in ' '.join(output.split()), output[-3000:]
    assert not marker.exists(), 'the role ran the vault password script before refusing it'
    assert list(units.iterdir()) == []


def test_a_link_in_the_project_to_a_directory_elsewhere_has_that_directory_searched(tmp_path):
    hosts, project, units = checked_project(tmp_path)
    shared = tmp_path / 'shared-roles' / 'common' / 'tasks'
    shared.mkdir(parents=True)
    (shared / 'main.yml').write_text('---\n')
    os.chmod(str(shared / 'main.yml'), 0o666)
    (project / 'roles').mkdir()
    (project / 'roles' / 'common').symlink_to(tmp_path / 'shared-roles' / 'common')
    rc, output = renewal_timer(hosts, units, '-e', 'renewal_timer_project_dir=%s' % project)
    assert rc != 0
    assert '%s (writable by others, mode 666)' % (shared / 'main.yml') in ' '.join(output.split()), output[-3000:]
    assert list(units.iterdir()) == []


@pytest.mark.parametrize('section, setting', [('ssh_connection', 'ssh_executable'), ('sudo_become_plugin', 'executable')])
def test_a_plugin_setting_of_the_project_naming_another_users_executable_is_refused(tmp_path, section, setting):
    """ansible.cfg's plugin settings name programs the job runs (ssh_executable, become_exe): checked like the
    paths of [defaults] (ansible-config dump -t all)."""
    (tmp_path / 'inv').mkdir()
    hosts = inventory(tmp_path / 'inv', FLEET)
    project = fake_project(tmp_path)
    tool = tmp_path / 'tools' / 'wrapper'
    tool.parent.mkdir()
    tool.write_text('#!/bin/sh\nexit 1\n')
    os.chmod(str(tool), 0o755)
    os.chown(str(tool), 65534, -1)
    with (project / 'ansible.cfg').open('a') as cfg:
        cfg.write('[%s]\n%s = %s\n' % (section, setting, tool))
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = renewal_timer(hosts, units, '-e', 'renewal_timer_project_dir=%s' % project)
    assert rc != 0
    flat = ' '.join(output.split())
    assert '%s (owner uid 65534)' % tool in flat, flat[-3000:]
    # ansible-config dump -t all ran as the job's user before this check: the message must not say otherwise.
    assert 'nothing was run as' not in flat
    assert list(units.iterdir()) == []


@pytest.mark.parametrize('unsafe', ['bin/python3', 'lib/python3.11/os.py'])
def test_the_base_python_of_the_venv_is_checked(tmp_path, unsafe):
    """A venv's python runs its base interpreter and standard library (pyvenv.cfg's home): another user's would
    run their code as the job's user. Read from pyvenv.cfg, never run."""
    (tmp_path / 'inv').mkdir()
    hosts = inventory(tmp_path / 'inv', FLEET)
    project = fake_project(tmp_path)
    venv = fake_venv(tmp_path)
    base = tmp_path / 'base'
    for name in ['bin/python3', 'lib/python3.11/os.py']:
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text('')
    (venv / 'pyvenv.cfg').write_text('home = %s/bin\nversion = 3.11.2\n' % base)
    os.chown(str(base / unsafe), 65534, -1)
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = renewal_timer(hosts, units, '-e', 'renewal_timer_project_dir=%s' % project,
                               '-e', 'renewal_timer_ansible_playbook=%s' % (venv / 'bin' / 'ansible-playbook'))
    assert rc != 0
    assert '%s (owner uid 65534)' % (base / unsafe) in ' '.join(output.split()), output[-3000:]
    assert list(units.iterdir()) == []


@pytest.mark.parametrize('extra_args', ['-e@{vars}', '--extra-vars=@{vars}', '-i{dir}/inv', '-M{dir}'])
def test_attached_option_values_in_extra_args_are_checked_like_the_paths(tmp_path, extra_args):
    """-e@file, --extra-vars=@file, -i/abs and -M/abs name files the job reads or runs, like their spaced forms."""
    hosts, project, units = checked_project(tmp_path)
    shared = tmp_path / 'shared'
    shared.mkdir()
    (shared / 'vars.yml').write_text('---\n')
    (shared / 'inv').write_text('')
    os.chown(str(shared), 65534, -1)
    rc, output = renewal_timer(hosts, units, '-e', 'renewal_timer_project_dir=%s' % project, '-e', json.dumps(
        {'renewal_timer_extra_args': extra_args.format(vars=shared / 'vars.yml', dir=shared)}))
    assert rc != 0
    assert '%s (owner uid 65534)' % shared in ' '.join(output.split()), output[-3000:]
    assert list(units.iterdir()) == []


def test_an_unknown_job_user_is_named_with_the_fix(tmp_path):
    hosts = inventory(tmp_path, FLEET)
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = renewal_timer(hosts, units, '-e', 'renewal_timer_user=no-such-user-fleetpki')
    assert rc != 0
    flat = ' '.join(output.split())
    assert 'renewal_timer_user no-such-user-fleetpki is not a user of this host' in flat, flat[-3000:]
    assert list(units.iterdir()) == []


def test_a_link_beyond_the_first_level_that_leads_out_is_refused(tmp_path):
    """project/roles/common -> shared/common, whose tasks -> other/tasks: links are followed one level (shared/common
    is searched); the second one, leading out of everything searched, is refused, not left unchecked."""
    hosts, project, units = checked_project(tmp_path)
    (tmp_path / 'shared' / 'common').mkdir(parents=True)
    other = tmp_path / 'other' / 'tasks'
    other.mkdir(parents=True)
    (other / 'main.yml').write_text('---\n')
    os.chmod(str(other / 'main.yml'), 0o666)
    (tmp_path / 'shared' / 'common' / 'tasks').symlink_to(other)
    (project / 'roles').mkdir()
    (project / 'roles' / 'common').symlink_to(tmp_path / 'shared' / 'common')
    rc, output = renewal_timer(hosts, units, '-e', 'renewal_timer_project_dir=%s' % project)
    assert rc != 0
    link = tmp_path / 'shared' / 'common' / 'tasks'
    assert '%s (a link in a linked directory, leading to %s' % (link, other) in ' '.join(output.split()), output[-3000:]
    assert list(units.iterdir()) == []


def test_a_directory_a_pth_file_of_the_venv_adds_is_checked(tmp_path):
    """site.py adds each directory a venv's .pth file names to sys.path: its modules run as the job's user."""
    hosts, project, units = checked_project(tmp_path)
    venv = fake_venv(tmp_path)
    extra = tmp_path / 'extra-libs'
    extra.mkdir()
    (extra / 'evil.py').write_text('')
    os.chown(str(extra / 'evil.py'), 65534, -1)
    (venv / 'lib' / 'site-packages' / 'extra.pth').write_text('# a comment\nimport os\n%s\n' % extra)
    rc, output = with_venv(hosts, units, project, venv)
    assert rc != 0
    assert '%s (owner uid 65534)' % (extra / 'evil.py') in ' '.join(output.split()), output[-3000:]
    assert list(units.iterdir()) == []


def test_a_pth_line_naming_a_missing_directory_is_refused(tmp_path):
    hosts, project, units = checked_project(tmp_path)
    venv = fake_venv(tmp_path)
    (venv / 'lib' / 'site-packages' / 'extra.pth').write_text('%s\n' % (tmp_path / 'missing'))
    rc, output = with_venv(hosts, units, project, venv)
    assert rc != 0
    flat = ' '.join(output.split())
    assert '%s: %s' % (venv / 'lib' / 'site-packages' / 'extra.pth', tmp_path / 'missing') in flat, flat[-3000:]
    assert list(units.iterdir()) == []


def test_the_base_site_packages_are_checked_when_the_venv_includes_them(tmp_path):
    hosts, project, units = checked_project(tmp_path)
    venv = fake_venv(tmp_path)
    base = tmp_path / 'base'
    for name in ['bin/python3', 'lib/python3.11/os.py', 'lib/python3.11/site-packages/evil.py']:
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_text('')
    os.chown(str(base / 'lib/python3.11/site-packages/evil.py'), 65534, -1)
    (venv / 'pyvenv.cfg').write_text('home = %s/bin\ninclude-system-site-packages = true\nversion = 3.11.2\n' % base)
    rc, output = with_venv(hosts, units, project, venv)
    assert rc != 0
    assert '%s (owner uid 65534)' % (base / 'lib/python3.11/site-packages/evil.py') in ' '.join(output.split()), \
        output[-3000:]


def test_a_venv_whose_base_standard_library_cannot_be_found_is_refused(tmp_path):
    hosts, project, units = checked_project(tmp_path)
    venv = fake_venv(tmp_path)
    (venv / 'pyvenv.cfg').write_text('home = %s/bin\nversion = 3.11.2\n' % (tmp_path / 'gone'))
    rc, output = with_venv(hosts, units, project, venv)
    assert rc != 0
    flat = ' '.join(output.split())
    assert "the standard library of the venv's base Python (%s/lib/python3.11) is not found" % (tmp_path / 'gone') in flat, \
        flat[-3000:]
    assert list(units.iterdir()) == []


def test_the_configuration_dumps_are_not_logged(tmp_path):
    """ansible-config dump prints every changed setting (tokens among them): not in the run's output at -v."""
    hosts, project, units = checked_project(tmp_path)
    with (project / 'ansible.cfg').open('a') as cfg:
        cfg.write('[galaxy]\ntoken_path = /nonexistent/marker-token-path\n'
                  '[ssh_connection]\nssh_extra_args = -o MarkerSecretOption=yes\n')
    rc, output = renewal_timer(hosts, units, '-e', 'renewal_timer_project_dir=%s' % project, '-v')
    assert rc == 0, output[-3000:]
    assert 'MarkerSecretOption' not in output


def umask_002_project(operator, group_has_others):
    """An operator's project made with Ubuntu's umask 002: group-writable by his own (private) group, or by a
    group with another member."""
    name, home, bindir = operator
    project = home / ('shared-group' if group_has_others else 'own-group') / 'prod'
    rc, output = as_operator(operator, ['sh', '-c', 'umask 002 && mkdir -p %s/inventory' % project], home)
    assert rc == 0, output
    (project / 'ansible.cfg').write_text('[defaults]\ninventory = inventory/hosts.yml\ncollections_path = %s\n'
                                         'inject_facts_as_vars = False\n' % (ROOT / 'collections'))
    (project / 'inventory' / 'hosts.yml').write_text('fleet:\n  children:\n    redis_servers:\n      hosts:\n'
                                                     '        nr-redis1:\n')
    for path in [project / 'ansible.cfg', project / 'inventory' / 'hosts.yml']:
        os.chown(str(path), pwd.getpwnam(name).pw_uid, pwd.getpwnam(name).pw_gid)
        os.chmod(str(path), 0o664)
    # The operator is shared by the module's tests: his group has another member only when this one asks for it.
    rc, output = run(['gpasswd', '-a' if group_has_others else '-d', 'nobody', name])
    assert rc == 0 or not group_has_others, output
    return project


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which('useradd') or not shutil.which('gpasswd'), reason='needs root')
@pytest.mark.parametrize('group_has_others', [False, True])
def test_a_project_writable_by_its_owners_private_group_is_his_own(operator, group_has_others):
    """Ubuntu's umask 002 with a group per user: group-write by his own group (no other member) is his own write;
    a group with another member is refused, and the fix is chmod (never a chown to root of his own project)."""
    project = umask_002_project(operator, group_has_others)
    units = operator[1].parent / ('units-%s' % group_has_others)
    units.mkdir()
    rc, output = as_operator(operator, ['ansible-playbook', 'fleetpki.mtls.renewal_timer',
                                        '-e', 'renewal_timer_unit_dir=%s' % units,
                                        '-e', 'renewal_timer_manage_service=false'], project)
    flat = ' '.join(output.split())
    if group_has_others:
        # chmod -R on the topmost: the project's parent, made with the same umask.
        assert rc != 0 and 'chmod -R g-w %s.' % project.parent in flat, flat[-3000:]
        assert 'chown root' not in flat
    else:
        assert rc == 0, flat[-3000:]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which('useradd') or not shutil.which('gpasswd'), reason='needs root')
def test_a_check_run_by_root_leaves_nothing_in_the_job_users_home(operator, tmp_path):
    """--check changes nothing: what runs as the job's user (the dumps, the syntax check, ansible-doc) keeps its
    temp files in /tmp, never making a ~/.ansible/tmp in his home (every ansible command makes an empty ~/.ansible,
    as his, which his nightly job makes anyway), and nothing of root's is left there."""
    name, home, bindir = operator
    project = umask_002_project(operator, False)
    shutil.rmtree(str(home / '.ansible'), ignore_errors=True)  # his own runs in the module's other tests made one
    units = tmp_path / 'units'
    units.mkdir()
    # The tasks that run as him need a Python he can read (this checkout's is under /root).
    rc, output = renewal_timer(project / 'inventory' / 'hosts.yml', units, '--check',
                               '-e', 'renewal_timer_project_dir=%s' % project,
                               '-e', 'ansible_python_interpreter=%s' % SYSTEM_PYTHON,
                               '-e', 'renewal_timer_ansible_playbook=%s' % (bindir / 'ansible-playbook'))
    assert rc == 0, ' '.join(output.split())[-3000:]
    left = [str(path) for path in home.rglob('*') if path.lstat().st_uid == 0 or path.name == 'tmp']
    assert not left, left


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which('groupmod'), reason='needs root')
def test_a_primary_group_not_named_after_its_user_is_not_his_own(operator):
    """getent may not enumerate every user (sssd, LDAP): a group is his alone only when it is also named after him,
    as the private groups of Debian and Ubuntu are."""
    name = operator[0]
    project = umask_002_project(operator, False)
    rc, output = run(['groupmod', '-n', name + 'g', name])
    assert rc == 0, output
    units = operator[1].parent / 'units-renamed'
    units.mkdir()
    try:
        rc, output = as_operator(operator, ['ansible-playbook', 'fleetpki.mtls.renewal_timer',
                                            '-e', 'renewal_timer_unit_dir=%s' % units,
                                            '-e', 'renewal_timer_manage_service=false'], project)
    finally:
        run(['groupmod', '-n', name, name + 'g'])  # userdel --remove then removes it with him
    flat = ' '.join(output.split())
    assert rc != 0 and 'chmod -R g-w %s.' % project.parent in flat, flat[-3000:]
