# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Encrypted backups of the control node's PKI directory (backend of the pki_backup module).

Archive format, version 1 (pure Python, no openssl or gpg)::

    header (64 bytes, big-endian)
      magic        8   b'FLEETPKI'
      version      1   1
      scrypt n     1   log2 of the scrypt cost N (17: 128 MiB, about 0.4 s)
      scrypt r     1   8
      scrypt p     1   1
      salt        16   random
      nonce       12   random (AES-GCM)
      check       16   bytes 32..47 of scrypt(passphrase, salt): tells a wrong passphrase from a damaged archive
      length       8   length of the ciphertext that follows
    ciphertext    AES-256-GCM(key = bytes 0..31 of scrypt, nonce, gzip(tar), associated data = the header)

The tar inside is deterministic: members sorted by path, directories and regular files only, owner 0/0 without
names, mode kept, mtime 0 (the modification time is not part of a backup; restored files get the time of the
restore). Two archives of the same directory therefore hold the same tar, and "same content" means the same
names, kinds, modes and bytes.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import gzip
import hmac
import io
import os
import shutil
import stat
import struct
import tarfile
import tempfile
import zlib

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto, files, store
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
except ImportError:  # reported by the module through crypto.HAS_CRYPTOGRAPHY
    pass

STATES = ('backup', 'restore', 'verify')

MAGIC = b'FLEETPKI'
FORMAT_VERSION = 1
HEADER = struct.Struct('>8sBBBB16s12s16sQ')
SALT_SIZE = 16
NONCE_SIZE = 12
CHECK_SIZE = 16
KEY_SIZE = 32
TAG_SIZE = 16
SCRYPT_N_LOG2 = 17
SCRYPT_R = 8
SCRYPT_P = 1
# A damaged header must not make scrypt ask for gigabytes: parameters outside these bounds are refused.
SCRYPT_MAX_MEMORY = 1 << 30

ARCHIVE_MODE = 0o600
ARCHIVE_DIR_MODE = 0o700
PKI_DIR_MODE = 0o700
KEY_SUFFIX = 'key.pem'
KEY_MODE_MASK = 0o700
CA_DIR_NAME = 'ca'
CA_CERT_MEMBER = CA_DIR_NAME + '/' + store.CA_CERT_NAME
LOCK_SUFFIXES = ('.lock', '.lck')
METRICS_DIR = 'metrics'
ASIDE_INFIX = '.pre-restore-'
SHORT_PASSPHRASE = 12


def utc_stamp(now=None):
    return crypto.file_stamp(now or crypto.utcnow())


class Entry:
    """One member: a directory or a regular file, by its path relative to the PKI directory ('/'-separated)."""

    __slots__ = ('name', 'kind', 'mode', 'data')

    def __init__(self, name, kind, mode, data=None):
        self.name = name
        self.kind = kind
        self.mode = mode
        self.data = data

    def key(self):
        return (self.name, self.kind, self.mode, self.data)

    def __eq__(self, other):
        return isinstance(other, Entry) and self.key() == other.key()

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self.key())

    def __repr__(self):
        return 'Entry(%r, %r, %o)' % (self.name, self.kind, self.mode)


def sort_key(name):
    return name.split('/')


def is_key_file(name):
    return name.rsplit('/', 1)[-1].endswith(KEY_SUFFIX)


def excluded(rel_name, is_dir):
    """Temp files of a run, lock files and the metrics/ directory are not part of a backup."""
    base = rel_name.rsplit('/', 1)[-1]
    if base.startswith(files.TMP_PREFIX):
        return True
    if not is_dir and base.endswith(LOCK_SUFFIXES):
        return True
    return is_dir and rel_name == METRICS_DIR


def collect(pki_dir, strict=True):
    """The entries of ``pki_dir``, sorted by path.

    strict: a link, device or unreadable file is an error naming it; otherwise it becomes an entry of kind
    'other' (enough for restore to see that the directory differs from an archive).
    """
    root = os.path.abspath(pki_dir)
    entries = []

    def walk_error(exc):
        raise PkiError('cannot read %s: %s; run as the user that owns the PKI directory'
                       % (exc.filename, exc.strerror))

    for dirpath, dirnames, filenames in os.walk(root, onerror=walk_error):
        rel_dir = os.path.relpath(dirpath, root)
        prefix = '' if rel_dir == '.' else rel_dir.replace(os.sep, '/') + '/'
        kept_dirs = []
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = prefix + name
            info = os.lstat(path)
            mode = stat.S_IMODE(info.st_mode) & 0o777
            if stat.S_ISDIR(info.st_mode):
                if excluded(rel, True):
                    continue
                kept_dirs.append(name)
                entries.append(Entry(rel, 'dir', mode))
            elif stat.S_ISREG(info.st_mode):
                if excluded(rel, False):
                    continue
                try:
                    data = files.read_bytes(path)
                except (IOError, OSError) as exc:
                    if strict:
                        raise PkiError('cannot read %s: %s; run as the user that owns the PKI directory'
                                       % (path, exc.strerror))
                    entries.append(Entry(rel, 'other', mode))
                    continue
                entries.append(Entry(rel, 'file', mode, data))
            elif strict:
                kind = 'a symbolic link' if stat.S_ISLNK(info.st_mode) else 'not a regular file or directory'
                raise PkiError('%s is %s: a backup holds regular files and directories only; replace it with the '
                               'file it stands for, or move it out of %s' % (path, kind, root))
            else:
                entries.append(Entry(rel, 'other', mode))
        dirnames[:] = kept_dirs
    entries.sort(key=lambda entry: sort_key(entry.name))
    return entries


# -- archive format -------------------------------------------------------------------------------------------------

def build_tar(entries):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w', format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.mode = entry.mode
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ''
            if entry.kind == 'dir':
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.type = tarfile.REGTYPE
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
    return buffer.getvalue()


def pack(entries):
    return gzip.compress(build_tar(entries), compresslevel=9, mtime=0)


def _derive(passphrase, salt, n_log2, r, p):
    kdf = Scrypt(salt=salt, length=KEY_SIZE + CHECK_SIZE, n=1 << n_log2, r=r, p=p)
    material = kdf.derive(crypto.to_bytes(passphrase))
    return material[:KEY_SIZE], material[KEY_SIZE:]


def encrypt(payload, passphrase):
    salt = os.urandom(SALT_SIZE)
    nonce = os.urandom(NONCE_SIZE)
    key, check = _derive(passphrase, salt, SCRYPT_N_LOG2, SCRYPT_R, SCRYPT_P)
    header = HEADER.pack(MAGIC, FORMAT_VERSION, SCRYPT_N_LOG2, SCRYPT_R, SCRYPT_P, salt, nonce, check,
                         len(payload) + TAG_SIZE)
    return header + AESGCM(key).encrypt(nonce, payload, header)


def decrypt(blob, passphrase, archive):
    """The payload of an archive's bytes; every failure names the archive and what to do."""
    if len(blob) < len(MAGIC) or blob[:len(MAGIC)] != MAGIC:
        raise PkiError('%s is not a fleetpki backup archive (it does not start with the fleetpki header); point '
                       'archive at a file made by fleetpki.mtls.pki_backup (playbooks/pki_backup.yml). Nothing '
                       'was changed.' % archive)
    if len(blob) < HEADER.size:
        raise PkiError('%s is truncated: it ends inside its header (%d bytes); copy the archive again from where '
                       'you keep it, or use another backup. Nothing was changed.' % (archive, len(blob)))
    header = blob[:HEADER.size]
    magic, version, n_log2, r, p, salt, nonce, check, length = HEADER.unpack(header)
    if version != FORMAT_VERSION:
        raise PkiError('%s is a fleetpki backup of format version %d; this release reads version %d: restore '
                       'it with the fleetpki release that made it. Nothing was changed.'
                       % (archive, version, FORMAT_VERSION))
    if not (10 <= n_log2 <= 22 and 1 <= r <= 32 and 1 <= p <= 16) or 128 * r * (1 << n_log2) > SCRYPT_MAX_MEMORY:
        raise PkiError('%s has a damaged header (key derivation parameters out of range); use another copy of '
                       'the archive. Nothing was changed.' % archive)
    body = blob[HEADER.size:]
    if len(body) < length:
        raise PkiError('%s is truncated: it holds %d of the %d bytes its header announces; copy the archive '
                       'again from where you keep it, or use another backup. Nothing was changed.'
                       % (archive, len(blob), HEADER.size + length))
    if len(body) > length:
        raise PkiError('%s is damaged: it has %d bytes more than its header announces; use another copy of the '
                       'archive. Nothing was changed.' % (archive, len(body) - length))
    key, expected = _derive(passphrase, salt, n_log2, r, p)
    if not hmac.compare_digest(check, expected):
        raise PkiError('cannot decrypt %s: the passphrase is wrong. Give the passphrase the archive was made '
                       'with (pki_backup_passphrase, from the vault in use when it was made); if it is right, the '
                       "archive's header is damaged: use another copy. Nothing was changed." % archive)
    try:
        return AESGCM(key).decrypt(nonce, body, header)
    except InvalidTag:
        raise PkiError('%s is corrupted: the passphrase is right but the content fails its integrity check '
                       '(AES-GCM); use another copy of the archive. Nothing was changed.' % archive)


def _unsafe(name, archive, why):
    return PkiError('%s holds an unsafe member %r (%s): refusing to use it; an archive made by pki_backup never '
                    'does, so it was not made by fleetpki or was altered. Nothing was changed.' % (archive, name, why))


def unpack(payload, archive):
    """Validated entries of a decrypted payload: relative paths, no '..', directories and regular files only."""
    try:
        tar_bytes = gzip.decompress(payload)
    except (IOError, OSError, EOFError, zlib.error) as exc:
        raise PkiError('%s decrypts but its content is not a gzip stream (%s); use another copy of the archive. '
                       'Nothing was changed.' % (archive, exc))
    entries = []
    seen = set()
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode='r:') as tar:
            for member in tar:
                name = member.name
                if not name or '\x00' in name or '\\' in name:
                    raise _unsafe(name, archive, 'empty or odd name')
                if name.startswith('/'):
                    raise _unsafe(name, archive, 'absolute path')
                parts = name.rstrip('/').split('/')
                if '..' in parts:
                    raise _unsafe(name, archive, "'..' in its path")
                if any(part in ('', '.') for part in parts):
                    raise _unsafe(name, archive, 'empty or "." path component')
                if member.issym() or member.islnk():
                    raise _unsafe(name, archive, 'link')
                if member.isdev():
                    raise _unsafe(name, archive, 'device or fifo')
                if not (member.isdir() or member.isreg()):
                    raise _unsafe(name, archive, 'not a regular file or directory')
                name = '/'.join(parts)
                if name in seen:
                    raise _unsafe(name, archive, 'listed twice')
                seen.add(name)
                mode = stat.S_IMODE(member.mode) & 0o777
                if member.isdir():
                    entries.append(Entry(name, 'dir', mode))
                else:
                    entries.append(Entry(name, 'file', mode, tar.extractfile(member).read()))
    except tarfile.TarError as exc:
        raise PkiError('%s decrypts but its content is not a valid tar (%s); use another copy of the archive. '
                       'Nothing was changed.' % (archive, exc))
    kinds = dict((entry.name, entry.kind) for entry in entries)
    for entry in entries:
        if '/' in entry.name:
            parent = entry.name.rsplit('/', 1)[0]
            if kinds.get(parent) != 'dir':
                raise _unsafe(entry.name, archive, 'its directory is not in the archive')
    entries.sort(key=lambda entry: sort_key(entry.name))
    return entries


def restore_mode(entry):
    """The mode an entry is restored with: as archived, but a private key is never readable by others."""
    if entry.kind == 'file' and is_key_file(entry.name):
        return entry.mode & KEY_MODE_MASK
    return entry.mode


def ca_fingerprint(entries):
    """(fingerprint of ca/ca-cert.pem among ``entries`` or None, warning or None)."""
    for entry in entries:
        if entry.name == CA_CERT_MEMBER and entry.kind == 'file':
            try:
                return crypto.fingerprint_sha256(crypto.load_cert(entry.data, CA_CERT_MEMBER)), None
            except PkiError as exc:
                return None, str(exc)
    return None, None


def summary(entries):
    return sum(1 for entry in entries if entry.kind == 'file')


# -- the manager ----------------------------------------------------------------------------------------------------

class BackupManager:
    """Plans and applies one backup, verify or restore. ``plan()`` decides everything and writes nothing;
    ``apply()`` only writes what the plan decided (check mode skips it)."""

    def __init__(self, state, pki_dir, archive, passphrase, force=False, now=None):
        if state not in STATES:
            raise PkiError('state must be one of %s, not %r' % (', '.join(STATES), state))
        self.state = state
        self.pki_dir = os.path.abspath(pki_dir)
        self.archive = os.path.abspath(archive)
        self.passphrase = passphrase
        self.force = force
        self.now = now
        self.warnings = []
        self.changed = False
        self.action = 'none'
        self.entries = None
        self.fingerprint = None
        self.moved_aside = None
        self._plan_done = False
        # restore
        self._missing = []
        self._mode_fixes = []
        self._fresh = False

    # -- helpers --

    def _check_passphrase(self):
        if not self.passphrase:
            raise PkiError('backup_passphrase is empty: give the backup passphrase (pki_backup_passphrase, kept in '
                           'ansible-vault). Nothing was changed.')
        if self.state == 'backup' and len(self.passphrase) < SHORT_PASSPHRASE:
            self.warnings.append('the backup passphrase is shorter than %d characters: anyone with a copy of the '
                                 'archive can guess it offline; use a long random one' % SHORT_PASSPHRASE)

    def _read_archive(self):
        if not os.path.exists(self.archive):
            raise PkiError('archive %s does not exist: give the path of a backup made by playbooks/pki_backup.yml '
                           '(-e pki_backup_archive=...). Nothing was changed.' % self.archive)
        if not os.path.isfile(self.archive):
            raise PkiError('archive %s is not a file; give the path of a backup archive. Nothing was changed.'
                           % self.archive)
        try:
            blob = files.read_bytes(self.archive)
        except (IOError, OSError) as exc:
            raise PkiError('cannot read archive %s: %s. Nothing was changed.' % (self.archive, exc.strerror))
        return unpack(decrypt(blob, self.passphrase, self.archive), self.archive)

    def _set_fingerprint(self, entries):
        self.fingerprint, problem = ca_fingerprint(entries)
        if problem:
            self.warnings.append('the CA certificate in the backup does not parse: %s' % problem)
        elif self.fingerprint is None:
            self.warnings.append('the backup holds no %s: it has no CA' % CA_CERT_MEMBER)

    def _under_ca_lock(self, work):
        """``work()`` under the lock of the CA directory in pki_dir, when there is one: never in the middle of a
        pki_ca, pki_leaf or pki_crl write."""
        ca_dir = os.path.join(self.pki_dir, CA_DIR_NAME)
        if not os.path.isdir(ca_dir):
            return work()
        with store.CaStore(ca_dir).lock():
            return work()

    # -- plan --

    def plan(self):
        self._check_passphrase()
        getattr(self, '_plan_' + self.state)()
        self._plan_done = True
        return self.action

    def _plan_backup(self):
        if not os.path.isdir(self.pki_dir):
            raise PkiError('pki_dir %s is not a directory: there is nothing to back up; point pki_dir at the PKI '
                           'directory (fleetpki_pki_dir, default <inventory dir>/pki)' % self.pki_dir)
        if self.archive == self.pki_dir or self.archive.startswith(self.pki_dir + os.sep):
            raise PkiError('archive %s is inside pki_dir %s: a backup kept beside what it backs up is lost with it; '
                           'write it outside (default <inventory dir>/backups/). Nothing was changed.'
                           % (self.archive, self.pki_dir))
        if os.path.isdir(self.archive):
            raise PkiError('archive %s is a directory; give the path of the archive file to write' % self.archive)
        reason = files.unwritable_reason(os.path.dirname(self.archive))
        if reason:
            raise PkiError('cannot write archive %s: %s' % (self.archive, reason))
        self.entries = self._under_ca_lock(lambda: collect(self.pki_dir))
        self._set_fingerprint(self.entries)
        if os.path.lexists(self.archive):
            try:
                archived = self._read_archive()
            except PkiError as exc:
                raise PkiError('%s exists and cannot be read with this passphrase, so it is not replaced: %s '
                               'Choose another archive path, or move that file away first.' % (self.archive, exc))
            if archived != self.entries:
                self.action = 'update'
            elif files.file_mode(self.archive) != ARCHIVE_MODE:
                self.action = 'fix_mode'
        else:
            self.action = 'create'
        self.changed = self.action != 'none'

    def _plan_verify(self):
        self.entries = self._read_archive()
        self._set_fingerprint(self.entries)

    def _plan_restore(self):
        self.entries = self._read_archive()
        self._set_fingerprint(self.entries)
        if os.path.lexists(self.pki_dir) and not os.path.isdir(self.pki_dir):
            raise PkiError('pki_dir %s exists and is not a directory; move it away, then restore. Nothing was '
                           'changed.' % self.pki_dir)
        reason = files.unwritable_reason(self.pki_dir if os.path.isdir(self.pki_dir)
                                         else os.path.dirname(self.pki_dir))
        if reason:
            raise PkiError('cannot restore into %s: %s' % (self.pki_dir, reason))
        if not os.path.isdir(self.pki_dir):
            self._fresh = True
            self.action = 'create'
            self.changed = True
            return
        current = dict((entry.name, entry) for entry in collect(self.pki_dir, strict=False))
        conflicts = []
        for entry in self.entries:
            have = current.get(entry.name)
            if have is None:
                self._missing.append(entry)
            elif have.kind != entry.kind or have.data != entry.data:
                conflicts.append(entry.name)
            elif have.mode != restore_mode(entry):
                self._mode_fixes.append(entry)
        archived_names = set(entry.name for entry in self.entries)
        here_ca = current.get(CA_CERT_MEMBER)
        other_ca = here_ca is not None and (CA_CERT_MEMBER not in archived_names or CA_CERT_MEMBER in conflicts)
        if other_ca or conflicts:
            if not self.force:
                self._refuse(other_ca, here_ca, conflicts)
            self.moved_aside = self._aside_path()
            self._fresh = True
            self._missing = []
            self._mode_fixes = []
            self.action = 'replace'
            self.changed = True
            return
        extra = sorted(set(current) - archived_names)
        if extra:
            self.warnings.append('%d entries of %s are not in the archive and were left as they are (such as %s)'
                                 % (len(extra), self.pki_dir, ', '.join(extra[:3])))
        if self._missing or self._mode_fixes:
            self.action = 'restore_missing' if self._missing else 'fix_mode'
            self.changed = True

    def _refuse(self, other_ca, here_ca, conflicts):
        if other_ca:
            here_fp = None
            if here_ca.kind == 'file':
                here_fp = ca_fingerprint([here_ca])[0]
            what = ('holds another CA (%s, fingerprint %s) than the archive (fingerprint %s)'
                    % (CA_CERT_MEMBER, here_fp or 'unreadable', self.fingerprint or 'none'))
        else:
            what = ('holds %d file(s) that differ from the archive (such as %s): restoring would overwrite newer '
                    'state, such as issued serials or revocations'
                    % (len(conflicts), ', '.join(conflicts[:3])))
        raise PkiError('refusing to restore %s into %s: it %s. To replace it, run with force=true '
                       '(playbooks/pki_restore.yml -e pki_restore_force=true): the directory is moved aside to '
                       '%s%s<UTC time>, never deleted. Nothing was changed.'
                       % (self.archive, self.pki_dir, what, self.pki_dir, ASIDE_INFIX))

    def _aside_path(self):
        base = self.pki_dir + ASIDE_INFIX + utc_stamp(self.now)
        path, counter = base, 1
        while os.path.lexists(path):
            path = '%s-%d' % (base, counter)
            counter += 1
        return path

    # -- apply --

    def apply(self):
        if not self._plan_done:
            self.plan()
        if self.changed:
            try:
                getattr(self, '_apply_' + self.state)()
            except (IOError, OSError) as exc:
                target = self.archive if self.state == 'backup' else self.pki_dir
                detail = (exc.strerror or str(exc), exc.filename or target)
                raise PkiError('writing %s failed: %s (%s); the previous files are as they were (a restore made '
                               'in a temp directory was removed)' % ((target,) + detail))
        return self.result()

    def _apply_backup(self):
        if self.action == 'fix_mode':
            os.chmod(self.archive, ARCHIVE_MODE)
            return
        directory = os.path.dirname(self.archive)
        if not os.path.isdir(directory):
            files.ensure_dir(directory, ARCHIVE_DIR_MODE)
        files.atomic_write(self.archive, encrypt(pack(self.entries), self.passphrase), ARCHIVE_MODE)
        files.fsync_dir(directory)

    def _apply_verify(self):
        pass  # never changes anything

    def _apply_restore(self):
        work = self._restore_fresh if self._fresh else self._restore_in_place
        # Not while a pki_ca / pki_leaf / pki_crl run writes into the CA directory that is replaced or filled in.
        self._under_ca_lock(work)

    def _restore_in_place(self):
        for entry in self._missing:
            path = os.path.join(self.pki_dir, *entry.name.split('/'))
            if entry.kind == 'dir':
                files.ensure_dir(path, 0o700)
            else:
                files.atomic_write(path, entry.data, restore_mode(entry))
        # Deepest first, so that a directory's own mode is set after its content is written.
        for entry in sorted(self._missing + self._mode_fixes, key=lambda item: sort_key(item.name), reverse=True):
            os.chmod(os.path.join(self.pki_dir, *entry.name.split('/')), restore_mode(entry))
        files.fsync_dir(self.pki_dir)

    def _restore_fresh(self):
        parent = os.path.dirname(self.pki_dir)
        if not os.path.isdir(parent):
            files.ensure_dir(parent, PKI_DIR_MODE)
        staging = tempfile.mkdtemp(prefix=files.TMP_PREFIX + 'restore-', dir=parent)
        try:
            write_tree(staging, self.entries)
            os.chmod(staging, PKI_DIR_MODE)
            if self.moved_aside:
                os.rename(self.pki_dir, self.moved_aside)
            try:
                os.rename(staging, self.pki_dir)
            except OSError:
                if self.moved_aside:
                    os.rename(self.moved_aside, self.pki_dir)
                raise
            files.fsync_dir(parent)
        except BaseException:
            if os.path.isdir(staging):
                shutil.rmtree(staging, ignore_errors=True)
            raise

    # -- result --

    def result(self):
        entries = self.entries or []
        result = {
            'changed': self.changed,
            'state': self.state,
            'action': self.action,
            'archive': self.archive,
            'pki_dir': self.pki_dir,
            'files': summary(entries),
            'ca_fingerprint_sha256': self.fingerprint,
            'moved_aside': self.moved_aside,
        }
        if self.state == 'verify':
            result['members'] = [entry.name for entry in entries if entry.kind == 'file']
        return result


def write_tree(root, entries):
    """Write ``entries`` under the (new, empty) directory ``root``, then give each its mode, deepest first."""
    for entry in entries:
        path = os.path.join(root, *entry.name.split('/'))
        if entry.kind == 'dir':
            try:
                os.mkdir(path, 0o700)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.fchmod(fd, restore_mode(entry))
                view = memoryview(entry.data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
    directories = [entry for entry in entries if entry.kind == 'dir']
    for entry in directories:
        files.fsync_dir(os.path.join(root, *entry.name.split('/')))
    for entry in reversed(directories):
        os.chmod(os.path.join(root, *entry.name.split('/')), restore_mode(entry))
