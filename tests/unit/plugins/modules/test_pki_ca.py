# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pki_ca main() run in-process the way Ansible runs it."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import os

from ansible_collections.fleetpki.mtls.plugins.modules import pki_ca


def test_check_mode_then_create_then_unchanged(tmp_path, pki, run_module):
    directory = str(tmp_path / 'ca')
    check = run_module(pki_ca, {'ca_dir': directory, 'common_name': 'Acme Root', 'organization': 'Acme'},
                       check_mode=True, diff=True)
    assert check.rc == 0
    assert check.result['changed'] is True and check.result['action'] == 'create'
    assert check.result['diff'] == {'before': {}, 'after': {'state': 'new CA to be created'}}
    assert not os.path.exists(directory)

    made = run_module(pki_ca, {'ca_dir': directory, 'common_name': 'Acme Root', 'organization': 'Acme'}, diff=True)
    assert made.rc == 0
    assert made.result['changed'] is True and made.result['action'] == 'create'
    assert made.result['subject'] == 'CN=Acme Root,O=Acme'
    assert made.result['diff']['after']['serial'] == made.result['serial']
    assert sorted(os.listdir(directory)) == ['ca-cert.pem', 'ca-key.pem']

    again = run_module(pki_ca, {'ca_dir': directory, 'common_name': 'Acme Root', 'organization': 'Acme'})
    assert again.rc == 0
    assert again.result['changed'] is False and again.result['action'] == 'none'
    assert again.result['serial'] == made.result['serial']
    assert not again.result.get('warnings')


def test_key_mode_fix_is_a_change(tmp_path, pki, run_module):
    directory = str(tmp_path / 'ca')
    run_module(pki_ca, {'ca_dir': directory})
    os.chmod(os.path.join(directory, 'ca-key.pem'), 0o644)
    check = run_module(pki_ca, {'ca_dir': directory}, check_mode=True)
    assert check.result['changed'] is True and check.result['action'] == 'fix_mode'
    assert pki.mode_of(os.path.join(directory, 'ca-key.pem')) == 0o644
    fixed = run_module(pki_ca, {'ca_dir': directory})
    assert fixed.result['changed'] is True and fixed.result['action'] == 'fix_mode'
    assert pki.mode_of(os.path.join(directory, 'ca-key.pem')) == 0o600


def test_differing_request_warns(tmp_path, run_module):
    directory = str(tmp_path / 'ca')
    run_module(pki_ca, {'ca_dir': directory})
    kept = run_module(pki_ca, {'ca_dir': directory, 'common_name': 'Other', 'key_type': 'ed25519'})
    assert kept.result['changed'] is False
    assert len(kept.warnings) == 1 and 'kept as it is' in kept.warnings[0]


def test_passphrase_never_in_the_output(tmp_path, pki, run_module):
    directory = str(tmp_path / 'ca')
    made = run_module(pki_ca, {'ca_dir': directory, 'ca_passphrase': pki.PASSPHRASE}, diff=True)
    assert made.rc == 0 and made.result['encrypted'] is True
    assert pki.PASSPHRASE not in made.stdout
    assert b'ENCRYPTED' in pki.read(os.path.join(directory, 'ca-key.pem'))

    loaded = run_module(pki_ca, {'ca_dir': directory, 'ca_passphrase': pki.PASSPHRASE})
    assert loaded.result['changed'] is False and pki.PASSPHRASE not in loaded.stdout

    before = pki.snapshot(tmp_path)
    wrong = run_module(pki_ca, {'ca_dir': directory, 'ca_passphrase': pki.WRONG_PASSPHRASE})
    assert wrong.rc == 1 and wrong.result['failed'] is True
    assert os.path.join(directory, 'ca-key.pem') in wrong.result['msg']
    assert 'passphrase is wrong' in wrong.result['msg']
    assert pki.WRONG_PASSPHRASE not in wrong.stdout and pki.PASSPHRASE not in wrong.stdout

    missing = run_module(pki_ca, {'ca_dir': directory})
    assert missing.rc == 1 and 'is encrypted' in missing.result['msg']
    assert pki.snapshot(tmp_path) == before


def test_failures(tmp_path, pki, run_module):
    before = pki.snapshot(tmp_path)
    country = run_module(pki_ca, {'ca_dir': str(tmp_path / 'ca'), 'country': 'Germany'})
    assert country.rc == 1 and country.result['failed'] is True
    assert "country must be a two-letter ISO 3166 code" in country.result['msg'] and 'Germany' in country.result['msg']

    days = run_module(pki_ca, {'ca_dir': str(tmp_path / 'ca'), 'valid_days': 0})
    assert days.rc == 1 and 'valid_days must be a whole number of days from 1 to 10950, not 0' in days.result['msg']

    key_type = run_module(pki_ca, {'ca_dir': str(tmp_path / 'ca'), 'key_type': 'dsa'})
    assert key_type.rc == 1 and 'key_type' in key_type.result['msg']

    blocker = tmp_path / 'blocker'
    pki.write(blocker, b'x')
    before = pki.snapshot(tmp_path)
    unwritable = run_module(pki_ca, {'ca_dir': str(blocker / 'ca')})
    assert unwritable.rc == 1 and str(blocker) + ' is not a directory' in unwritable.result['msg']
    assert pki.snapshot(tmp_path) == before


def test_force_replaces_with_diff(tmp_path, run_module):
    directory = str(tmp_path / 'ca')
    first = run_module(pki_ca, {'ca_dir': directory})
    check = run_module(pki_ca, {'ca_dir': directory, 'force': True}, check_mode=True)
    assert check.result['changed'] is True and check.result['action'] == 'replace'
    assert not os.path.exists(os.path.join(directory, 'retired'))
    replaced = run_module(pki_ca, {'ca_dir': directory, 'force': True}, diff=True)
    assert replaced.result['action'] == 'replace'
    assert replaced.result['serial'] != first.result['serial']
    assert replaced.result['diff']['after']['serial'] == replaced.result['serial']
    assert len(os.listdir(os.path.join(directory, 'retired'))) == 2


def test_short_passphrase_refused_on_create_and_a_warning_on_load(tmp_path, pki, run_module):
    from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto
    directory = str(tmp_path / 'ca')
    refused = run_module(pki_ca, {'ca_dir': directory, 'ca_passphrase': 'short-pass'})
    assert refused.rc == 1 and 'at least 16 characters' in refused.result['msg']
    assert 'short-pass' not in refused.stdout
    assert not os.path.exists(directory)

    key, dummy = pki.hand_ca(directory, pki.now() - datetime.timedelta(days=1), pki.now() + datetime.timedelta(days=900))
    pki.write(os.path.join(directory, 'ca-key.pem'), crypto.private_key_pem(key, 'short-pass'), 0o600)
    loaded = run_module(pki_ca, {'ca_dir': directory, 'ca_passphrase': 'short-pass', 'common_name': 'Hand Made CA'})
    assert loaded.rc == 0 and loaded.result['changed'] is False
    assert any('shorter than 16 characters' in warning for warning in loaded.warnings), loaded.warnings


def test_old_option_names_still_work(tmp_path, pki, run_module):
    """dir and passphrase were pki_ca's names before ca_dir and ca_passphrase (0.3.0): playbooks using them keep working."""
    directory = str(tmp_path / 'ca')
    made = run_module(pki_ca, {'dir': directory, 'passphrase': pki.PASSPHRASE})
    assert made.rc == 0 and made.result['action'] == 'create'
    assert pki.PASSPHRASE not in made.stdout
    missing = run_module(pki_ca, {'dir': directory})
    assert missing.rc == 1 and 'give its passphrase in ca_passphrase' in missing.result['msg']
    loaded = run_module(pki_ca, {'ca_dir': directory, 'ca_passphrase': pki.PASSPHRASE})
    assert loaded.rc == 0 and loaded.result['changed'] is False


def test_encrypt_existing_key_in_check_mode_then_for_real_then_unchanged(tmp_path, pki, run_module):
    directory = str(tmp_path / 'ca')
    assert run_module(pki_ca, {'ca_dir': directory}).rc == 0
    args = {'ca_dir': directory, 'ca_passphrase': pki.PASSPHRASE, 'encrypt_existing_key': True}
    before = pki.snapshot(tmp_path)
    check = run_module(pki_ca, args, check_mode=True, diff=True)
    assert check.rc == 0 and check.result['changed'] is True and check.result['action'] == 'encrypt_key'
    assert pki.snapshot(tmp_path) == before
    real = run_module(pki_ca, args)
    assert real.rc == 0 and real.result['action'] == 'encrypt_key' and real.result['encrypted'] is True
    assert b'ENCRYPTED' in pki.read(os.path.join(directory, 'ca-key.pem'))
    again = run_module(pki_ca, args)
    assert again.rc == 0 and again.result['changed'] is False
    for run in (check, real, again):
        assert pki.PASSPHRASE not in run.stdout


def test_a_root_in_a_token_and_an_issuing_ca_under_it_in_check_mode_then_made_pins_never_shown(tmp_path, pki,
                                                                                               run_module, softhsm):
    """The module's options for two tiers and a token: check mode writes nothing (the root's PIN is tried all the
    same), the run makes both, the rerun changes nothing, and no PIN is in any output."""
    from ansible_collections.fleetpki.mtls.tests.unit.conftest import TOKEN_PIN
    token = softhsm['new_token']()
    root, site = str(tmp_path / 'root'), str(tmp_path / 'site-a')
    root_args = {'ca_dir': root, 'common_name': 'Fleet Root CA', 'ca_passphrase': TOKEN_PIN,
                 'pkcs11': {'module': softhsm['module'], 'token_label': token, 'key_label': 'fleet-root'}}
    site_args = {'ca_dir': site, 'common_name': 'Site A Issuing CA', 'issuer_dir': root,
                 'issuer_passphrase': TOKEN_PIN, 'name_constraints_permitted_dns': ['site-a.example.com']}
    check = run_module(pki_ca, root_args, check_mode=True)
    assert check.result['changed'] is True and not os.path.exists(root)
    made = run_module(pki_ca, root_args)
    assert made.result['action'] == 'create' and made.result['pkcs11']['key_label'] == 'fleet-root'
    assert sorted(os.listdir(root)) == ['ca-cert.pem', 'ca-key.pkcs11.json']
    site_made = run_module(pki_ca, site_args, diff=True)
    assert site_made.result['action'] == 'create' and site_made.result['issuer'] == 'CN=Fleet Root CA'
    assert site_made.result['path_length'] == 0 and site_made.result['self_signed'] is False
    again = [run_module(pki_ca, root_args), run_module(pki_ca, site_args)]
    assert [run.result['changed'] for run in again] == [False, False]
    wrong = run_module(pki_ca, dict(root_args, ca_passphrase='not-the-pin-8Kq'))
    assert wrong.rc != 0 and ('PIN is wrong' in wrong.result['msg'] or 'another PIN' in wrong.result['msg'])
    for run in [check, made, site_made, wrong] + again:
        assert TOKEN_PIN not in run.stdout and 'not-the-pin-8Kq' not in run.stdout
