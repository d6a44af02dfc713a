# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""host_files on real files in tmp dirs: compare first, write only what differs, atomically, secrets never shown.

The .env entries are checked against what ansible.builtin.lineinfile itself writes (a real ansible-playbook run of
the task shape the roles used before), so a fleet written by the older roles comes out unchanged.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import grp
import hashlib
import json
import os
import pwd
import signal
import stat

import pytest

from ansible_collections.fleetpki.mtls.plugins.module_utils._host import host_files
from ansible_collections.fleetpki.mtls.plugins.module_utils._host.host_files import HostFiles, HostFilesError
from ansible_collections.fleetpki.mtls.tests.unit.plugins.module_utils._host.faults import fail_rename_onto

# Built at run time: no private-key header is written literally in a tracked file.
KEY_TEXT = '-----BEGIN ' + 'PRIVATE KEY-----\nMIGHAgEAunitKEYbytesQ7zz\n-----END ' + 'PRIVATE KEY-----\n'
KEY_MARK = 'MIGHAgEAunitKEYbytesQ7zz'
CERT_TEXT = '-----BEGIN CERTIFICATE-----\nMIIBunitCERT\n-----END CERTIFICATE-----\n'
PASSWORD = 'Pw7-unit-redis-password-K2xq'
EXTRA_SECRET = 'Ex9-unit-extra-secret-Vb3m'
ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name

# The worker role's 14 TLS entries (roles/worker_tls/tasks/env.yml), in its order.
WORKER_ENTRIES = [
    ('WORKER_NAME', 'worker1'), ('REDIS_USERNAME', 'worker1'), ('REDIS_HOST', 'redis1'), ('REDIS_PORT', '6379'),
    ('REDIS_USE_TLS', 'true'), ('REDIS_TLS_CERT', '/etc/fleetpki/worker/client-cert.pem'),
    ('REDIS_TLS_KEY', '/etc/fleetpki/worker/client-key.pem'), ('REDIS_TLS_CA', '/etc/fleetpki/ca-bundle.pem'),
    ('PKI_CA_CERT', '/etc/fleetpki/ca-bundle.pem'), ('API_USE_TLS', 'true'), ('API_TLS_CA', '/etc/fleetpki/ca-bundle.pem'),
    ('API_TLS_CERT', '/etc/fleetpki/worker/client-cert.pem'), ('API_TLS_KEY', '/etc/fleetpki/worker/client-key.pem'),
    ('CALLBACK_API_URL', 'https://api1:8443/callback'),
]
WORKER_SECRETS = [('OPERATOR_TOKEN', EXTRA_SECRET), ('REDIS_HOST', 'redis-override'), ('REDIS_PASSWORD', PASSWORD)]

# What an operator's .env may hold before the roles touch it: comments, blank lines, their own settings, one of
# our keys twice (lineinfile replaces the last), a value with '=' in it, and no newline at the end.
OPERATOR_ENV = (b'# fleet worker settings\n\nLOG_LEVEL=debug\nREDIS_HOST=old-redis\n  # indented comment\n'
                b'REDIS_HOST=older-redis\nQUERY=a=b=c\nREDIS_PORTX=1\nexport FOO=bar\nTRAILING=no-newline')
SCENARIOS = {
    'new': None,
    'empty': b'',
    'operator': OPERATOR_ENV,
    'crlf': b'LOG_LEVEL=info\r\nREDIS_PORT=6380\r\n',
}


def old_role_tasks(run_module, path):
    """What the roles ran before, in-process with ansible-core's own modules: file state=touch, then lineinfile
    with regexp ^KEY= for each entry. ansible-test units keeps ansible.modules out of a collection's unit tests:
    skipped there, run by make unit."""
    file_module = pytest.importorskip('ansible.modules.file')
    lineinfile = pytest.importorskip('ansible.modules.lineinfile')
    touched = run_module(file_module, {'path': path, 'state': 'touch', 'mode': '0640',
                                       'modification_time': 'preserve', 'access_time': 'preserve'})
    assert touched.rc == 0, touched.result
    for key, value in WORKER_ENTRIES + WORKER_SECRETS:
        done = run_module(lineinfile, {'path': path, 'regexp': '^%s=' % key, 'line': '%s=%s' % (key, value),
                                       'mode': '0640'})
        assert done.rc == 0, done.result
    with open(path, 'rb') as handle:
        return handle.read()


def env_spec(path, mode='0640'):
    return {'path': str(path), 'owner': ME, 'group': MY_GROUP, 'mode': mode,
            'entries': dict(WORKER_ENTRIES), 'secret_entries': dict(WORKER_SECRETS)}


def run(check_mode=False, diff=True, **kwargs):
    return HostFiles(check_mode=check_mode, want_diff=diff, **kwargs).run()


def listing(directory):
    return sorted(os.listdir(str(directory)))


@pytest.mark.parametrize('scenario', ['new', 'empty', 'operator', 'crlf', 'rerun'])
def test_env_file_byte_identical_to_lineinfile(tmp_path, run_module, scenario):
    source = SCENARIOS.get(scenario)
    if scenario == 'rerun':  # a .env the old roles wrote, then set again by them
        (tmp_path / 'first').mkdir()
        source = old_role_tasks(run_module, str(tmp_path / 'first' / '.env'))
    (tmp_path / 'old').mkdir()
    old, path = tmp_path / 'old' / '.env', tmp_path / '.env'
    if source is not None:
        for target in (old, path):
            target.write_bytes(source)
            os.chmod(str(target), 0o640)
    expected = old_role_tasks(run_module, str(old))
    result = run(env_files=[env_spec(path)])
    assert path.read_bytes() == expected
    assert result['changed'] is (expected != source)
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o640
    # Set again: nothing to do.
    assert run(env_files=[env_spec(path)])['changed'] is False


def test_set_env_entries_keeps_every_other_line():
    out = host_files.set_env_entries(OPERATOR_ENV, [('REDIS_HOST', 'r1'), ('NEW', 'x')])
    assert out == OPERATOR_ENV.replace(b'REDIS_HOST=older-redis', b'REDIS_HOST=r1') + b'\nNEW=x\n'


def test_files_idempotent_and_reported(tmp_path):
    tls = tmp_path / 'tls'
    spec = dict(directories=[{'path': str(tls), 'owner': ME, 'group': MY_GROUP, 'mode': '0750'}],
                files=[{'path': str(tls / 'key.pem'), 'secret_content': KEY_TEXT, 'owner': ME, 'group': MY_GROUP,
                        'mode': '0600', 'backup': True},
                       {'path': str(tls / 'cert.pem'), 'content': CERT_TEXT, 'owner': ME, 'group': MY_GROUP,
                        'mode': '0644', 'backup': True}],
                checksums=[str(tls / 'cert.pem'), str(tmp_path / 'absent')])
    first = run(**spec)
    assert first['changed'] is True
    assert first['changed_paths'] == [str(tls), str(tls / 'key.pem'), str(tls / 'cert.pem')]
    assert first['backups'] == {}
    assert (tls / 'key.pem').read_text() == KEY_TEXT
    assert stat.S_IMODE(os.stat(str(tls)).st_mode) == 0o750
    assert stat.S_IMODE(os.stat(str(tls / 'key.pem')).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(str(tls / 'cert.pem')).st_mode) == 0o644
    assert first['checksums'] == {str(tls / 'cert.pem'): hashlib.sha256(CERT_TEXT.encode()).hexdigest(),
                                  str(tmp_path / 'absent'): 'missing'}
    before = os.stat(str(tls / 'key.pem'))
    second = run(**spec)
    assert (second['changed'], second['changed_paths'], second['backups']) == (False, [], {})
    assert second['diff'] == []
    assert os.stat(str(tls / 'key.pem')).st_ino == before.st_ino
    assert listing(tls) == ['cert.pem', 'key.pem']


def test_key_never_in_result_or_diff_and_backups_kept(tmp_path):
    key, cert = tmp_path / 'key.pem', tmp_path / 'cert.pem'
    key.write_text(KEY_TEXT.replace(KEY_MARK, 'OLDKEYold'))
    os.chmod(str(key), 0o600)
    cert.write_text('old cert\n')
    result = run(files=[{'path': str(key), 'secret_content': KEY_TEXT, 'mode': '0600', 'backup': True},
                        {'path': str(cert), 'content': CERT_TEXT, 'mode': '0644', 'backup': True}])
    text = json.dumps(result)
    assert KEY_MARK not in text and 'OLDKEYold' not in text and 'PRIVATE' not in text
    assert 'MIIBunitCERT' in text  # the public file's diff is there
    assert sorted(result['backups']) == [str(cert), str(key)]
    backup = result['backups'][str(key)]
    assert os.path.dirname(backup) == str(tmp_path) and os.path.basename(backup).startswith('key.pem.')
    assert backup.endswith('~')
    with open(backup) as handle:
        assert 'OLDKEYold' in handle.read()
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600


def test_secret_env_values_never_shown(tmp_path):
    path = tmp_path / '.env'
    path.write_bytes(b'REDIS_PASSWORD=Old-secret-value-123\n')
    result = run(env_files=[env_spec(path)])
    text = json.dumps(result)
    assert PASSWORD not in text and EXTRA_SECRET not in text and 'Old-secret-value-123' not in text
    assert 'REDIS_PASSWORD=%s' % host_files.SECRET_MARK in result['diff'][0]['after']
    assert 'REDIS_TLS_CERT=/etc/fleetpki/worker/client-cert.pem' in result['diff'][0]['after']


def test_check_mode_writes_nothing(tmp_path):
    tls = tmp_path / 'tls'
    env = tmp_path / '.env'
    env.write_bytes(OPERATOR_ENV)
    os.chmod(str(env), 0o600)
    spec = dict(directories=[{'path': str(tls), 'mode': '0750'}],
                files=[{'path': str(tls / 'key.pem'), 'secret_content': KEY_TEXT, 'mode': '0600'}],
                env_files=[env_spec(env)])
    result = run(check_mode=True, **spec)
    assert result['changed'] is True
    assert result['changed_paths'] == [str(tls), str(tls / 'key.pem'), str(env)]
    assert listing(tmp_path) == ['.env']
    assert env.read_bytes() == OPERATOR_ENV
    assert stat.S_IMODE(os.stat(str(env)).st_mode) == 0o600


def test_mode_only_change_keeps_the_file(tmp_path):
    cert = tmp_path / 'cert.pem'
    cert.write_text(CERT_TEXT)
    os.chmod(str(cert), 0o666)
    inode = os.stat(str(cert)).st_ino
    result = run(files=[{'path': str(cert), 'content': CERT_TEXT, 'mode': '0644', 'backup': True}])
    assert result['changed_paths'] == [str(cert)] and result['backups'] == {}
    assert 'mode 0666' in result['diff'][0]['before'] and 'mode 0644' in result['diff'][0]['after']
    info = os.stat(str(cert))
    assert (info.st_ino, stat.S_IMODE(info.st_mode)) == (inode, 0o644)


@pytest.mark.skipif(os.getuid() != 0, reason='changing a file owner needs root')
def test_owner_only_change_keeps_the_file(tmp_path):
    key = tmp_path / 'key.pem'
    key.write_text(KEY_TEXT)
    os.chmod(str(key), 0o600)
    inode = os.stat(str(key)).st_ino
    result = run(files=[{'path': str(key), 'secret_content': KEY_TEXT, 'owner': 'nobody', 'group': '0',
                         'mode': '0600'}])
    assert result['changed_paths'] == [str(key)]
    info = os.stat(str(key))
    assert (info.st_ino, info.st_uid, info.st_gid) == (inode, pwd.getpwnam('nobody').pw_uid, 0)
    assert KEY_MARK not in json.dumps(result)


def test_failed_write_leaves_no_temp_and_the_old_file(tmp_path, monkeypatch):
    cert = tmp_path / 'cert.pem'
    cert.write_text('old\n')

    def broken_fsync(fd):
        raise OSError(5, 'Input/output error')
    monkeypatch.setattr(host_files.os, 'fsync', broken_fsync)
    with pytest.raises(HostFilesError) as caught:
        run(files=[{'path': str(cert), 'content': CERT_TEXT, 'mode': '0644'}])
    assert str(cert) in str(caught.value) and 'Nothing was changed' in str(caught.value)
    assert listing(tmp_path) == ['cert.pem']
    assert cert.read_text() == 'old\n'


def test_temp_file_is_ours_alone_while_written(tmp_path, monkeypatch):
    """The temp is 0600 and this user's while the bytes go in; its mode, then its owner, come after (N3: an
    owner given the file earlier could change it while it is written)."""
    seen = []
    real_write = os.write

    def spying_write(fd, data):
        info = os.fstat(fd)
        seen.append((stat.S_IMODE(info.st_mode), info.st_uid))
        return real_write(fd, data)
    monkeypatch.setattr(host_files.os, 'write', spying_write)
    other = 'nobody' if os.getuid() == 0 else ME
    run(files=[{'path': str(tmp_path / 'key.pem'), 'secret_content': KEY_TEXT, 'owner': other, 'mode': '0600'},
               {'path': str(tmp_path / 'cert.pem'), 'content': CERT_TEXT, 'owner': other, 'mode': '0644'}])
    assert seen == [(0o600, os.geteuid()), (0o600, os.geteuid())]
    assert stat.S_IMODE(os.stat(str(tmp_path / 'cert.pem')).st_mode) == 0o644
    assert os.stat(str(tmp_path / 'cert.pem')).st_uid == pwd.getpwnam(other).pw_uid


@pytest.mark.parametrize('spec, needles', [
    ({'files': [{'path': '/nonexistent-fleetpki/x/cert.pem', 'content': 'x', 'mode': '0644'}]},
     ['/nonexistent-fleetpki/x/cert.pem', 'does not exist', 'list it under directories']),
    ({'files': [{'path': '/tmp/cert.pem', 'content': 'x', 'owner': 'no-such-user-fleetpki', 'mode': '0644'}]},
     ['/tmp/cert.pem', "'no-such-user-fleetpki' does not exist", 'create that user']),
    ({'directories': [{'path': '/tmp/fleetpki-d', 'group': 'no-such-group-fleetpki', 'mode': '0750'}]},
     ['/tmp/fleetpki-d', "'no-such-group-fleetpki' does not exist", 'create that group']),
    ({'files': [{'path': '/tmp/x.pem', 'content': 'x', 'mode': 'rw-'}]}, ['/tmp/x.pem', 'octal mode']),
])
def test_clear_errors(spec, needles):
    with pytest.raises(HostFilesError) as caught:
        run(**spec)
    for needle in needles:
        assert needle in str(caught.value)


def test_parent_listed_under_directories_is_fine_in_check_mode(tmp_path):
    tls = tmp_path / 'new' / 'tls'
    result = run(check_mode=True, directories=[{'path': str(tmp_path / 'new'), 'mode': '0755'},
                                               {'path': str(tls), 'mode': '0750'}],
                 files=[{'path': str(tls / 'cert.pem'), 'content': CERT_TEXT, 'mode': '0644'}])
    assert len(result['changed_paths']) == 3
    assert listing(tmp_path) == []


def test_a_directory_named_twice_alike_is_one(tmp_path):
    same = {'path': str(tmp_path / 'd'), 'mode': '0750'}
    assert run(directories=[same, dict(same)])['changed_paths'] == [str(tmp_path / 'd')]
    with pytest.raises(HostFilesError) as caught:
        run(directories=[same, dict(same, mode='0755')])
    assert 'named twice with different settings' in str(caught.value)


def test_read_returns_small_texts(tmp_path):
    stamp = tmp_path / 'stamp'
    stamp.write_text('abc def\n')
    result = run(read=[str(stamp), str(tmp_path / 'absent')])
    assert result['texts'] == {str(stamp): 'abc def\n', str(tmp_path / 'absent'): None}
    stamp.write_bytes(b'x' * (host_files.READ_LIMIT + 1))
    with pytest.raises(HostFilesError) as caught:
        run(read=[str(stamp)])
    assert str(stamp) in str(caught.value)


# --- A service user's directory: links, hard links, FIFOs (review B1) -------------------------------------------
# /etc/redis is redis:redis 2770 on Debian: the service user can put any name there at any moment. These plant the
# link before the run, or swap the file for a link right after the module looked at it (the race, made
# deterministic), and check root never reads, backs up, chmods or returns the file the link points at.

ROOT_ONLY = 'ROOT-ONLY-unit-secret-Hq2w\n'


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / 'victim-secret'
    path.write_text(ROOT_ONLY)
    os.chmod(str(path), 0o600)
    return path


def all_text_under(directory):
    texts = []
    for root, dummy, names in os.walk(str(directory)):
        for name in names:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                with open(path, errors='replace') as handle:
                    texts.append(handle.read())
    return '\n'.join(texts)


def swap_for_link_after_looking(monkeypatch, target, link_to):
    """Right after the module first stats ``target`` (by path or by name in a directory), replace it by a link."""
    state = {'done': False}
    real_stat, real_lstat = os.stat, os.lstat

    def swap(path):
        if not state['done'] and os.path.basename(str(path)) == target.name:
            state['done'] = True
            os.unlink(str(target))
            os.symlink(str(link_to), str(target))

    def stat_then_swap(path, *args, **kwargs):
        info = real_stat(path, *args, **kwargs)
        swap(path)
        return info

    def lstat_then_swap(path, *args, **kwargs):
        info = real_lstat(path, *args, **kwargs)
        swap(path)
        return info
    monkeypatch.setattr(host_files.os, 'stat', stat_then_swap)
    monkeypatch.setattr(host_files.os, 'lstat', lstat_then_swap)


def test_file_swapped_for_a_link_is_neither_read_nor_backed_up(tmp_path, victim, monkeypatch):
    tls = tmp_path / 'tls'
    tls.mkdir()
    cert = tls / 'redis-cert.pem'
    cert.write_text('old cert\n')
    swap_for_link_after_looking(monkeypatch, cert, victim)
    with pytest.raises(HostFilesError) as caught:
        run(files=[{'path': str(cert), 'content': 'new cert\n', 'mode': '0644', 'backup': True}])
    monkeypatch.undo()
    assert str(cert) in str(caught.value) and 'symbolic link' in str(caught.value)
    assert ROOT_ONLY not in all_text_under(tls) and ROOT_ONLY not in str(caught.value)
    assert listing(tls) == ['redis-cert.pem'] and os.path.islink(str(cert))


def test_mode_fix_never_follows_a_link(tmp_path, victim, monkeypatch):
    cert = tmp_path / 'tls-cert.pem'
    cert.write_text('new cert\n')
    os.chmod(str(cert), 0o600)
    swap_for_link_after_looking(monkeypatch, cert, victim)
    with pytest.raises(HostFilesError):
        run(files=[{'path': str(cert), 'content': 'new cert\n', 'mode': '0644'}])
    monkeypatch.undo()
    assert stat.S_IMODE(os.stat(str(victim)).st_mode) == 0o600


@pytest.mark.parametrize('kind', ['file', 'env', 'directory'])
def test_a_link_planted_before_the_run_is_refused_and_nothing_written(tmp_path, victim, kind):
    """Refused (not replaced): a .env's other lines live in the file the link names, and a link where root
    writes keys is a sign to look at, not to hide. Checked before the first write: the other file stays absent."""
    target = tmp_path / 'target'
    os.symlink(str(victim), str(target))
    spec = {'files': [{'path': str(tmp_path / 'first.pem'), 'content': CERT_TEXT, 'mode': '0644'}]}
    if kind == 'file':
        spec['files'].append({'path': str(target), 'secret_content': KEY_TEXT, 'mode': '0640', 'backup': True})
    elif kind == 'env':
        spec['env_files'] = [{'path': str(target), 'mode': '0644', 'entries': {'REDIS_HOST': 'r1'}}]
    else:
        spec['directories'] = [{'path': str(target), 'mode': '0755'}]
    with pytest.raises(HostFilesError) as caught:
        run(**spec)
    assert str(target) in str(caught.value) and 'remove the link' in str(caught.value)
    assert victim.read_text() == ROOT_ONLY and stat.S_IMODE(os.stat(str(victim)).st_mode) == 0o600
    assert listing(tmp_path) == ['target', 'victim-secret']


def test_a_directory_a_service_user_swapped_for_a_link_is_refused(tmp_path):
    """/etc/redis (writable by redis) with tls a link to a directory of root's: nothing is written there."""
    service_dir, elsewhere = tmp_path / 'etc-redis', tmp_path / 'root-only'
    service_dir.mkdir()
    elsewhere.mkdir()
    os.chmod(str(service_dir), 0o2770 | 0o007)  # writable by others than root
    os.symlink(str(elsewhere), str(service_dir / 'tls'))
    with pytest.raises(HostFilesError) as caught:
        run(files=[{'path': str(service_dir / 'tls' / 'key.pem'), 'secret_content': KEY_TEXT, 'mode': '0600'}])
    assert str(service_dir / 'tls') in str(caught.value) and 'symbolic link' in str(caught.value)
    assert listing(elsewhere) == []


def test_a_link_only_root_could_place_is_followed(tmp_path):
    """As /var/run -> /run: a link of root's in a directory only root writes cannot be swapped by anyone else."""
    real = tmp_path / 'run'
    real.mkdir()
    os.chmod(str(tmp_path), 0o755)
    os.symlink('run', str(tmp_path / 'var-run'))
    result = run(files=[{'path': str(tmp_path / 'var-run' / 'cert.pem'), 'content': CERT_TEXT, 'mode': '0644'}],
                 checksums=[str(tmp_path / 'var-run' / 'cert.pem')])
    assert (real / 'cert.pem').read_text() == CERT_TEXT
    assert result['checksums'][str(tmp_path / 'var-run' / 'cert.pem')] == hashlib.sha256(CERT_TEXT.encode()).hexdigest()


def test_a_hard_link_is_refused(tmp_path, victim):
    cert = tmp_path / 'cert.pem'
    os.link(str(victim), str(cert))
    with pytest.raises(HostFilesError) as caught:
        run(files=[{'path': str(cert), 'content': CERT_TEXT, 'mode': '0644', 'backup': True}])
    assert str(cert) in str(caught.value) and 'hard links' in str(caught.value)
    assert victim.read_text() == ROOT_ONLY and stat.S_IMODE(os.stat(str(victim)).st_mode) == 0o600
    assert listing(tmp_path) == ['cert.pem', 'victim-secret']


@pytest.fixture
def alarm():
    """A FIFO makes a blocking open hang: fail the test after a few seconds instead."""
    def timeout(signum, frame):
        raise AssertionError('the module hung on a FIFO')
    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize('where', ['files', 'read', 'checksums'])
def test_a_fifo_is_refused_not_waited_on(tmp_path, alarm, where):
    fifo = tmp_path / 'stamp'
    os.mkfifo(str(fifo))
    spec = {'read': [str(fifo)]} if where == 'read' else {'checksums': [str(fifo)]}
    if where == 'files':
        spec = {'files': [{'path': str(fifo), 'content': CERT_TEXT, 'mode': '0644'}]}
    with pytest.raises(HostFilesError) as caught:
        run(**spec)
    assert str(fifo) in str(caught.value) and 'FIFO' in str(caught.value)


@pytest.mark.parametrize('where', ['read', 'checksums'])
def test_read_and_checksums_never_follow_a_link(tmp_path, victim, where):
    stamp = tmp_path / '.fleetpki-loaded'
    os.symlink(str(victim), str(stamp))
    with pytest.raises(HostFilesError) as caught:
        run(**{where: [str(stamp)]})
    assert str(stamp) in str(caught.value) and ROOT_ONLY not in str(caught.value)


def test_a_file_over_the_size_limit_is_refused(tmp_path):
    """N2: the old content is read to compare and back up; a huge file is refused, not read into memory."""
    big = tmp_path / 'ca-bundle.pem'
    big.write_bytes(b'x' * (host_files.CONTENT_LIMIT + 1))
    with pytest.raises(HostFilesError) as caught:
        run(files=[{'path': str(big), 'content': CERT_TEXT, 'mode': '0644'}])
    assert str(big) in str(caught.value) and 'larger than' in str(caught.value)


@pytest.mark.skipif(os.getuid() != 0, reason='giving a file to another user needs root')
def test_backup_of_a_secret_is_roots_alone(tmp_path):
    """N6: the old key's backup is 0600 and root's, whatever the key's own mode and owner were."""
    key = tmp_path / 'key.pem'
    key.write_text('old key\n')
    os.chmod(str(key), 0o640)
    os.chown(str(key), pwd.getpwnam('nobody').pw_uid, 0)
    result = run(files=[{'path': str(key), 'secret_content': KEY_TEXT, 'owner': 'nobody', 'mode': '0640',
                         'backup': True}])
    info = os.stat(result['backups'][str(key)])
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o600, 0)


# --- A failure part way (review B2) --------------------------------------------------------------------------------

def test_a_target_that_cannot_be_written_is_found_before_any_write(tmp_path):
    key, cert = tmp_path / 'key.pem', tmp_path / 'cert.pem'
    key.write_text('old key\n')
    cert.mkdir()
    with pytest.raises(HostFilesError) as caught:
        run(files=[{'path': str(key), 'secret_content': KEY_TEXT, 'mode': '0600', 'backup': True},
                   {'path': str(cert), 'content': CERT_TEXT, 'mode': '0644'}])
    assert str(cert) in str(caught.value) and 'is a directory' in str(caught.value)
    assert key.read_text() == 'old key\n' and listing(tmp_path) == ['cert.pem', 'key.pem']


def test_a_write_failing_part_way_reports_what_was_done(tmp_path, monkeypatch):
    key, cert = tmp_path / 'key.pem', tmp_path / 'cert.pem'
    key.write_text('old key\n')
    cert.write_text('old cert\n')
    fail_rename_onto(monkeypatch, 'cert.pem', OSError(30, 'Read-only file system'))
    files = HostFiles(files=[{'path': str(key), 'secret_content': KEY_TEXT, 'mode': '0600', 'backup': True},
                             {'path': str(cert), 'content': CERT_TEXT, 'mode': '0644'}])
    with pytest.raises(HostFilesError) as caught:
        files.run()
    monkeypatch.undo()
    assert str(cert) in str(caught.value) and 'Read-only file system' in str(caught.value)
    assert files.changed_paths == [str(key)] and list(files.backups) == [str(key)]
    assert key.read_text() == KEY_TEXT and cert.read_text() == 'old cert\n'
    with open(files.backups[str(key)]) as handle:
        assert handle.read() == 'old key\n'
    assert not [name for name in listing(tmp_path) if name.startswith(host_files.TMP_PREFIX)]


# --- .env injection (review S1) ------------------------------------------------------------------------------------

@pytest.mark.parametrize('separator', ['\n', '\r', '\x0b', '\x0c', '\x1c', '\x1d', '\x1e', '\x85', '\u2028', '\u2029',
                                       '\x00', '\x1b', '\t', '\x7f'])
@pytest.mark.parametrize('secret', [True, False])
def test_a_value_cannot_inject_a_line(tmp_path, separator, secret):
    env = tmp_path / '.env'
    env.write_bytes(b'REDIS_HOST=redis1\n')
    value = 'pw' + separator + 'REDIS_HOST=evil.example'
    entries = {'secret_entries' if secret else 'entries': {'REDIS_PASSWORD': value}}
    with pytest.raises(HostFilesError) as caught:
        run(env_files=[dict({'path': str(env), 'mode': '0640'}, **entries)])
    assert str(env) in str(caught.value) and 'REDIS_PASSWORD' in str(caught.value)
    assert 'evil.example' not in str(caught.value)
    assert env.read_bytes() == b'REDIS_HOST=redis1\n'


@pytest.mark.parametrize('key', ['', '1ABC', 'A-B', 'A B', 'A=B', 'ABC\n', 'ABC\u2028', ' ABC', 'ÄBC'])
def test_a_key_must_be_a_variable_name(tmp_path, key):
    with pytest.raises(HostFilesError) as caught:
        run(env_files=[{'path': str(tmp_path / '.env'), 'mode': '0640', 'entries': {key: 'x'}}])
    assert 'not a variable name' in str(caught.value)
    assert listing(tmp_path) == []


# --- Temps a killed run left (review S2) ---------------------------------------------------------------------------

def test_a_backup_an_interrupted_run_left_is_removed_by_the_next_run(tmp_path):
    """A run stopped between installing and the role's cleanup leaves the previous key's backup: the next call
    that writes in that directory removes it, whether or not it replaces the file again; check mode keeps it."""
    key, cert = tmp_path / 'key.pem', tmp_path / 'cert.pem'
    key.write_text(KEY_TEXT.replace(KEY_MARK, 'OLDKEYold'))
    os.chmod(str(key), 0o600)
    first = run(files=[{'path': str(key), 'secret_content': KEY_TEXT, 'mode': '0600', 'backup': True}])
    left = first['backups'][str(key)]
    assert os.path.exists(left)  # the role was interrupted: nobody removed it
    spec = {'files': [{'path': str(key), 'secret_content': KEY_TEXT, 'mode': '0600', 'backup': True},
                      {'path': str(cert), 'content': CERT_TEXT, 'mode': '0644'}]}
    run(check_mode=True, **spec)
    assert os.path.exists(left)
    second = run(**spec)
    assert second['backups'] == {} and not os.path.exists(left)
    assert listing(tmp_path) == ['cert.pem', 'key.pem']


def test_stale_temps_of_this_module_are_removed(tmp_path, victim):
    tls = tmp_path / 'tls'
    tls.mkdir()
    stale = tls / (host_files.TMP_PREFIX + 'key.pem.1a2b3c')
    stale.write_text(KEY_TEXT)
    os.symlink(str(victim), str(tls / (host_files.TMP_PREFIX + 'link')))
    (tls / '.operator-file').write_text('kept\n')
    spec = {'files': [{'path': str(tls / 'cert.pem'), 'content': CERT_TEXT, 'mode': '0644'}]}
    run(check_mode=True, **spec)
    assert stale.exists()
    result = run(**spec)
    assert result['changed_paths'] == [str(tls / 'cert.pem')]
    assert listing(tls) == ['.fleetpki-tmp-link', '.operator-file', 'cert.pem']
    assert victim.read_text() == ROOT_ONLY


def installed_with_backups(tmp_path):
    """A key and a certificate replaced with backup: true, as a role's install step leaves them."""
    key, cert = tmp_path / 'key.pem', tmp_path / 'cert.pem'
    key.write_text(KEY_TEXT.replace(KEY_MARK, 'OLDKEYold'))
    cert.write_text('old cert\n')
    os.chmod(str(key), 0o600)
    result = run(files=[{'path': str(key), 'secret_content': KEY_TEXT, 'mode': '0600', 'backup': True},
                        {'path': str(cert), 'content': CERT_TEXT, 'mode': '0644', 'backup': True}])
    assert sorted(result['backups']) == [str(cert), str(key)]
    return key, cert


def test_restore_puts_the_backups_back_and_removes_them(tmp_path):
    """A role's rollback in one call: the previous files back with their mode, the backups gone."""
    key, cert = installed_with_backups(tmp_path)
    spec = {'restore': [{'path': str(key), 'owner': ME, 'group': MY_GROUP, 'mode': '0600'},
                        {'path': str(cert), 'owner': ME, 'group': MY_GROUP, 'mode': '0644'},
                        {'path': str(tmp_path / 'no-backup.pem'), 'mode': '0644'}]}
    planned = run(check_mode=True, **spec)
    assert planned['changed_paths'] == [str(key), str(cert)] and key.read_text() == KEY_TEXT
    result = run(**spec)
    assert result['changed_paths'] == [str(key), str(cert)]
    assert result['removed_backups'] == [str(key) + host_files.BACKUP_SUFFIX, str(cert) + host_files.BACKUP_SUFFIX]
    assert 'OLDKEYold' in key.read_text() and cert.read_text() == 'old cert\n'
    assert stat.S_IMODE(os.stat(str(key)).st_mode) == 0o600
    assert KEY_MARK not in json.dumps(result) and 'OLDKEYold' not in json.dumps(result)
    assert listing(tmp_path) == ['cert.pem', 'key.pem']
    # Nothing left to restore: nothing to do.
    assert run(**spec)['changed'] is False


def test_remove_backups_leaves_no_old_key(tmp_path):
    key, cert = installed_with_backups(tmp_path)
    spec = {'remove_backups': [str(key), str(cert), str(tmp_path / 'absent' / 'x.pem')]}
    assert run(check_mode=True, **spec)['changed'] is True and len(listing(tmp_path)) == 4
    result = run(**spec)
    assert result['removed_backups'] == [str(key) + host_files.BACKUP_SUFFIX, str(cert) + host_files.BACKUP_SUFFIX]
    assert listing(tmp_path) == ['cert.pem', 'key.pem'] and key.read_text() == KEY_TEXT
    assert run(**spec)['changed'] is False


def test_restore_never_reads_a_backup_that_is_a_link(tmp_path, victim):
    """A backup name swapped for a link to a root-only file is refused: the file is not copied into the target."""
    tls = tmp_path / 'tls'
    tls.mkdir()
    key = tls / 'key.pem'
    key.write_text(KEY_TEXT)
    os.symlink(str(victim), str(key) + host_files.BACKUP_SUFFIX)
    with pytest.raises(HostFilesError, match='symbolic link'):
        run(restore=[{'path': str(key), 'mode': '0644'}])
    assert key.read_text() == KEY_TEXT and ROOT_ONLY not in all_text_under(tls)
    # Removing it removes the link, never what it points at.
    run(remove_backups=[str(key)])
    assert listing(tls) == ['key.pem'] and victim.read_text() == ROOT_ONLY


def test_a_stamp_written_beside_the_backups_and_their_removal_in_one_call(tmp_path):
    """service.yml's one call: the stamp of what the service loaded, in the same directory, and the backups gone."""
    key, cert = installed_with_backups(tmp_path)
    result = run(files=[{'path': str(tmp_path / '.fleetpki-loaded'), 'content': 'digests\n', 'mode': '0644'}],
                 remove_backups=[str(key), str(cert)])
    assert result['changed_paths'] == [str(tmp_path / '.fleetpki-loaded')]
    assert result['removed_backups'] == [str(key) + host_files.BACKUP_SUFFIX, str(cert) + host_files.BACKUP_SUFFIX]
    assert listing(tmp_path) == ['.fleetpki-loaded', 'cert.pem', 'key.pem']


def test_the_copy_modules_backups_of_a_managed_file_are_removed(tmp_path):
    """The roles before tls_files kept backups with ansible's copy naming (<file>.<pid>.<date>@<time>~) and could
    leave them (previous private keys): the first call managing that file with backup: true removes them; other
    files' and an operator's are kept."""
    key = tmp_path / 'key.pem'
    key.write_text(KEY_TEXT)
    os.chmod(str(key), 0o600)
    for name in ('key.pem.4242.2025-01-01@00:00:00~', 'key.pem.17.2026-11-30@07:31:40~'):
        (tmp_path / name).write_text('OLDKEYold\n')
    kept = ['cert.pem.4242.2025-01-01@00:00:00~', 'key.pem.notes~', 'key.pem.4242.2025-01-01~']
    for name in kept:
        (tmp_path / name).write_text('kept\n')
    result = run(files=[{'path': str(key), 'secret_content': KEY_TEXT, 'mode': '0600', 'backup': True}])
    assert result['changed'] is False
    assert listing(tmp_path) == sorted(kept + ['key.pem'])


def test_a_key_is_never_open_to_its_new_group_while_its_owner_changes(tmp_path, monkeypatch):
    """Owner and mode fixed in place: the mode is narrowed before the chown, so a key going from root 0640 to
    nobody:nogroup 0600 is never nogroup-readable, even for an instant."""
    key = tmp_path / 'key.pem'
    key.write_text(KEY_TEXT)
    os.chmod(str(key), 0o640)
    modes_at_chown = []
    real_fchown = os.fchown

    def fchown(fd, uid, gid):
        modes_at_chown.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_fchown(fd, uid, gid)
    monkeypatch.setattr(os, 'fchown', fchown)
    nobody = pwd.getpwnam('nobody')
    result = run(files=[{'path': str(key), 'secret_content': KEY_TEXT, 'owner': 'nobody',
                         'group': grp.getgrgid(nobody.pw_gid).gr_name, 'mode': '0600'}])
    assert result['changed_paths'] == [str(key)]
    assert modes_at_chown and all(mode & 0o077 == 0 for mode in modes_at_chown), modes_at_chown
    assert (os.stat(str(key)).st_uid, stat.S_IMODE(os.stat(str(key)).st_mode)) == (nobody.pw_uid, 0o600)


@pytest.mark.parametrize('value, why', [(None, 'no value'), ({'a': 1}, 'not a single value'), ([1], 'not a single value'),
                                        (' padded', 'space'), ('padded\t', 'space')])
def test_a_value_must_be_one_plain_value(tmp_path, value, why):
    """An unset variable (None), a dict or a list would be written as Python's repr; spaces around a value are
    stripped by .env readers, so the service would use another value than the one written and compared."""
    env = tmp_path / '.env'
    with pytest.raises(HostFilesError) as caught:
        run(env_files=[{'path': str(env), 'mode': '0600', 'entries': {'REDIS_HOST': value}}])
    assert 'REDIS_HOST' in str(caught.value) and why in str(caught.value)
    assert not env.exists()


def test_a_call_for_another_file_keeps_the_backups_a_rollback_needs(tmp_path):
    """redis_tls writes the key and certificate (with backups), then redis.conf, then reloads: with the TLS files
    and redis.conf in one directory, the redis.conf call must not remove the backups the rollback needs. Only the
    backups of a call's own targets are stale to it."""
    key, cert = installed_with_backups(tmp_path)
    run(files=[{'path': str(tmp_path / 'redis.conf'), 'secret_content': 'port 0\n', 'mode': '0640'}])
    assert sorted(listing(tmp_path)) == sorted(['cert.pem', 'cert.pem' + host_files.BACKUP_SUFFIX, 'key.pem',
                                                'key.pem' + host_files.BACKUP_SUFFIX, 'redis.conf'])
    back = run(restore=[{'path': str(key), 'mode': '0600'}, {'path': str(cert), 'mode': '0644'}])
    assert back['changed_paths'] == [str(key), str(cert)] and 'OLDKEYold' in key.read_text()


def test_restore_refuses_a_backup_someone_else_wrote(tmp_path):
    """A backup name planted by another user (a service user who can write or rename the directory) is not a backup
    of this module's: never copied into the target."""
    key = tmp_path / 'key.pem'
    key.write_text(KEY_TEXT)
    planted = tmp_path / ('key.pem' + host_files.BACKUP_SUFFIX)
    planted.write_text('planted\n')
    os.chown(str(planted), pwd.getpwnam('nobody').pw_uid, -1)
    with pytest.raises(HostFilesError, match='not a backup this module made'):
        run(restore=[{'path': str(key), 'mode': '0600'}])
    assert key.read_text() == KEY_TEXT
