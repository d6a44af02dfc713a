# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pki_backup backend: real PKI directories, real archives, real damage."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import gzip
import io
import os
import struct
import tarfile

import pytest

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import backup, crypto
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.backup import BackupManager

PASSPHRASE = 'Pz7-unit-passphrase-q9XK'
WRONG_PASSPHRASE = 'Wr0ng-unit-passphrase-7TTb'
# Files of the pki_dir fixture a backup holds: CA key, cert, metadata.json; 2 x (key, cert, bundle); ca-bundle.pem,
# export/ca-bundle.pem, rollover.json.
FILES = 12


pytestmark = pytest.mark.usefixtures('fast_scrypt')


@pytest.fixture
def pki_dir(tmp_path, pki):
    """A PKI directory the way the playbooks lay it out, plus the things a backup must leave out."""
    root = tmp_path / 'inv' / 'pki'
    pki.make_ca(str(root / 'ca'))
    pki.issue(str(root / 'ca'), [{'name': 'redis-r1', 'dns': ['r1.example.com']},
                                 {'name': 'worker-w1', 'dns': ['w1.example.com'], 'usage': 'client'}],
              default_dir=str(root / 'issued'))
    pki.write(root / 'ca-bundle.pem', pki.read(root / 'ca' / 'ca-cert.pem'), 0o644)
    (root / 'export').mkdir(mode=0o750)
    os.chmod(str(root / 'export'), 0o750)
    pki.write(root / 'export' / 'ca-bundle.pem', pki.read(root / 'ca' / 'ca-cert.pem'), 0o640)
    pki.write(root / 'rollover.json', b'{}', 0o644)
    # Left out of a backup: temp files of killed runs, lock files, metrics.
    pki.write(root / 'issued' / '.fleetpki-tmp-worker-w1-key.pem.x1y2', b'half a key', 0o600)
    pki.write(root / 'scheduled.lock', b'', 0o644)
    (root / 'metrics').mkdir()
    pki.write(root / 'metrics' / 'expiry.prom', b'fleetpki_days 3\n', 0o644)
    return str(root)


def archive_path(tmp_path):
    return str(tmp_path / 'inv' / 'backups' / 'pki.fpkb')


def run(state, pki_dir, archive, passphrase=PASSPHRASE, force=False, check_mode=False):
    manager = BackupManager(state, pki_dir, archive, passphrase, force=force)
    manager.plan()
    return manager, (manager.result() if check_mode else manager.apply())


def without_excluded(state):
    """A snapshot without the root and the entries a backup leaves out."""
    return dict((rel, value) for rel, value in state.items()
                if rel != '.' and not rel.startswith('metrics') and rel != 'scheduled.lock'
                and '.fleetpki-tmp-' not in rel)


def raw_archive(members, passphrase=PASSPHRASE):
    """An archive built by hand: ``members`` are TarInfo objects (with data for regular files)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w', format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return backup.encrypt(gzip.compress(buffer.getvalue()), passphrase)


def member(name, kind=tarfile.REGTYPE, data=b'x', mode=0o644, linkname=''):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.linkname = linkname
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


# -- backup ---------------------------------------------------------------------------------------------------------

def test_round_trip_keeps_names_modes_and_bytes(tmp_path, pki, pki_dir):
    archive = archive_path(tmp_path)
    manager, result = run('backup', pki_dir, archive)
    assert result['changed'] is True and result['action'] == 'create'
    assert result['files'] == FILES
    assert FILES == len([v for v in without_excluded(pki.snapshot(pki_dir)).values() if v[0] == 'file'])
    assert result['ca_fingerprint_sha256'] == crypto.fingerprint_sha256(pki.load_cert(os.path.join(pki_dir, 'ca',
                                                                                                   'ca-cert.pem')))
    assert pki.mode_of(archive) == 0o600
    assert pki.mode_of(os.path.dirname(archive)) == 0o700
    assert not manager.warnings

    target = str(tmp_path / 'elsewhere' / 'pki')
    dummy, restored = run('restore', target, archive)
    assert restored['changed'] is True and restored['action'] == 'create'
    assert restored['moved_aside'] is None
    assert restored['ca_fingerprint_sha256'] == result['ca_fingerprint_sha256']
    assert without_excluded(pki.snapshot(target)) == without_excluded(pki.snapshot(pki_dir))
    assert pki.mode_of(target) == 0o700
    assert not os.path.exists(os.path.join(target, 'metrics'))
    assert not os.path.exists(os.path.join(target, 'scheduled.lock'))
    # no staging directory left beside it
    assert os.listdir(str(tmp_path / 'elsewhere')) == ['pki']


def test_archive_holds_no_plaintext(tmp_path, pki_dir):
    archive = archive_path(tmp_path)
    run('backup', pki_dir, archive)
    with open(archive, 'rb') as handle:
        data = handle.read()
    assert data.startswith(backup.MAGIC)
    for needle in (b'PRIVATE KEY', b'BEGIN', b'ca-key.pem', b'metadata', PASSPHRASE.encode()):
        assert needle not in data


def test_default_scrypt_cost_is_recorded_and_read(tmp_path, pki_dir, monkeypatch):
    monkeypatch.setattr(backup, 'SCRYPT_N_LOG2', 17)
    archive = archive_path(tmp_path)
    run('backup', pki_dir, archive)
    with open(archive, 'rb') as handle:
        fields = backup.HEADER.unpack(handle.read(backup.HEADER.size))
    assert fields[:5] == (b'FLEETPKI', 1, 17, 8, 1)
    monkeypatch.setattr(backup, 'SCRYPT_N_LOG2', 12)  # reading takes the cost from the header
    dummy, result = run('verify', pki_dir, archive)
    assert result['files'] == FILES


def test_backup_is_idempotent_and_content_deterministic(tmp_path, pki, pki_dir):
    archive = archive_path(tmp_path)
    run('backup', pki_dir, archive)
    first = pki.read(archive)
    assert backup.pack(backup.collect(pki_dir)) == backup.pack(backup.collect(pki_dir))

    # mtime is not content; temp, lock and metrics files are not either
    os.utime(os.path.join(pki_dir, 'ca', 'metadata.json'), (1, 1))
    pki.write(os.path.join(pki_dir, 'metrics', 'expiry.prom'), b'fleetpki_days 2\n')
    pki.write(os.path.join(pki_dir, '.fleetpki-tmp-x'), b'junk', 0o600)
    again, result = run('backup', pki_dir, archive)
    assert result['changed'] is False and result['action'] == 'none'
    assert pki.read(archive) == first

    # bytes, modes and names are content
    os.chmod(os.path.join(pki_dir, 'rollover.json'), 0o600)
    dummy, result = run('backup', pki_dir, archive)
    assert result['changed'] is True and result['action'] == 'update'
    assert pki.read(archive) != first
    assert run('backup', pki_dir, archive)[1]['changed'] is False

    pki.write(os.path.join(pki_dir, 'rollover.json'), b'{"phase": 1}', 0o600)
    assert run('backup', pki_dir, archive)[1]['action'] == 'update'
    os.rename(os.path.join(pki_dir, 'rollover.json'), os.path.join(pki_dir, 'rollover2.json'))
    assert run('backup', pki_dir, archive)[1]['action'] == 'update'
    assert run('backup', pki_dir, archive)[1]['changed'] is False


def test_archive_mode_is_fixed_without_rewriting(tmp_path, pki, pki_dir):
    archive = archive_path(tmp_path)
    run('backup', pki_dir, archive)
    before = pki.read(archive)
    os.chmod(archive, 0o644)
    dummy, result = run('backup', pki_dir, archive)
    assert result['changed'] is True and result['action'] == 'fix_mode'
    assert pki.mode_of(archive) == 0o600 and pki.read(archive) == before


def test_tar_members_are_normalised(pki_dir):
    tar = tarfile.open(fileobj=io.BytesIO(backup.build_tar(backup.collect(pki_dir))))
    members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=backup.sort_key)
    assert 'ca' in names and 'ca/ca-key.pem' in names
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == '' and m.gname == '' for m in members)
    assert not [n for n in names if n.startswith('metrics') or n.endswith('.lock') or '.fleetpki-tmp-' in n]
    modes = dict((m.name, m.mode) for m in members)
    assert modes['ca/ca-key.pem'] == 0o600 and modes['ca'] == 0o700 and modes['export'] == 0o750


def test_backup_check_mode_writes_nothing(tmp_path, pki, pki_dir):
    archive = archive_path(tmp_path)
    before = pki.snapshot(str(tmp_path))
    manager, result = run('backup', pki_dir, archive, check_mode=True)
    assert result['changed'] is True and result['action'] == 'create' and result['files'] == FILES
    assert pki.snapshot(str(tmp_path)) == before
    assert not os.path.exists(os.path.dirname(archive))


def test_backup_refuses_links_and_an_archive_inside_the_pki_dir(tmp_path, pki, pki_dir):
    pki.expect_error(lambda: run('backup', pki_dir, os.path.join(pki_dir, 'backups', 'x.fpkb')), str(tmp_path),
                     'is inside pki_dir')
    os.symlink('ca/ca-cert.pem', os.path.join(pki_dir, 'current-ca.pem'))
    pki.expect_error(lambda: run('backup', pki_dir, archive_path(tmp_path)), str(tmp_path),
                     'current-ca.pem is a symbolic link')


def test_backup_never_overwrites_an_archive_it_cannot_read(tmp_path, pki, pki_dir):
    archive = archive_path(tmp_path)
    run('backup', pki_dir, archive)
    pki.expect_error(lambda: run('backup', pki_dir, archive, passphrase=WRONG_PASSPHRASE), str(tmp_path),
                     archive, 'passphrase is wrong', 'Choose another archive path')
    foreign = str(tmp_path / 'inv' / 'backups' / 'notes.txt')
    pki.write(foreign, b'someone else\'s file')
    pki.expect_error(lambda: run('backup', pki_dir, foreign), str(tmp_path), 'not a fleetpki backup archive')


def test_empty_passphrase_is_refused_and_a_short_one_warned(tmp_path, pki, pki_dir):
    pki.expect_error(lambda: run('backup', pki_dir, archive_path(tmp_path), passphrase=''), str(tmp_path),
                     'passphrase is empty')
    manager, dummy = run('backup', pki_dir, archive_path(tmp_path), passphrase='short')
    assert [w for w in manager.warnings if 'shorter than 12' in w]


def test_missing_pki_dir_is_an_error(tmp_path, pki):
    pki.expect_error(lambda: run('backup', str(tmp_path / 'nope'), archive_path(tmp_path)), str(tmp_path),
                     'nothing to back up')


# -- verify ---------------------------------------------------------------------------------------------------------

def test_verify_lists_and_changes_nothing(tmp_path, pki, pki_dir):
    archive = archive_path(tmp_path)
    made = run('backup', pki_dir, archive)[1]
    before = pki.snapshot(str(tmp_path))
    dummy, result = run('verify', str(tmp_path / 'unused'), archive)
    assert result['changed'] is False and result['files'] == FILES
    assert result['ca_fingerprint_sha256'] == made['ca_fingerprint_sha256']
    assert 'ca/ca-key.pem' in result['members'] and 'issued/redis-r1-cert.pem' in result['members']
    assert pki.snapshot(str(tmp_path)) == before


# -- damage ---------------------------------------------------------------------------------------------------------

def damaged(tmp_path, pki, pki_dir, change):
    archive = archive_path(tmp_path)
    if os.path.exists(archive):
        os.unlink(archive)
    run('backup', pki_dir, archive)
    data = bytearray(pki.read(archive))
    data = change(data)
    pki.write(archive, bytes(data), 0o600)
    return archive


@pytest.mark.parametrize('state', ['verify', 'restore'])
def test_wrong_passphrase(tmp_path, pki, pki_dir, state):
    archive = archive_path(tmp_path)
    run('backup', pki_dir, archive)
    target = str(tmp_path / 'restored')
    message = pki.expect_error(lambda: run(state, target, archive, passphrase=WRONG_PASSPHRASE), str(tmp_path),
                               archive, 'passphrase is wrong', 'Nothing was changed')
    assert 'corrupted' not in message
    assert not os.path.exists(target)


def test_tampered_ciphertext_byte(tmp_path, pki, pki_dir):
    def flip(data):
        data[backup.HEADER.size + 40] ^= 0x01
        return data
    archive = damaged(tmp_path, pki, pki_dir, flip)
    target = str(tmp_path / 'restored')
    pki.expect_error(lambda: run('restore', target, archive), str(tmp_path), archive, 'is corrupted',
                     'another copy')
    assert not os.path.exists(target)


def test_tampered_tag_and_header(tmp_path, pki, pki_dir):
    def flip_last(data):
        data[-1] ^= 0x80
        return data
    archive = damaged(tmp_path, pki, pki_dir, flip_last)
    pki.expect_error(lambda: run('verify', pki_dir, archive), str(tmp_path), 'is corrupted')

    def flip_nonce(data):
        data[8 + 4 + 16] ^= 0x01  # first nonce byte: authenticated as associated data
        return data
    archive = damaged(tmp_path, pki, pki_dir, flip_nonce)
    pki.expect_error(lambda: run('verify', pki_dir, archive), str(tmp_path), 'is corrupted')

    def flip_magic(data):
        data[0] ^= 0x01
        return data
    archive = damaged(tmp_path, pki, pki_dir, flip_magic)
    pki.expect_error(lambda: run('verify', pki_dir, archive), str(tmp_path), 'not a fleetpki backup archive')

    def newer_version(data):
        data[8] = 9
        return data
    archive = damaged(tmp_path, pki, pki_dir, newer_version)
    pki.expect_error(lambda: run('verify', pki_dir, archive), str(tmp_path), 'format version 9')

    def huge_cost(data):
        data[9] = 30
        return data
    archive = damaged(tmp_path, pki, pki_dir, huge_cost)
    pki.expect_error(lambda: run('verify', pki_dir, archive), str(tmp_path), 'damaged header')


@pytest.mark.parametrize('keep', [10, backup.HEADER.size - 1, -1, -100])
def test_truncated_archive(tmp_path, pki, pki_dir, keep):
    archive = damaged(tmp_path, pki, pki_dir, lambda data: data[:keep])
    target = str(tmp_path / 'restored')
    pki.expect_error(lambda: run('restore', target, archive), str(tmp_path), archive, 'is truncated',
                     'copy the archive again')
    assert not os.path.exists(target)


def test_appended_bytes_and_empty_file(tmp_path, pki, pki_dir):
    archive = damaged(tmp_path, pki, pki_dir, lambda data: data + b'\n')
    pki.expect_error(lambda: run('verify', pki_dir, archive), str(tmp_path), 'is damaged', '1 bytes more')
    archive = damaged(tmp_path, pki, pki_dir, lambda data: b'')
    pki.expect_error(lambda: run('verify', pki_dir, archive), str(tmp_path), 'not a fleetpki backup archive')


def test_missing_archive(tmp_path, pki):
    pki.expect_error(lambda: run('restore', str(tmp_path / 'pki'), str(tmp_path / 'none.fpkb')), str(tmp_path),
                     'does not exist', 'pki_backup_archive')


# -- unsafe members -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('bad, why', [
    (member('../evil'), "'..' in its path"),
    (member('ca/../../evil'), "'..' in its path"),
    (member('/tmp/evil-abs'), 'absolute path'),
    (member('ca/link', tarfile.SYMTYPE, linkname='/etc/passwd'), 'link'),
    (member('ca/hard', tarfile.LNKTYPE, linkname='ca/ca-cert.pem'), 'link'),
    (member('ca/dev', tarfile.CHRTYPE), 'device'),
    (member('ca/fifo', tarfile.FIFOTYPE), 'device'),
    (member('./ca/x'), 'path component'),
    (member('orphan/x'), 'its directory is not in the archive'),
])
def test_unsafe_members_are_refused_before_any_write(tmp_path, pki, bad, why):
    archive = str(tmp_path / 'evil.fpkb')
    good = [member('ca', tarfile.DIRTYPE, mode=0o700), member('ca/ca-cert.pem', data=b'not checked')]
    pki.write(archive, raw_archive(good + [bad]), 0o600)
    target = str(tmp_path / 'box' / 'pki')
    os.makedirs(os.path.dirname(target))
    message = pki.expect_error(lambda: run('restore', target, archive), str(tmp_path), 'unsafe member', why)
    assert archive in message
    assert not os.path.exists(target)
    assert not os.path.exists('/tmp/evil-abs')
    assert not os.path.exists(str(tmp_path / 'evil')) and not os.path.exists(str(tmp_path / 'box' / 'evil'))
    pki.expect_error(lambda: run('verify', target, archive), str(tmp_path), 'unsafe member')


# -- restore --------------------------------------------------------------------------------------------------------

def test_restore_of_identical_content_is_not_a_change(tmp_path, pki, pki_dir):
    archive = archive_path(tmp_path)
    run('backup', pki_dir, archive)
    before = pki.snapshot(pki_dir)
    manager, result = run('restore', pki_dir, archive)
    assert result['changed'] is False and result['action'] == 'none'
    assert pki.snapshot(pki_dir) == before


def test_restore_puts_back_missing_files_and_keeps_others(tmp_path, pki, pki_dir):
    archive = archive_path(tmp_path)
    run('backup', pki_dir, archive)
    expected = without_excluded(pki.snapshot(pki_dir))
    for name in os.listdir(os.path.join(pki_dir, 'issued')):
        os.unlink(os.path.join(pki_dir, 'issued', name))
    os.rmdir(os.path.join(pki_dir, 'issued'))
    os.chmod(os.path.join(pki_dir, 'ca', 'ca-key.pem'), 0o644)
    pki.write(os.path.join(pki_dir, 'notes.txt'), b'kept')

    check, planned = run('restore', pki_dir, archive, check_mode=True)
    assert planned['changed'] is True and planned['action'] == 'restore_missing'
    assert not os.path.exists(os.path.join(pki_dir, 'issued'))

    manager, result = run('restore', pki_dir, archive)
    assert result['changed'] is True and result['action'] == 'restore_missing' and result['moved_aside'] is None
    after = without_excluded(pki.snapshot(pki_dir))
    assert after.pop('notes.txt') == ('file', 0o644, b'kept')
    assert after == expected
    assert [w for w in manager.warnings if 'notes.txt' in w and 'left as they are' in w]
    assert run('restore', pki_dir, archive)[1]['changed'] is False


def test_restore_into_an_empty_directory(tmp_path, pki, pki_dir):
    archive = archive_path(tmp_path)
    run('backup', pki_dir, archive)
    target = tmp_path / 'empty'
    target.mkdir()
    result = run('restore', str(target), archive)[1]
    assert result['changed'] is True
    assert without_excluded(pki.snapshot(str(target))) == without_excluded(pki.snapshot(pki_dir))


def test_restore_refuses_another_ca_and_force_moves_it_aside(tmp_path, pki, pki_dir):
    archive = archive_path(tmp_path)
    made = run('backup', pki_dir, archive)[1]
    expected = without_excluded(pki.snapshot(pki_dir))
    target = str(tmp_path / 'other' / 'pki')
    pki.make_ca(os.path.join(target, 'ca'), common_name='Another CA')
    other_fp = crypto.fingerprint_sha256(pki.load_cert(os.path.join(target, 'ca', 'ca-cert.pem')))
    other = pki.snapshot(target)

    message = pki.expect_error(lambda: run('restore', target, archive), str(tmp_path), 'refusing to restore',
                               'holds another CA', other_fp, made['ca_fingerprint_sha256'], 'force=true',
                               'pki_restore_force=true', '.pre-restore-')
    assert 'Nothing was changed' in message

    check, planned = run('restore', target, archive, force=True, check_mode=True)
    assert planned['changed'] is True and planned['action'] == 'replace'
    assert planned['moved_aside'].startswith(target + '.pre-restore-')
    assert pki.snapshot(target) == other and not os.path.exists(planned['moved_aside'])

    manager, result = run('restore', target, archive, force=True)
    aside = result['moved_aside']
    assert result['changed'] is True and result['action'] == 'replace'
    assert aside.startswith(target + '.pre-restore-') and aside[-1] == 'Z'
    assert pki.snapshot(aside) == other, 'the directory moved aside must be kept as it was'
    assert without_excluded(pki.snapshot(target)) == expected
    assert sorted(os.listdir(os.path.dirname(target))) == sorted(['pki', os.path.basename(aside)])

    # a second forced restore is not a change and moves nothing
    again = run('restore', target, archive, force=True)[1]
    assert again['changed'] is False and again['moved_aside'] is None


def test_restore_refuses_to_overwrite_newer_state_of_the_same_ca(tmp_path, pki, pki_dir):
    archive = archive_path(tmp_path)
    run('backup', pki_dir, archive)
    metadata = os.path.join(pki_dir, 'ca', 'metadata.json')
    pki.write(metadata, pki.read(metadata) + b' ')
    before = pki.snapshot(pki_dir)
    pki.expect_error(lambda: run('restore', pki_dir, archive), str(tmp_path), 'differ from the archive',
                     'ca/metadata.json', 'force=true')
    result = run('restore', pki_dir, archive, force=True)[1]
    assert result['moved_aside'] and pki.snapshot(result['moved_aside']) == before


def test_restore_refuses_a_ca_dir_when_the_archive_has_none(tmp_path, pki, pki_dir):
    archive = str(tmp_path / 'noca.fpkb')
    pki.write(archive, raw_archive([member('issued', tarfile.DIRTYPE, mode=0o755),
                                    member('issued/a-cert.pem', data=b'cert')]), 0o600)
    pki.expect_error(lambda: run('restore', pki_dir, archive), str(tmp_path), 'holds another CA')
    manager, result = run('verify', pki_dir, archive)
    assert result['ca_fingerprint_sha256'] is None
    assert [w for w in manager.warnings if 'has no CA' in w]


def test_restore_check_mode_writes_nothing(tmp_path, pki, pki_dir):
    archive = archive_path(tmp_path)
    run('backup', pki_dir, archive)
    before = pki.snapshot(str(tmp_path))
    target = str(tmp_path / 'new' / 'pki')
    check, result = run('restore', target, archive, check_mode=True)
    assert result['changed'] is True and result['action'] == 'create'
    assert pki.snapshot(str(tmp_path)) == before


def test_restored_modes_and_keys_never_open(tmp_path, pki):
    archive = str(tmp_path / 'modes.fpkb')
    pki.write(archive, raw_archive([
        member('ca', tarfile.DIRTYPE, mode=0o700),
        member('ca/ca-key.pem', data=b'k', mode=0o644),       # a key archived readable: restored 0600
        member('ca/ca-cert.pem', data=b'c', mode=0o644),
        member('issued', tarfile.DIRTYPE, mode=0o750),
        member('issued/w-key.pem', data=b'k', mode=0o600),
        member('issued/w-cert.pem', data=b'c', mode=0o640),
        member('issued/odd', data=b's', mode=0o4755),         # setuid bit dropped
        member('ro', tarfile.DIRTYPE, mode=0o500),            # read-only dir: mode set after its content
        member('ro/f', data=b'f', mode=0o400),
    ]), 0o600)
    target = str(tmp_path / 'pki')
    run('restore', target, archive)
    modes = dict((name, pki.mode_of(os.path.join(target, name))) for name in
                 ['ca', 'ca/ca-key.pem', 'ca/ca-cert.pem', 'issued', 'issued/w-key.pem', 'issued/w-cert.pem',
                  'issued/odd', 'ro', 'ro/f'])
    assert modes == {'ca': 0o700, 'ca/ca-key.pem': 0o600, 'ca/ca-cert.pem': 0o644, 'issued': 0o750,
                     'issued/w-key.pem': 0o600, 'issued/w-cert.pem': 0o640, 'issued/odd': 0o755, 'ro': 0o500,
                     'ro/f': 0o400}
    assert run('restore', target, archive)[1]['changed'] is False
    os.chmod(os.path.join(target, 'issued', 'w-cert.pem'), 0o600)
    fixed = run('restore', target, archive)[1]
    assert fixed['changed'] is True and fixed['action'] == 'fix_mode'
    assert pki.mode_of(os.path.join(target, 'issued', 'w-cert.pem')) == 0o640
    os.chmod(os.path.join(target, 'ro'), 0o700)  # let tmp_path be removed


def test_restore_refuses_a_file_where_the_directory_goes(tmp_path, pki, pki_dir):
    archive = archive_path(tmp_path)
    run('backup', pki_dir, archive)
    target = str(tmp_path / 'afile')
    pki.write(target, b'x')
    pki.expect_error(lambda: run('restore', target, archive), str(tmp_path), 'is not a directory')


def test_header_layout_is_64_bytes():
    assert backup.HEADER.size == 64
    assert struct.calcsize('>8sBBBB16s12s16sQ') == 64
