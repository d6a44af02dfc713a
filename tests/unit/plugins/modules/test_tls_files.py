# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The tls_files module's entry point: secrets masked in what Ansible logs, check mode, errors as failures."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.fleetpki.mtls.plugins.modules import tls_files
from ansible_collections.fleetpki.mtls.tests.unit.plugins.module_utils._host.faults import fail_rename_onto

KEY_TEXT = '-----BEGIN ' + 'PRIVATE KEY-----\nMIGHAgEAmoduleKEYq8Vv\n-----END ' + 'PRIVATE KEY-----\n'
PASSWORD = 'Pw7-module-redis-password-Zq4t'


def args(tmp_path):
    return {'directories': [{'path': str(tmp_path / 'tls'), 'mode': '0750'}],
            'files': [{'path': str(tmp_path / 'tls' / 'key.pem'), 'secret_content': KEY_TEXT, 'mode': '0600',
                       'backup': True},
                      {'path': str(tmp_path / 'tls' / 'cert.pem'), 'content': 'cert\n', 'mode': '0644'}],
            'env_files': [{'path': str(tmp_path / '.env'), 'mode': '0640', 'entries': {'REDIS_PORT': 6379},
                           'secret_entries': {'REDIS_PASSWORD': PASSWORD}}]}


def test_secrets_never_in_output(tmp_path, run_module):
    first = run_module(tls_files, args(tmp_path), diff=True)
    assert first.rc == 0 and first.result['changed'] is True
    assert 'MIGHAgEAmoduleKEYq8Vv' not in first.stdout and PASSWORD not in first.stdout
    assert (tmp_path / '.env').read_text() == 'REDIS_PORT=6379\nREDIS_PASSWORD=%s\n' % PASSWORD
    (tmp_path / 'tls' / 'key.pem').write_text('old key\n')
    again = run_module(tls_files, args(tmp_path), diff=True)
    assert again.result['changed_paths'] == [str(tmp_path / 'tls' / 'key.pem')]
    assert list(again.result['backups']) == [str(tmp_path / 'tls' / 'key.pem')]
    assert 'MIGHAgEAmoduleKEYq8Vv' not in again.stdout and 'old key' not in again.stdout
    assert run_module(tls_files, args(tmp_path)).result['changed'] is False


def test_check_mode(tmp_path, run_module):
    run = run_module(tls_files, args(tmp_path), check_mode=True)
    assert run.result['changed'] is True and len(run.result['changed_paths']) == 4
    assert os.listdir(str(tmp_path)) == []


def test_error_is_a_failure_naming_the_path(tmp_path, run_module):
    bad = {'files': [{'path': str(tmp_path / 'missing' / 'cert.pem'), 'content': 'x', 'mode': '0644'}]}
    run = run_module(tls_files, bad)
    assert run.rc == 1 and run.result['failed'] is True
    assert str(tmp_path / 'missing') in run.result['msg'] and 'list it under directories' in run.result['msg']


def test_content_or_secret_content_exactly_one(tmp_path, run_module):
    both = {'files': [{'path': str(tmp_path / 'k'), 'content': 'x', 'secret_content': 'y', 'mode': '0600'}]}
    assert run_module(tls_files, both).rc == 1


def test_a_short_secret_value_does_not_rewrite_paths_or_digests(tmp_path, run_module):
    """Ansible masks a no_log value wherever it occurs as a substring: a secret .env entry '1' would turn the
    backups' paths and the digests the roles read back into '********'. They must come back as they are, and
    the secrets still masked in the invocation."""
    cert = tmp_path / 'cert.pem'
    cert.write_text('old\n')
    short = dict(args(tmp_path), checksums=[str(cert)])
    short['files'] = [{'path': str(cert), 'content': 'cert\n', 'mode': '0644', 'backup': True}]
    short['env_files'][0]['secret_entries'] = {'DEBUG': '1', 'REDIS_PASSWORD': PASSWORD}
    run = run_module(tls_files, short)
    backup = run.result['backups'][str(cert)]
    assert os.path.exists(backup), backup
    assert all(len(digest) == 64 and '*' not in digest for digest in run.result['checksums'].values())
    invocation = run.result['invocation']['module_args']
    assert set(invocation['env_files'][0]['secret_entries'].values()) == {'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'}
    assert PASSWORD not in run.stdout


def test_a_failure_part_way_reports_what_was_changed_and_its_backups(tmp_path, run_module, monkeypatch):
    """A role's rescue restores from these: changed=False without them would leave the new key in place."""
    key, cert = tmp_path / 'key.pem', tmp_path / 'cert.pem'
    key.write_text('old key\n')
    cert.write_text('old cert\n')
    fail_rename_onto(monkeypatch, 'cert.pem', OSError(28, 'No space left on device'))
    run = run_module(tls_files, {'files': [
        {'path': str(key), 'secret_content': KEY_TEXT, 'mode': '0600', 'backup': True},
        {'path': str(cert), 'content': 'cert\n', 'mode': '0644', 'backup': True}]})
    monkeypatch.undo()
    assert run.rc == 1 and run.result['changed'] is True
    assert run.result['changed_paths'] == [str(key)]
    assert str(key) in run.result['backups']
    assert str(cert) in run.result['msg'] and 'No space left on device' in run.result['msg']
    assert 'MIGHAgEAmoduleKEYq8Vv' not in run.stdout and 'old key' not in run.stdout


def test_a_link_in_place_of_a_file_fails_before_any_write(tmp_path, run_module):
    (tmp_path / 'elsewhere').write_text('root only\n')
    os.symlink(str(tmp_path / 'elsewhere'), str(tmp_path / 'cert.pem'))
    run = run_module(tls_files, {'files': [
        {'path': str(tmp_path / 'key.pem'), 'secret_content': KEY_TEXT, 'mode': '0600'},
        {'path': str(tmp_path / 'cert.pem'), 'content': 'cert\n', 'mode': '0644'}]})
    assert run.rc == 1 and run.result['changed'] is False and run.result['changed_paths'] == []
    assert str(tmp_path / 'cert.pem') in run.result['msg'] and 'symbolic link' in run.result['msg']
    assert sorted(os.listdir(str(tmp_path))) == ['cert.pem', 'elsewhere']


def test_restore_then_nothing_left(tmp_path, run_module):
    """The rollback call: the previous key back, its backup gone, the key in no output; restore goes alone."""
    run_module(tls_files, args(tmp_path))
    key = tmp_path / 'tls' / 'key.pem'
    key.write_text('old key\n')
    assert run_module(tls_files, args(tmp_path)).result['backups']
    restore = {'restore': [{'path': str(key), 'mode': '0600'}]}
    back = run_module(tls_files, restore, diff=True)
    assert back.rc == 0 and back.result['changed_paths'] == [str(key)] and key.read_text() == 'old key\n'
    assert 'old key' not in back.stdout and 'MIGHAgEAmoduleKEYq8Vv' not in back.stdout
    assert sorted(os.listdir(str(tmp_path / 'tls'))) == ['cert.pem', 'key.pem']
    both = run_module(tls_files, dict(restore, **{'files': args(tmp_path)['files']}))
    assert both.rc == 1 and 'restore goes alone' in both.result['msg']
    assert run_module(tls_files, dict(restore, files=[], directories=[])).rc == 0  # empty lists are not given


def test_absent_keys_go_and_a_file_without_them_is_left_as_it_is(tmp_path, run_module):
    """A feature turned off (the API's enrollment): its entries are removed; a .env that never had them is unchanged."""
    env = tmp_path / '.env'
    env.write_text('REDIS_PORT=6379\nAPI_ENROLL_CA_CERT=/etc/ca.pem\n# mine\nAPI_ENROLL_TOKENS=/var/t\n')
    spec = {'env_files': [{'path': str(env), 'mode': '0640', 'entries': {'REDIS_PORT': 6379},
                           'absent_keys': ['API_ENROLL_CA_CERT', 'API_ENROLL_TOKENS']}]}
    off = run_module(tls_files, spec, diff=True)
    assert off.result['changed'] is True and env.read_text() == 'REDIS_PORT=6379\n# mine\n'
    assert '/etc/ca.pem' not in off.stdout, 'a removed value is not shown'
    assert run_module(tls_files, spec).result['changed'] is False
    both = dict(spec['env_files'][0], entries={'API_ENROLL_TOKENS': '/var/t'})
    assert 'both set and in absent_keys' in run_module(tls_files, {'env_files': [both]}).result['msg']
