# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A host's TLS files in one pass: directories, files with given content, managed entries of .env files.

Everything is compared first and only what differs is written. A write goes to a temp file in the target's
directory, created 0600, given its owner and final mode before any byte is written, fsynced, then renamed over
the target: a reader never sees half a file, and a private key is never readable by anyone else, even for a moment.
Ownership or mode alone is fixed in place, without rewriting the content.

Secret content (private keys, secret .env entries) never appears in what is returned: not in the diff, not in
any message.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import grp
import hashlib
import os
import pwd
import stat
import tempfile
import time

# The engine's file helper is standard library only (and its errors module): nothing heavy reaches the host.
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.files import fsync_dir

TMP_PREFIX = '.fleetpki-tmp-'
SECRET_MARK = '(secret value)'
READ_LIMIT = 65536


class HostFilesError(Exception):
    """An input the host cannot take: the message names the path and the fix."""


def _resolve_id(name, lookup, kind, path):
    """uid or gid of a user or group name (or number); -1 (leave as is) for None."""
    if name is None:
        return -1
    if str(name).isdigit():
        return int(name)
    try:
        return lookup(name)
    except KeyError:
        raise HostFilesError('%s: the %s %r does not exist on this host; create that %s first (or name an '
                             'existing one)' % (path, 'owner' if kind == 'user' else kind, name, kind))


def resolve_uid(owner, path):
    return _resolve_id(owner, lambda name: pwd.getpwnam(name).pw_uid, 'user', path)


def resolve_gid(group, path):
    return _resolve_id(group, lambda name: grp.getgrnam(name).gr_gid, 'group', path)


def parse_mode(mode, path):
    if mode is None or isinstance(mode, int):
        return mode
    try:
        return int(str(mode), 8)
    except ValueError:
        raise HostFilesError('%s: mode %r is not an octal mode such as "0640"' % (path, mode))


def sha256_of(path):
    """Hex SHA-256 of the file (as stat's checksum with checksum_algorithm sha256), 'missing' when absent."""
    digest = hashlib.sha256()
    try:
        with open(path, 'rb') as handle:
            for block in iter(lambda: handle.read(65536), b''):
                digest.update(block)
    except (IOError, OSError):
        return 'missing'
    return digest.hexdigest()


def read_small_text(path):
    """The text of a small public file (a stamp the roles write), None when absent."""
    try:
        with open(path, 'rb') as handle:
            data = handle.read(READ_LIMIT + 1)
    except (IOError, OSError):
        return None
    if len(data) > READ_LIMIT:
        raise HostFilesError('%s: larger than %d bytes; read names only small files such as stamps' % (path, READ_LIMIT))
    return data.decode('utf-8', 'replace')


def set_env_entries(data, entries):
    """The bytes of a .env after setting each KEY=value of ``entries`` (in order), as lineinfile does it.

    lineinfile with regexp '^KEY=' and line 'KEY=value': the last line starting with KEY= is replaced (a newline
    added), or the line is appended at the end (after a newline if the file does not end with one). Every other
    line stays as it is.
    """
    # Not bytes.splitlines (it also splits on \r, \x0b...): lineinfile reads with readlines(), which splits on \n.
    lines = _split_keep_newline(data)
    for key, value in entries:
        prefix = ('%s=' % key).encode('utf-8')
        new_line = ('%s=%s' % (key, value)).encode('utf-8') + b'\n'
        found = -1
        for number, line in enumerate(lines):
            if line.startswith(prefix):
                found = number
        if found >= 0:
            lines[found] = new_line
        else:
            if lines and lines[-1][-1:] not in (b'\n', b'\r'):
                lines.append(b'\n')
            lines.append(new_line)
    return b''.join(lines)


def _split_keep_newline(data):
    if not data:
        return []
    parts = data.split(b'\n')
    lines = [part + b'\n' for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def env_values(data):
    """KEY -> value of the last KEY= line (the one lineinfile manages)."""
    values = {}
    for line in _split_keep_newline(data):
        text = line.rstrip(b'\n').decode('utf-8', 'replace')
        if '=' in text:
            key, value = text.split('=', 1)
            values[key] = value
    return values


class Want(object):
    """One path to ensure: kind 'directory', 'file' or 'env'."""

    def __init__(self, kind, spec):
        self.kind = kind
        self.path = os.path.abspath(spec['path'])
        self.uid = resolve_uid(spec.get('owner'), self.path)
        self.gid = resolve_gid(spec.get('group'), self.path)
        self.mode = parse_mode(spec.get('mode'), self.path)
        self.backup = bool(spec.get('backup'))
        self.secret = False
        self.content = None
        self.entries = []
        self.secret_keys = set()
        if kind == 'file':
            secret = spec.get('secret_content')
            if (spec.get('content') is None) == (secret is None):
                raise HostFilesError('%s: give exactly one of content and secret_content' % self.path)
            self.secret = secret is not None
            self.content = (secret if self.secret else spec['content']).encode('utf-8')
        elif kind == 'env':
            self.entries = [(key, _text(value)) for key, value in (spec.get('entries') or {}).items()]
            secret_entries = [(key, _text(value)) for key, value in (spec.get('secret_entries') or {}).items()]
            self.secret_keys = set(key for key, dummy in secret_entries)
            self.entries += secret_entries
            for key, value in self.entries:
                if not key or '=' in key or '\n' in key or '\n' in value:
                    raise HostFilesError('%s: the entry %r cannot be one KEY=value line (no "=" in the key, no '
                                         'newline in key or value)' % (self.path, key))


def _settings(want):
    return (want.kind, want.uid, want.gid, want.mode)


def _text(value):
    if isinstance(value, bool):
        return 'True' if value else 'False'
    return '%s' % (value,)


def _read(path):
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except IOError as exc:
        raise HostFilesError('%s: cannot read it (%s)' % (path, exc.strerror))


def _backup_name(path):
    # The name copy's backup: true gives (AnsibleModule.backup_local).
    return '%s.%s.%s' % (path, os.getpid(), time.strftime('%Y-%m-%d@%H:%M:%S~', time.localtime(time.time())))


def write_atomic(path, data, mode, uid, gid):
    """Replace ``path`` with ``data`` in one rename; the temp file has its owner and final mode before any byte."""
    directory, name = os.path.split(path)
    fd, tmp_path = tempfile.mkstemp(prefix=TMP_PREFIX + name + '.', dir=directory)
    try:
        try:
            if uid != -1 or gid != -1:
                os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp_path, path)
    except BaseException:
        if os.path.lexists(tmp_path):
            os.unlink(tmp_path)
        raise
    fsync_dir(directory)


class HostFiles(object):
    """Compare, then write only what differs. ``run()`` returns the result dict (no secret in it)."""

    def __init__(self, directories=(), files=(), env_files=(), checksums=(), read=(), check_mode=False,
                 want_diff=False):
        self.wants = ([Want('directory', spec) for spec in directories or ()]
                      + [Want('file', spec) for spec in files or ()]
                      + [Want('env', spec) for spec in env_files or ()])
        self.checksum_paths = list(checksums or ())
        self.read_paths = list(read or ())
        self.check_mode = check_mode
        self.want_diff = want_diff
        self.changed_paths = []
        self.backups = {}
        self.diffs = []
        # A directory named twice the same way (two role settings that point at one directory) is one directory.
        seen, wants = {}, []
        for want in self.wants:
            same = seen.get(want.path)
            if same is not None and want.kind == 'directory' and _settings(same) == _settings(want):
                continue
            if same is not None:
                raise HostFilesError('%s: named twice with different settings; name each path once' % want.path)
            seen[want.path] = want
            wants.append(want)
        self.wants = wants
        self.planned_dirs = set(want.path for want in self.wants if want.kind == 'directory')

    def run(self):
        for want in self.wants:
            self._check_parent(want)
        for want in self.wants:
            if want.kind == 'directory':
                self._directory(want)
            else:
                self._file(want)
        result = dict(changed=bool(self.changed_paths), changed_paths=self.changed_paths, backups=self.backups)
        if self.checksum_paths:
            result['checksums'] = dict((path, sha256_of(path)) for path in self.checksum_paths)
        if self.read_paths:
            result['texts'] = dict((path, read_small_text(path)) for path in self.read_paths)
        if self.want_diff:
            result['diff'] = self.diffs
        return result

    def _check_parent(self, want):
        parent = os.path.dirname(want.path)
        if os.path.isdir(parent) or parent in self.planned_dirs:
            return
        raise HostFilesError('%s: its directory %s does not exist; create it first or list it under directories'
                             % (want.path, parent))

    def _changed(self, want, before=None, after=None):
        if want.path not in self.changed_paths:
            self.changed_paths.append(want.path)
        if self.want_diff and (before is not None or after is not None):
            self.diffs.append(dict(before=before or '', after=after or '', before_header=want.path,
                                   after_header=want.path))

    def _directory(self, want):
        try:
            info = os.lstat(want.path)
        except OSError:
            info = None
        if info is not None and not stat.S_ISDIR(info.st_mode):
            raise HostFilesError('%s: exists and is not a directory; move it away or choose another path' % want.path)
        if info is None:
            self._changed(want, 'absent\n', 'directory\n')
            if not self.check_mode:
                os.mkdir(want.path, 0o700)
                self._fix_attributes(want, os.lstat(want.path))
            return
        self._attributes(want, info)

    def _attributes(self, want, info):
        """Owner, group and mode in place; reports the path changed when any differs."""
        differs = ((want.uid != -1 and info.st_uid != want.uid) or (want.gid != -1 and info.st_gid != want.gid)
                   or (want.mode is not None and stat.S_IMODE(info.st_mode) != want.mode))
        if differs:
            self._changed(want, 'owner %d group %d mode %04o\n' % (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)),
                          'owner %d group %d mode %04o\n' % (
                              info.st_uid if want.uid == -1 else want.uid, info.st_gid if want.gid == -1 else want.gid,
                              stat.S_IMODE(info.st_mode) if want.mode is None else want.mode))
            if not self.check_mode:
                self._fix_attributes(want, info)

    def _fix_attributes(self, want, info):
        if (want.uid != -1 and info.st_uid != want.uid) or (want.gid != -1 and info.st_gid != want.gid):
            os.lchown(want.path, want.uid, want.gid)
        if want.mode is not None and stat.S_IMODE(info.st_mode) != want.mode:
            os.chmod(want.path, want.mode)

    def _file(self, want):
        try:
            info = os.lstat(want.path)
        except OSError:
            info = None
        if info is not None and stat.S_ISDIR(info.st_mode):
            raise HostFilesError('%s: is a directory; move it away or choose another path' % want.path)
        old = _read(want.path) if info is not None and stat.S_ISREG(info.st_mode) else None
        if want.kind == 'env':
            new = set_env_entries(old or b'', want.entries)
        else:
            new = want.content
        if old == new and info is not None and stat.S_ISREG(info.st_mode):
            self._attributes(want, info)
            return
        self._changed(want, *self._content_diff(want, old, new))
        if self.check_mode:
            return
        mode = want.mode
        if mode is None:
            mode = stat.S_IMODE(info.st_mode) if info is not None else 0o600
        uid = info.st_uid if want.uid == -1 and info is not None else want.uid
        gid = info.st_gid if want.gid == -1 and info is not None else want.gid
        if want.backup and old is not None:
            backup = _backup_name(want.path)
            write_atomic(backup, old, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)
            self.backups[want.path] = backup
        write_atomic(want.path, new, mode, uid, gid)

    def _content_diff(self, want, old, new):
        if want.kind == 'file':
            if want.secret:
                return None, None
            return (old or b'').decode('utf-8', 'replace'), new.decode('utf-8', 'replace')
        # .env: only the managed keys; a secret entry's value never shows.
        before, after = env_values(old or b''), env_values(new)
        lines_before, lines_after = [], []
        for key, dummy in self.unique_keys(want):
            if before.get(key) == after.get(key):
                continue
            shown = (lambda value: SECRET_MARK) if key in want.secret_keys else (lambda value: value)
            if key in before:
                lines_before.append('%s=%s\n' % (key, shown(before[key])))
            lines_after.append('%s=%s\n' % (key, shown(after[key])))
        return ''.join(lines_before), ''.join(lines_after)

    @staticmethod
    def unique_keys(want):
        seen, keys = set(), []
        for key, value in want.entries:
            if key not in seen:
                seen.add(key)
                keys.append((key, value))
        return keys
