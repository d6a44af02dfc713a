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
