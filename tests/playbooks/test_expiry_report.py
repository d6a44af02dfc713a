"""Expiry metrics and the unattended renewal job, on the control node only (no fleet host is contacted).

playbooks/pki.yml issues a fake fleet's certificates in a temp dir; expiry_report.yml turns them into a Prometheus
textfile that promtool must accept; the renewal_timer role renders its units into a temp dir.
"""
import os
import pathlib
import re
import shlex
import subprocess

import pytest

from test_preflight import FLEET, ROOT, inventory, playbook

# The issue names the metric fleetpki_cert_days_remaining; promtool's linter prefers base units (exit 3, a lint
# finding, not a format error). This is the only finding accepted.
ACCEPTED_LINT = re.compile(r'^fleetpki_cert_days_remaining use base unit "seconds" instead of "days"$')


def promtool_check_metrics(text):
    """Fails unless promtool parses the file; a missing promtool fails too (CI installs Debian's prometheus)."""
    proc = subprocess.run(['promtool', 'check', 'metrics'], input=text, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    findings = [line for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode in (0, 3), proc.stdout
    assert all(ACCEPTED_LINT.match(line) for line in findings), findings


@pytest.fixture(scope='module')
def fleet_pki(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('expiry')
    hosts = inventory(tmp_path, FLEET)
    rc, output = playbook(hosts, 'pki.yml')
    assert rc == 0, output[-3000:]
    return tmp_path, hosts


def test_expiry_report_writes_metrics_promtool_accepts(fleet_pki):
    tmp_path, hosts = fleet_pki
    prom = tmp_path / 'out' / 'fleetpki.prom'
    rc, output = playbook(hosts, 'expiry_report.yml', '-e', 'expiry_report_prom_path=%s' % prom,
                          '-e', 'expiry_report_fail_on_warning=true')
    assert rc == 0, output[-3000:]
    text = prom.read_text()
    promtool_check_metrics(text)
    expiry = [line for line in text.splitlines() if line.startswith('fleetpki_cert_expiry_seconds{')]
    days = [line for line in text.splitlines() if line.startswith('fleetpki_cert_days_remaining{')]
    assert len(expiry) == len(days) == 5  # redis, api, 2 workers, pxe client
    assert any('host="pf-worker2"' in line and 'service="worker"' in line and 'serial="' in line for line in days)
    assert all(int(line.rsplit(' ', 1)[1]) in (364, 365) for line in days)
    rc, output = playbook(hosts, 'expiry_report.yml', '-e', 'expiry_report_prom_path=%s' % prom)
    assert rc == 0 and 'changed=0' in output[output.rindex('PLAY RECAP'):]


def test_expiry_report_fails_on_warning_when_asked(fleet_pki):
    tmp_path, hosts = fleet_pki
    rc, output = playbook(hosts, 'expiry_report.yml', '-e', 'expiry_report_warn_days=400',
                          '-e', 'expiry_report_fail_on_warning=true', '-e', 'expiry_report_prom_path=%s/x.prom' % tmp_path)
    assert rc != 0
    assert '5 certificate(s) not ok' in ' '.join(output.split())


def test_alert_rules_example_passes_promtool():
    proc = subprocess.run(['promtool', 'check', 'rules', str(ROOT / 'docs' / 'examples' / 'prometheus-alerts.yml')],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout


def test_renewal_timer_renders_units_that_run_the_scheduled_playbook(fleet_pki):
    tmp_path, hosts = fleet_pki
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = playbook(hosts, 'renewal_timer.yml', '-e', 'renewal_timer_unit_dir=%s' % units,
                          '-e', 'renewal_timer_manage_service=false',
                          '-e', 'renewal_timer_vault_password_file=/root/.fleetpki-vault-pass')
    assert rc == 0, output[-3000:]
    service = (units / 'fleetpki-renewal.service').read_text()
    timer = (units / 'fleetpki-renewal.timer').read_text()
    exec_start = re.search(r'^ExecStart=(.*)$', service, re.M).group(1)
    assert exec_start.endswith('%s/playbooks/scheduled_renewal.yml --vault-password-file /root/.fleetpki-vault-pass'
                               % ROOT)
    assert ' -i %s ' % hosts in exec_start and os.path.isfile(exec_start.split()[0])
    assert 'WorkingDirectory=%s' % ROOT in service and 'Type=oneshot' in service
    assert 'OnCalendar=daily' in timer and 'Persistent=true' in timer
    rc, output = playbook(hosts, 'renewal_timer.yml', '-e', 'renewal_timer_unit_dir=%s' % units,
                          '-e', 'renewal_timer_manage_service=false',
                          '-e', 'renewal_timer_vault_password_file=/root/.fleetpki-vault-pass')
    assert rc == 0 and 'changed=0' in output[output.rindex('PLAY RECAP'):]


def test_scheduled_renewal_playbook_parses():
    rc, output = playbook(pathlib.Path(ROOT / 'inventories' / 'lab'), 'scheduled_renewal.yml', '--syntax-check')
    assert rc == 0, output[-3000:]


def renewal_timer(hosts, units, *extra):
    return playbook(hosts, 'renewal_timer.yml', '-e', 'renewal_timer_unit_dir=%s' % units,
                    '-e', 'renewal_timer_manage_service=false', *extra)


def fake_project(tmp_path, name='proj'):
    """A directory the role accepts as a checkout (playbooks/scheduled_renewal.yml), root-owned, mode 0755."""
    project = tmp_path / name
    (project / 'playbooks').mkdir(parents=True)
    (project / 'playbooks' / 'scheduled_renewal.yml').write_text('---\n')
    (project / 'ansible.cfg').write_text('[defaults]\ninject_facts_as_vars = False\n')
    return project


@pytest.mark.parametrize('make_unsafe, expected', [
    (lambda project, hosts: os.chmod(str(project), 0o777), '(writable by others, mode 777)'),
    (lambda project, hosts: os.chown(str(project / 'playbooks'), 12345, -1), '(owner uid 12345)'),
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
    (venv / 'bin' / 'ansible-playbook').symlink_to(ROOT / '.venv' / 'bin' / 'ansible-playbook')
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
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = renewal_timer(hosts, units, '-e', '{"renewal_timer_project_dir": "%s"}' % project,
                               '-e', '{"renewal_timer_vault_password_file": "%s/vault pass"}' % tmp_path)
    assert rc == 0, output[-3000:]
    service = (units / 'fleetpki-renewal.service').read_text()
    exec_start = re.search(r'^ExecStart=(.*)$', service, re.M).group(1)
    assert shlex.split(exec_start)[1:] == ['-i', str(hosts), '%s/playbooks/scheduled_renewal.yml' % project,
                                           '--vault-password-file', '%s/vault pass' % tmp_path]
    assert 'Environment="ANSIBLE_CONFIG=%s/ansible.cfg"' % project in service


@pytest.mark.parametrize('path', ['/srv/fleet$(id)', '/srv/50%', 'relative/dir'])
def test_renewal_timer_refuses_paths_that_do_not_quote_the_same_for_cron_and_systemd(tmp_path, path):
    hosts = inventory(tmp_path, FLEET)
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = renewal_timer(hosts, units, '-e', '{"renewal_timer_vault_password_file": "%s"}' % path)
    assert rc != 0
    assert 'renewal_timer_vault_password_file must be absolute paths' in ' '.join(output.split()), output[-3000:]
