"""Expiry metrics and the unattended renewal job, on the control node only (no fleet host is contacted).

playbooks/pki.yml issues a fake fleet's certificates in a temp dir; expiry_report.yml turns them into a Prometheus
textfile that promtool must accept; the renewal job: test_renewal_timer.py.
"""
import pathlib
import re
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
    # The fake fleet's hosts do not exist: the control node's copies only (what is served: the next tests).
    rc, output = playbook(hosts, 'expiry_report.yml', '-e', 'expiry_report_prom_path=%s' % prom,
                          '-e', 'expiry_report_fail_on_warning=true', '-e', 'expiry_report_served=false')
    assert rc == 0, output[-3000:]
    text = prom.read_text()
    assert 'fleetpki_served' not in text
    promtool_check_metrics(text)
    expiry = [line for line in text.splitlines() if line.startswith('fleetpki_cert_expiry_seconds{')]
    days = [line for line in text.splitlines() if line.startswith('fleetpki_cert_days_remaining{')]
    assert len(expiry) == len(days) == 5  # redis, api, 2 workers, pxe client
    assert any('host="pf-worker2"' in line and 'service="worker"' in line and 'serial="' in line for line in days)
    assert all(int(line.rsplit(' ', 1)[1]) in (364, 365) for line in days)
    # The renewal point pki_leaf uses (default policy: between a half and a third of the 365 days + 5 min left).
    ends = dict((line.rsplit(' ', 1)[0].split('{', 1)[1], int(line.rsplit(' ', 1)[1])) for line in expiry)
    points = dict((line.rsplit(' ', 1)[0].split('{', 1)[1], int(line.rsplit(' ', 1)[1])) for line in text.splitlines()
                  if line.startswith('fleetpki_cert_renew_at_seconds{'))
    lifetime = 365 * 86400 + 300
    assert sorted(points) == sorted(ends)
    assert all(ends[key] - lifetime // 2 - 1 <= points[key] <= ends[key] - lifetime // 3 for key in ends), (points, ends)
    rc, output = playbook(hosts, 'expiry_report.yml', '-e', 'expiry_report_prom_path=%s' % prom,
                          '-e', 'expiry_report_served=false')
    assert rc == 0 and 'changed=0' in output[output.rindex('PLAY RECAP'):]


def test_expiry_report_fails_on_warning_when_asked(fleet_pki):
    tmp_path, hosts = fleet_pki
    rc, output = playbook(hosts, 'expiry_report.yml', '-e', 'expiry_report_warn_days=400',
                          '-e', 'expiry_report_fail_on_warning=true', '-e', 'expiry_report_prom_path=%s/x.prom' % tmp_path,
                          '-e', 'expiry_report_served=false')
    assert rc != 0
    assert '5 certificate(s) or a CRL not ok' in ' '.join(output.split())


def test_expiry_report_served_endpoints_from_the_inventory(fleet_pki):
    """Every Redis and API host is an endpoint (ansible_host, the roles' default ports, the control node's copy):
    the fake hosts serve nothing, so they are unreachable, up 0 in the metrics, and fail_on_warning fails."""
    tmp_path, hosts = fleet_pki
    prom = tmp_path / 'served' / 'fleetpki.prom'
    rc, output = playbook(hosts, 'expiry_report.yml', '-e', 'expiry_report_prom_path=%s' % prom,
                          '-e', 'expiry_report_served_timeout=1')
    assert rc == 0, output[-3000:]
    text = prom.read_text()
    promtool_check_metrics(text)
    up = sorted(line for line in text.splitlines() if line.startswith('fleetpki_served_cert_up{'))
    assert up == ['fleetpki_served_cert_up{endpoint="api-pf-api1",host="pf-api1",port="8443",serial=""} 0',
                  'fleetpki_served_cert_up{endpoint="redis-pf-redis1",host="pf-redis1",port="6379",serial=""} 0']
    assert 'redis-pf-redis1 pf-redis1:6379' in output
    rc, output = playbook(hosts, 'expiry_report.yml', '-e', 'expiry_report_prom_path=%s' % prom,
                          '-e', 'expiry_report_served_timeout=1', '-e', 'expiry_report_fail_on_warning=true')
    assert rc != 0
    assert '2 endpoint(s) not ok (redis-pf-redis1 unreachable, api-pf-api1 unreachable)' in ' '.join(output.split())


def test_alert_rules_example_passes_promtool():
    proc = subprocess.run(['promtool', 'check', 'rules', str(ROOT / 'docs' / 'examples' / 'prometheus-alerts.yml')],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert proc.returncode == 0, proc.stdout


def test_scheduled_renewal_playbook_parses():
    rc, output = playbook(pathlib.Path(ROOT / 'inventories' / 'lab'), 'scheduled_renewal.yml', '--syntax-check')
    assert rc == 0, output[-3000:]


def test_the_renewal_points_follow_the_policy_set_for_the_fleet_groups(tmp_path):
    """pki_renew_days: 30 in the fleet's group vars (not all): pki_leaf renews within 30 days, so the metrics put
    every renewal point 30 days before the end (renew_days alone: no splay), as pki_leaf does."""
    hosts = inventory(tmp_path, FLEET, {'pki_renew_days': 30})
    rc, output = playbook(hosts, 'pki.yml')
    assert rc == 0, output[-3000:]
    prom = tmp_path / 'out.prom'
    rc, output = playbook(hosts, 'expiry_report.yml', '-e', 'expiry_report_prom_path=%s' % prom,
                          '-e', 'expiry_report_served=false')
    assert rc == 0, output[-3000:]
    values = dict((metric, dict(re.findall(r'^%s\{([^}]*)\} (\d+)$' % metric, prom.read_text(), re.M)))
                  for metric in ('fleetpki_cert_expiry_seconds', 'fleetpki_cert_renew_at_seconds'))
    ends, points = values['fleetpki_cert_expiry_seconds'], values['fleetpki_cert_renew_at_seconds']
    assert len(ends) == 5 and sorted(points) == sorted(ends)
    assert all(int(ends[key]) - int(points[key]) == 30 * 86400 for key in ends), (ends, points)
