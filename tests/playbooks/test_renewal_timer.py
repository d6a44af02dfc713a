"""The renewal job installed from this checkout (its ansible.cfg and collections/ link), on the control node only.

The units are written to a temp dir; the checks the role makes before it installs anything are driven with
inventories and projects another user could write. No fleet host is contacted.
"""
import os
import re
import shlex

import pytest

from test_preflight import FLEET, ROOT, inventory, playbook


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
