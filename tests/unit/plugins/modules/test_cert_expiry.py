# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""cert_expiry main() run in-process the way Ansible runs it."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import os

import pytest

from ansible_collections.fleetpki.mtls.plugins.modules import cert_expiry

DAY = datetime.timedelta(days=1)


@pytest.fixture
def issued(ca_dir, out_dir, pki):
    pki.issue(ca_dir, [{'name': 'web1', 'dns': ['web1.example.com']}, {'name': 'web2', 'dns': ['web2']}],
              default_dir=out_dir)
    return {'ca_path': os.path.join(ca_dir, 'ca-cert.pem'), 'dir': out_dir, 'ca_dir': ca_dir}


@pytest.mark.parametrize('check_mode', [False, True])
def test_all_ok(issued, pki, tmp_path, run_module, check_mode):
    before = pki.snapshot(tmp_path)
    run = run_module(cert_expiry, {'paths': [issued['dir']], 'ca_path': issued['ca_path'], 'fail_on_warning': True},
                     check_mode=check_mode)
    assert run.rc == 0
    assert run.result['changed'] is False
    assert run.result['counts'] == {'ok': 2, 'expiring': 0, 'expired': 0, 'broken': 0}
    assert run.result['total'] == 2
    assert [os.path.basename(c['path']) for c in run.result['certs']] == ['web1-cert.pem', 'web2-cert.pem']
    assert all(c['chains_to_ca'] is True and c['key_matches'] is True for c in run.result['certs'])
    assert pki.snapshot(tmp_path) == before


def test_fail_on_warning(issued, pki, run_module):
    ca = pki.make_ca(issued['ca_dir'] + '-2').existing
    now = pki.now()
    pki.hand_leaf(issued['dir'], 'old', ca.key, ca.cert, now - 100 * DAY, now - DAY)
    args = {'paths': [issued['dir']], 'ca_path': issued['ca_path']}
    report = run_module(cert_expiry, args)
    assert report.rc == 0 and report.result['counts']['broken'] == 1  # not signed by ca_path, and expired

    failed = run_module(cert_expiry, dict(args, fail_on_warning=True))
    assert failed.rc == 1 and failed.result['failed'] is True
    assert failed.result['msg'].startswith('1 certificate(s) not ok: ')
    assert os.path.join(issued['dir'], 'old-cert.pem') + ' (broken: not signed by any CA' in failed.result['msg']
    assert failed.result['counts']['broken'] == 1 and len(failed.result['certs']) == 3

    expiring = run_module(cert_expiry, {'paths': [os.path.join(issued['dir'], 'web1-cert.pem')], 'warn_days': 400,
                                        'fail_on_warning': True})
    assert expiring.rc == 1 and '(expiring)' in expiring.result['msg']


def test_bad_ca_path_fails(issued, tmp_path, run_module):
    missing = str(tmp_path / 'missing.pem')
    run = run_module(cert_expiry, {'paths': [issued['dir']], 'ca_path': missing})
    assert run.rc == 1 and run.result['failed'] is True
    assert 'ca_path %s does not exist' % missing in run.result['msg']


def test_missing_path_is_broken(tmp_path, run_module):
    missing = str(tmp_path / 'nope-cert.pem')
    run = run_module(cert_expiry, {'paths': [missing]})
    assert run.rc == 0 and run.result['certs'][0]['status'] == 'broken'
    assert run.result['counts']['broken'] == 1


# -- Prometheus textfile ----------------------------------------------------------------------------------------------

def test_prometheus_textfile_check_real_idempotent(issued, tmp_path, run_module):
    prom = str(tmp_path / 'metrics' / 'fleetpki.prom')
    args = {'paths': [issued['dir']], 'ca_path': issued['ca_path'], 'prometheus_path': prom,
            'prometheus_labels': {'fleet': 'lab'}}
    check = run_module(cert_expiry, args, check_mode=True)
    assert check.result['changed'] is True and not os.path.exists(prom)
    real = run_module(cert_expiry, args)
    assert real.result['changed'] is True and real.result['prometheus_path'] == prom
    text = open(prom).read()
    serial = real.result['certs'][0]['serial']
    assert '# TYPE fleetpki_cert_expiry_seconds gauge' in text
    assert ('fleetpki_cert_days_remaining{fleet="lab",host="",path="%s/web1-cert.pem",serial="%s",service="web1"}'
            % (issued['dir'], serial)) in text
    assert oct(os.stat(prom).st_mode & 0o777) == '0o644'
    again = run_module(cert_expiry, args)
    assert again.result['changed'] is False


def test_prometheus_labels_from_fleet_names_and_escaping():
    from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.metrics import labels_from_name, render
    assert labels_from_name('/x/worker-worker-7.lab-cert.pem') == {'service': 'worker', 'host': 'worker-7.lab'}
    text = render([{'path': '/x/redis-r1-cert.pem', 'serial': 'AB', 'status': 'broken', 'not_after': None}],
                  {'note': 'a "quoted"\nline'})
    assert 'fleetpki_cert_broken{host="r1",note="a \\"quoted\\"\\nline",path="/x/redis-r1-cert.pem",serial="AB",' \
           'service="redis"} 1' in text
    assert 'fleetpki_cert_expiry_seconds{' not in text


def test_prometheus_path_unwritable_fails_clearly(issued, tmp_path, run_module):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    run = run_module(cert_expiry, {'paths': [issued['dir']], 'prometheus_path': str(blocker / 'sub' / 'f.prom')})
    assert run.rc == 1 and 'prometheus_path' in run.result['msg']


# -- endpoints: what a service serves on a TLS port (real servers on 127.0.0.1) ---------------------------------------

def promtool_findings(text):
    """promtool's findings on a textfile (None when promtool is not installed)."""
    import shutil
    import subprocess
    if not shutil.which('promtool'):
        return None
    proc = subprocess.run(['promtool', 'check', 'metrics'], input=text, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert proc.returncode in (0, 3), proc.stdout  # 3: lint findings only
    return [line for line in proc.stdout.splitlines() if line.strip()]


def test_nothing_to_inspect_fails_clearly(run_module):
    run = run_module(cert_expiry, {'ca_path': '/nonexistent'})
    assert run.rc == 1 and run.result['msg'].startswith('nothing to inspect: give paths')


def test_endpoints_only_ok_and_mismatch(issued, tls_server, closed_port, run_module):
    web1 = os.path.join(issued['dir'], 'web1-cert.pem')
    web2 = os.path.join(issued['dir'], 'web2-cert.pem')
    server = tls_server(web1, os.path.join(issued['dir'], 'web1-key.pem'))
    endpoints = [{'name': 'web1', 'host': '127.0.0.1', 'port': server.port, 'server_name': 'web1.example.com',
                  'cert_path': web1},
                 {'name': 'web1-as-web2', 'host': '127.0.0.1', 'port': server.port, 'cert_path': web2},
                 {'name': 'down', 'host': '127.0.0.1', 'port': closed_port, 'timeout': 1}]
    run = run_module(cert_expiry, {'endpoints': endpoints, 'ca_path': issued['ca_path']})
    assert run.rc == 0 and run.result['changed'] is False
    assert run.result['certs'] == [] and run.result['total'] == 0
    assert [e['status'] for e in run.result['endpoints']] == ['ok', 'mismatch', 'unreachable']
    assert [e['matches_file'] for e in run.result['endpoints']] == [True, False, None]
    assert run.result['endpoints'][0]['chain_verified'] is True
    assert run.result['endpoint_counts'] == {'ok': 1, 'expiring': 0, 'expired': 0, 'unreachable': 1, 'mismatch': 1,
                                             'broken': 0}
    failed = run_module(cert_expiry, {'endpoints': endpoints, 'ca_path': issued['ca_path'], 'fail_on_warning': True})
    assert failed.rc == 1 and failed.result['msg'].startswith('2 endpoint(s) not ok: web1-as-web2 127.0.0.1:')
    assert '(mismatch: serves serial' in failed.result['msg'] and '(unreachable: ' in failed.result['msg']


def test_endpoints_with_paths_and_prometheus(issued, tls_server, closed_port, tmp_path, run_module):
    web1 = os.path.join(issued['dir'], 'web1-cert.pem')
    server = tls_server(web1, os.path.join(issued['dir'], 'web1-key.pem'))
    prom = str(tmp_path / 'served.prom')
    args = {'paths': [issued['dir']], 'ca_path': issued['ca_path'], 'prometheus_path': prom,
            'prometheus_labels': {'fleet': 'lab'},
            'endpoints': [{'name': 'api-web1', 'host': '127.0.0.1', 'port': server.port, 'cert_path': web1},
                          {'name': 'redis-x', 'host': '127.0.0.1', 'port': closed_port, 'timeout': 1}]}
    run = run_module(cert_expiry, args)
    assert run.rc == 0 and run.result['changed'] is True and run.result['counts']['ok'] == 2
    entry = run.result['endpoints'][0]
    text = open(prom).read()
    labels = 'endpoint="api-web1",fleet="lab",host="127.0.0.1",port="%d",serial="%s"' % (server.port, entry['serial'])
    end = datetime.datetime.strptime(entry['not_after'], '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.timezone.utc)
    assert 'fleetpki_served_cert_expiry_seconds{%s} %d' % (labels, end.timestamp()) in text.splitlines()
    assert 'fleetpki_served_cert_matches_file{%s} 1' % labels in text.splitlines()
    assert 'fleetpki_served_cert_up{%s} 1' % labels in text.splitlines()
    down = 'endpoint="redis-x",fleet="lab",host="127.0.0.1",port="%d",serial=""' % closed_port
    assert 'fleetpki_served_cert_up{%s} 0' % down in text.splitlines()
    assert 'fleetpki_served_cert_matches_file{%s' % down not in text
    assert 'fleetpki_served_cert_expiry_seconds{%s' % down not in text
    for name in ('fleetpki_served_cert_expiry_seconds', 'fleetpki_served_cert_matches_file', 'fleetpki_served_cert_up'):
        assert '# TYPE %s gauge' % name in text and '# HELP %s ' % name in text
    # the files' series are there as before
    assert sum(line.startswith('fleetpki_cert_expiry_seconds{') for line in text.splitlines()) == 2
    findings = promtool_findings(text)
    if findings is not None:
        assert all('fleetpki_cert_days_remaining use base unit' in line for line in findings), findings
    again = run_module(cert_expiry, args)
    assert again.result['changed'] is False


def test_textfile_without_endpoints_has_no_served_metrics(issued, tmp_path, run_module):
    prom = str(tmp_path / 'files.prom')
    run = run_module(cert_expiry, {'paths': [issued['dir']], 'prometheus_path': prom})
    assert run.rc == 0 and run.result['endpoints'] == [] and 'fleetpki_served' not in open(prom).read()
