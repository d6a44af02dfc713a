# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pki_backup main() run in-process the way Ansible runs it."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.fleetpki.mtls.plugins.modules import pki_backup


pytestmark = pytest.mark.usefixtures('fast_scrypt')


@pytest.fixture
def pki_dir(tmp_path, pki):
    root = tmp_path / 'inv' / 'pki'
    pki.make_ca(str(root / 'ca'), passphrase=pki.PASSPHRASE)
    pki.issue(str(root / 'ca'), [{'name': 'api-a1', 'dns': ['a1.example.com'], 'usage': 'both'}],
              default_dir=str(root / 'issued'), ca_passphrase=pki.PASSPHRASE)
    return str(root)


def args(pki_dir, archive, passphrase, **extra):
    value = {'pki_dir': pki_dir, 'archive': archive, 'backup_passphrase': passphrase}
    value.update(extra)
    return value


def no_secret(run, pki):
    assert pki.PASSPHRASE not in run.stdout
    assert pki.WRONG_PASSPHRASE not in run.stdout
    assert 'PRIVATE KEY' not in run.stdout


def test_backup_check_mode_then_backup_then_unchanged(tmp_path, pki, pki_dir, run_module):
    archive = str(tmp_path / 'inv' / 'backups' / 'pki-2025-01-31.fpkb')
    before = pki.snapshot(str(tmp_path))
    check = run_module(pki_backup, args(pki_dir, archive, pki.PASSPHRASE), check_mode=True)
    assert check.rc == 0 and check.result['changed'] is True and check.result['action'] == 'create'
    assert pki.snapshot(str(tmp_path)) == before

    made = run_module(pki_backup, args(pki_dir, archive, pki.PASSPHRASE))
    assert made.rc == 0 and made.result['changed'] is True
    assert made.result['files'] == 6 and made.result['archive'] == archive and made.result['pki_dir'] == pki_dir
    assert made.result['ca_fingerprint_sha256'].count(':') == 31
    assert made.result['moved_aside'] is None
    assert pki.mode_of(archive) == 0o600
    assert 'members' not in made.result
    no_secret(made, pki)

    again = run_module(pki_backup, args(pki_dir, archive, pki.PASSPHRASE, state='backup'))
    assert again.rc == 0 and again.result['changed'] is False
    assert not again.warnings


def test_verify_and_restore(tmp_path, pki, pki_dir, run_module):
    archive = str(tmp_path / 'backups' / 'a.fpkb')
    made = run_module(pki_backup, args(pki_dir, archive, pki.PASSPHRASE))
    listed = run_module(pki_backup, args(pki_dir, archive, pki.PASSPHRASE, state='verify'))
    assert listed.rc == 0 and listed.result['changed'] is False
    assert listed.result['ca_fingerprint_sha256'] == made.result['ca_fingerprint_sha256']
    assert sorted(listed.result['members']) == sorted([
        'ca/ca-cert.pem', 'ca/ca-key.pem', 'ca/metadata.json',
        'issued/api-a1-bundle.pem', 'issued/api-a1-cert.pem', 'issued/api-a1-key.pem'])

    target = str(tmp_path / 'restored' / 'pki')
    check = run_module(pki_backup, args(target, archive, pki.PASSPHRASE, state='restore'), check_mode=True)
    assert check.result['changed'] is True and not os.path.exists(os.path.dirname(target))
    restored = run_module(pki_backup, args(target, archive, pki.PASSPHRASE, state='restore'))
    assert restored.rc == 0 and restored.result['changed'] is True and restored.result['files'] == 6
    assert pki.read(os.path.join(target, 'ca', 'ca-key.pem')) == pki.read(os.path.join(pki_dir, 'ca', 'ca-key.pem'))
    assert pki.mode_of(os.path.join(target, 'ca', 'ca-key.pem')) == 0o600
    assert pki.mode_of(os.path.join(target, 'issued', 'api-a1-key.pem')) == 0o600
    # the restored CA key is still the encrypted one, and loads with its passphrase
    pki.load_key(os.path.join(target, 'ca', 'ca-key.pem'), pki.PASSPHRASE)
    again = run_module(pki_backup, args(target, archive, pki.PASSPHRASE, state='restore'))
    assert again.result['changed'] is False
    no_secret(restored, pki)


def test_wrong_passphrase_fails_cleanly(tmp_path, pki, pki_dir, run_module):
    archive = str(tmp_path / 'backups' / 'a.fpkb')
    run_module(pki_backup, args(pki_dir, archive, pki.PASSPHRASE))
    before = pki.snapshot(str(tmp_path))
    for state, directory in (('verify', str(tmp_path / 'r')), ('restore', str(tmp_path / 'r')), ('backup', pki_dir)):
        failed = run_module(pki_backup, args(directory, archive, pki.WRONG_PASSPHRASE, state=state))
        assert failed.rc == 1 and failed.result['failed'] is True
        assert 'passphrase is wrong' in failed.result['msg'] and archive in failed.result['msg']
        no_secret(failed, pki)
    assert pki.snapshot(str(tmp_path)) == before


def test_restore_refusal_then_force(tmp_path, pki, pki_dir, run_module):
    archive = str(tmp_path / 'backups' / 'a.fpkb')
    run_module(pki_backup, args(pki_dir, archive, pki.PASSPHRASE))
    target = str(tmp_path / 'other')
    pki.make_ca(os.path.join(target, 'ca'))
    before = pki.snapshot(target)

    refused = run_module(pki_backup, args(target, archive, pki.PASSPHRASE, state='restore'))
    assert refused.rc == 1 and 'holds another CA' in refused.result['msg']
    assert pki.snapshot(target) == before

    check = run_module(pki_backup, args(target, archive, pki.PASSPHRASE, state='restore', force=True),
                       check_mode=True)
    assert check.result['changed'] is True and check.result['moved_aside']
    assert pki.snapshot(target) == before and not os.path.exists(check.result['moved_aside'])

    forced = run_module(pki_backup, args(target, archive, pki.PASSPHRASE, state='restore', force=True))
    assert forced.rc == 0 and forced.result['changed'] is True
    assert pki.snapshot(forced.result['moved_aside']) == before
    assert pki.read(os.path.join(target, 'ca', 'ca-cert.pem')) == pki.read(os.path.join(pki_dir, 'ca', 'ca-cert.pem'))


def test_force_is_for_restore_only(tmp_path, pki, pki_dir, run_module):
    failed = run_module(pki_backup, args(pki_dir, str(tmp_path / 'a.fpkb'), pki.PASSPHRASE, force=True))
    assert failed.rc == 1 and 'force applies to state=restore only' in failed.result['msg']
    assert not os.path.exists(str(tmp_path / 'a.fpkb'))


def test_passphrase_is_required(tmp_path, pki_dir, run_module):
    failed = run_module(pki_backup, {'pki_dir': pki_dir, 'archive': str(tmp_path / 'a.fpkb')})
    assert failed.rc == 1 and 'passphrase' in failed.result['msg']
