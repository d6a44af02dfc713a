# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pki_crl main() run in-process the way Ansible runs it."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.fleetpki.mtls.plugins.modules import pki_crl


def test_check_real_idempotent_and_diff(ca_dir, out_dir, pki, run_module):
    dummy, results = pki.issue(ca_dir, [{'name': 'web1', 'dns': ['web1']}], default_dir=out_dir)
    serial = results['web1']['serial']
    check = run_module(pki_crl, {'ca_dir': ca_dir, 'revoke_names': ['web1']}, check_mode=True, diff=True)
    assert check.rc == 0 and check.result['changed'] is True
    assert check.result['diff'] == {'before': {'revoked': []},
                                    'after': {'revoked': [serial], 'resign_reason': 'missing'}}
    assert not os.path.exists(os.path.join(ca_dir, 'crl.pem'))
    real = run_module(pki_crl, {'ca_dir': ca_dir, 'revoke_names': ['web1']})
    assert real.result['changed'] is True and real.result['revoked_now'] == [serial]
    again = run_module(pki_crl, {'ca_dir': ca_dir, 'revoke_names': ['web1']}, check_mode=True)
    assert again.result['changed'] is False
    again = run_module(pki_crl, {'ca_dir': ca_dir, 'revoke_names': ['web1']})
    assert again.result['changed'] is False and again.result['revoked_now'] == []


def test_failure_names_the_input(ca_dir, run_module):
    run = run_module(pki_crl, {'ca_dir': ca_dir, 'revoke_serials': ['DEADBEEF']})
    assert run.rc == 1 and run.result['failed'] is True
    assert 'DEADBEEF' in run.result['msg']


def test_passphrase_is_not_in_the_result(tmp_path, pki, run_module):
    ca_dir = str(tmp_path / 'ca')
    pki.make_ca(ca_dir, passphrase=pki.PASSPHRASE)
    run = run_module(pki_crl, {'ca_dir': ca_dir, 'ca_passphrase': pki.PASSPHRASE})
    assert run.rc == 0 and run.result['changed'] is True
    assert pki.PASSPHRASE not in run.stdout


def test_check_mode_without_a_ca_yet_reports_the_crl_to_sign(tmp_path, run_module):
    """pki.yml --check on a new fleet: pki_ca only said it would make the CA, so the CRL would be signed too."""
    ca_dir = str(tmp_path / 'ca')
    check = run_module(pki_crl, {'ca_dir': ca_dir, 'ca_planned': True}, check_mode=True, diff=True)
    assert check.rc == 0, check.result
    assert check.result['changed'] is True
    assert 'no CA in %s yet' % ca_dir in check.result['resign_reason']
    assert any('fleetpki.mtls.pki_ca' in warning for warning in check.warnings), check.warnings
    assert not os.path.exists(ca_dir)
    # A real run still refuses: it never makes a CA.
    real = run_module(pki_crl, {'ca_dir': ca_dir})
    assert real.rc == 1 and 'no CA in %s' % ca_dir in real.result['msg']
    assert not os.path.exists(ca_dir)


def test_check_mode_without_a_ca_yet_still_refuses_revocations(tmp_path, run_module):
    ca_dir = str(tmp_path / 'ca')
    check = run_module(pki_crl, {'ca_dir': ca_dir, 'revoke_names': ['web1'], 'ca_planned': True}, check_mode=True)
    assert check.rc == 1 and 'no CA in %s yet' % ca_dir in check.result['msg'] and 'revoke_names' in check.result['msg']


def test_check_mode_without_a_ca_not_planned_fails_like_a_real_run(tmp_path, run_module):
    """A mistyped ca_dir (or a trusted CA directory no task of the run makes) must not pass --check."""
    ca_dir = str(tmp_path / 'mistyped')
    check = run_module(pki_crl, {'ca_dir': ca_dir}, check_mode=True)
    assert check.rc == 1, check.result
    assert 'no CA in %s' % ca_dir in check.result['msg'] and 'ca_dir' in check.result['msg']
    assert not os.path.exists(ca_dir)
