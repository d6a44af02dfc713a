# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A host's TLS files in one pass: directories, files with given content, managed entries of .env files.

A planning pass looks at every target first (its type, its directory, the owners named) and refuses the whole
request before any write if one cannot be done; then only what differs is written.

The target directories may be writable by a service user (/etc/redis is redis:redis 2770 on Debian), who may
swap any name in them for a link at any moment. So nothing here follows a link by path: each directory is opened
component by component without following links (except a link only root could have placed, such as
/var/run -> /run), and every file is opened, read, changed and renamed relative to its directory's descriptor with
O_NOFOLLOW; a target that is a link, a FIFO, a device or has a second hard link is refused, naming the path.

A write goes to a temp file created 0600 by root in the target's directory, written, fsynced, given its final
mode and then its owner (so the owner cannot change it while it is written), then renamed over the target: a
reader never sees half a file, and a private key is never readable by anyone else, even for a moment. Ownership
or mode alone is fixed in place, through the open file, without rewriting the content.

Secret content (private keys, secret .env entries) never appears in what is returned: not in the diff, not in
any message.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import binascii
import errno
import grp
import hashlib
import os
import pwd
import re
import stat

TMP_PREFIX = '.fleetpki-tmp-'
# A backup (backup: true) is <file>.fleetpki-previous~ until the role is done with it.
BACKUP_SUFFIX = '.fleetpki-previous~'
SECRET_MARK = '(secret value)'
READ_LIMIT = 65536
# The largest file compared or backed up (certificates, keys, bundles, CRLs, .env files are far smaller): a
# bigger one is refused rather than read into memory.
CONTENT_LIMIT = 1024 * 1024
MAX_LINKS = 40

_CLOEXEC = getattr(os, 'O_CLOEXEC', 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
# O_NONBLOCK: a FIFO put in place of a file must not hang the module (it is refused after fstat).
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | _CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC

# The reader (module_utils/_fleet_env.py) splits a .env with str.splitlines(), which also breaks lines at these.
_ENV_KEY = re.compile(r'[A-Za-z_][A-Za-z0-9_]*\Z')
_LINE_BREAKS = frozenset([u'\x85', u'\u2028', u'\u2029'])


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


def check_env_entry(path, key, value):
    """Refuse a key or value that is not exactly one KEY=value line for every reader, naming the key only."""
    if not _ENV_KEY.match(key):
        raise HostFilesError('%s: the key %r is not a variable name; use letters, digits and "_" (not starting '
                             'with a digit)' % (path, key))
    for char in value:
        if ord(char) < 0x20 or 0x7f <= ord(char) <= 0x9f or char in _LINE_BREAKS:
            raise HostFilesError('%s: the value of %s holds a line break or control character (U+%04X), which '
                                 'would end its line and let the rest be read as another entry; remove it from '
                                 'the value' % (path, key, ord(char)))


def _refuse_link(path):
    return HostFilesError('%s: is a symbolic link; tls_files never writes, reads or changes a file through a link '
                          '(in a directory a service user can write, it could point at any file root can reach). '
                          'Check where it points, remove the link and rerun, or name the real path' % path)


def _trusted_link(parent_info, link_info):
    """A link only root (or the user this runs as) could have placed: theirs, in a directory nobody else writes."""
    owners = (0, os.geteuid())
    return (link_info.st_uid in owners and parent_info.st_uid in owners
            and not parent_info.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def open_directory(path):
    """A descriptor of the directory ``path``, opened from / one component at a time without following a link
    (a link is followed, resolved the same way, only when _trusted_link). OSError ENOENT when it is absent."""
    parts = [part for part in path.split('/') if part]
    fd = os.open('/', _DIR_FLAGS)
    resolved = '/'
    hops = 0
    try:
        while parts:
            name = parts.pop(0)
            parent_info = os.fstat(fd)
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                hops += 1
                if hops > MAX_LINKS or not _trusted_link(parent_info, info):
                    raise _refuse_link(os.path.join(resolved, name))
                target = os.readlink(name, dir_fd=fd)
                parts = [part for part in os.path.normpath(os.path.join(resolved, target)).split('/') if part] + parts
                os.close(fd)
                fd = os.open('/', _DIR_FLAGS)
                resolved = '/'
                continue
            if not stat.S_ISDIR(info.st_mode):
                raise HostFilesError('%s: is not a directory; move it away or choose another path'
                                     % os.path.join(resolved, name))
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            _same_file(fd, info, os.path.join(resolved, name))
            resolved = os.path.join(resolved, name)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _same_file(fd, info, path):
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
        raise HostFilesError('%s: was replaced while this run opened it (another process or user is changing '
                             'it); find out who and rerun' % path)
    return opened


def _lstat(dir_fd, name):
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def open_regular(dir_fd, name, path, info=None):
    """A descriptor of the regular file ``name`` in ``dir_fd``: never a link, a FIFO, a device, nor a file with a
    second hard link (root would read or change a file elsewhere); the file lstat'd as ``info`` when given."""
    if info is not None:
        _check_regular(info, path)  # before opening: a device is never opened
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _refuse_link(path)
        raise
    try:
        opened = os.fstat(fd) if info is None else _same_file(fd, info, path)
        _check_regular(opened, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_regular(info, path):
    if stat.S_ISLNK(info.st_mode):
        raise _refuse_link(path)
    if stat.S_ISDIR(info.st_mode):
        raise HostFilesError('%s: is a directory; move it away or choose another path' % path)
    if not stat.S_ISREG(info.st_mode):
        raise HostFilesError('%s: is not a regular file (a FIFO, socket or device); move it away and rerun' % path)
    if info.st_nlink != 1:
        raise HostFilesError('%s: has %d hard links; a hard link could make root read or change a file elsewhere. '
                             'Find them (find / -xdev -samefile %s), remove the file or the other links, and rerun'
                             % (path, info.st_nlink, path))


def read_fd(fd, limit, path, what):
    chunks, size = [], 0
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b''.join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise HostFilesError('%s: larger than %d bytes; %s. Move it away or name another path'
                                 % (path, limit, what))


def _in_directory(path, action):
    """``action(dir_fd, name)`` in the directory of ``path`` opened safely; ``None`` when that directory is absent."""
    directory, name = os.path.split(os.path.abspath(path))
    try:
        dir_fd = open_directory(directory)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise
    try:
        return action(dir_fd, name)
    finally:
        os.close(dir_fd)


def sha256_of(path):
    """Hex SHA-256 of the file (as stat's checksum with checksum_algorithm sha256), 'missing' when absent."""
    def digest_of(dir_fd, name):
        info = _lstat(dir_fd, name)
        if info is None:
            return 'missing'
        fd = open_regular(dir_fd, name, path, info)
        digest = hashlib.sha256()
        try:
            for block in iter(lambda: os.read(fd, 65536), b''):
                digest.update(block)
        finally:
            os.close(fd)
        return digest.hexdigest()
    found = _in_directory(path, digest_of)
    return 'missing' if found is None else found


def read_small_text(path):
    """The text of a small public file (a stamp the roles write), None when absent."""
    def text_of(dir_fd, name):
        info = _lstat(dir_fd, name)
        if info is None:
            return None
        fd = open_regular(dir_fd, name, path, info)
        try:
            data = read_fd(fd, READ_LIMIT, path, 'read names only small files such as stamps')
        finally:
            os.close(fd)
        return data.decode('utf-8', 'replace')
    return _in_directory(path, text_of)


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


def remove_env_entries(data, keys):
    """The bytes of a .env without any line setting one of ``keys`` (KEY=...); every other line as it is."""
    prefixes = tuple(('%s=' % key).encode('utf-8') for key in keys)
    if not prefixes:
        return data
    return b''.join(line for line in _split_keep_newline(data) if not line.startswith(prefixes))


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
    """One path to ensure: kind 'directory', 'file', 'env', 'restore' (put the file's backup back) or
    'unbackup' (remove the file's backup; the path is the backup's)."""

    def __init__(self, kind, spec):
        self.kind = kind
        self.path = os.path.abspath(spec['path'])
        self.uid = resolve_uid(spec.get('owner'), self.path)
        self.gid = resolve_gid(spec.get('group'), self.path)
        self.mode = parse_mode(spec.get('mode'), self.path)
        self.backup = bool(spec.get('backup'))
        self.secret = False
        self.content = None
        self.absent_keys = []
        self.entries = []
        self.secret_keys = set()
        if kind == 'file':
            secret, src = spec.get('secret_content'), spec.get('src')
            if [spec.get('content'), secret, src].count(None) != 2:
                raise HostFilesError('%s: give exactly one of content, secret_content and src' % self.path)
            if src is not None:
                # A key born on this host, kept in root's own directory: copied, never read by the control node.
                self.secret = True
                self.content = read_private_source(os.path.abspath(src), self.path)
                if spec.get('certificate') is not None:
                    check_key_matches(self.content, spec['certificate'], src, self.path)
                if spec.get('append') is not None:
                    # Key and certificate in one file (client.pem): each part without its trailing whitespace.
                    self.content = self.content.rstrip() + b'\n' + spec['append'].rstrip().encode('utf-8') + b'\n'
            elif spec.get('append') is not None or spec.get('certificate') is not None:
                raise HostFilesError('%s: append and certificate go with src only' % self.path)
            else:
                self.secret = secret is not None
                self.content = (secret if self.secret else spec['content']).encode('utf-8')
        elif kind == 'env':
            self.entries = [(key, _text(self.path, key, value)) for key, value in (spec.get('entries') or {}).items()]
            secret_entries = [(key, _text(self.path, key, value))
                              for key, value in (spec.get('secret_entries') or {}).items()]
            self.secret_keys = set(key for key, dummy in secret_entries)
            # A .env holds passwords: its backups and temps are root's alone.
            self.secret = True
            self.entries += secret_entries
            for key, value in self.entries:
                check_env_entry(self.path, key, value)
            # Keys of a feature turned off: their lines go (a .env that never had them is left as it is).
            self.absent_keys = list(spec.get('absent_keys') or [])
            for key in self.absent_keys:
                check_env_entry(self.path, key, '')
                if key in dict(self.entries):
                    raise HostFilesError('%s: %s is both set and in absent_keys' % (self.path, key))


def read_private_source(src, path):
    """The bytes of ``src``, a file only root (or the user this runs as) can have written: a regular file with one
    name, owned by that user, writable by nobody else, in a directory of the same kind, reached without an
    untrusted link. A file another user could write would hand that user the key every client trusts."""
    parent, name = os.path.split(src)
    try:
        dir_fd = open_directory(parent)
    except OSError as exc:
        raise HostFilesError('%s: its src %s cannot be read (%s); make the key first (fleetpki.mtls.host_key)'
                             % (path, src, exc.strerror))
    try:
        owners = (0, os.geteuid())
        dir_info = os.fstat(dir_fd)
        if dir_info.st_uid not in owners or dir_info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise HostFilesError('%s: its src directory %s is not root\'s alone (owner uid %d, mode %04o); the key '
                                 'there could have been put by another user. Make it root:root 0700 and rerun'
                                 % (path, parent, dir_info.st_uid, stat.S_IMODE(dir_info.st_mode)))
        info = _lstat(dir_fd, name)
        if info is None:
            raise HostFilesError('%s: its src %s does not exist; make the key first (fleetpki.mtls.host_key)'
                                 % (path, src))
        fd = open_regular(dir_fd, name, src, info)
        try:
            opened = os.fstat(fd)
            if opened.st_uid not in owners or opened.st_mode & 0o077:
                raise HostFilesError('%s: its src %s is not root\'s alone (owner uid %d, mode %04o); it may have been '
                                     'replaced by another user. Remove it (a new key is made by the next run) and '
                                     'rerun' % (path, src, opened.st_uid, stat.S_IMODE(opened.st_mode)))
            return read_fd(fd, CONTENT_LIMIT, src, 'a private key is small')
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)


def check_key_matches(key_data, cert_pem, src, path):
    """Refuse a key that is not the certificate's: installed together, the service could not use them (Redis refuses
    the pair, a client fails every handshake). A key born on its host and not certified yet is the usual cause."""
    from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto
    from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError
    try:
        key = crypto.load_private_key(key_data, src)
        cert = crypto.load_cert(crypto.to_bytes(cert_pem), '%s (its certificate)' % path)
    except PkiError as exc:
        raise HostFilesError('%s: %s' % (path, exc))
    if crypto.public_key_der(key) != crypto.public_key_der(cert.public_key()):
        raise HostFilesError('%s: the key %s is not the one the certificate from the control node is for (the control '
                             'node has not certified this key yet: its request was refused or not sent). Nothing was '
                             'installed; run the playbook again, or see why the request was refused' % (path, src))


def _settings(want):
    return (want.kind, want.uid, want.gid, want.mode)


def _text(path, key, value):
    """The text of a .env value (as lineinfile wrote it: a boolean as True/False); never a secret in a message."""
    if value is None:
        raise HostFilesError('%s: %s has no value (an undefined or null variable); set it, or leave the entry out'
                             % (path, key))
    if isinstance(value, (dict, list, tuple, set)):
        raise HostFilesError('%s: the value of %s is not a single value (a list or dict); give a string or a number'
                             % (path, key))
    if isinstance(value, bool):
        return 'True' if value else 'False'
    text = '%s' % (value,)
    if text != text.strip():
        raise HostFilesError('%s: the value of %s starts or ends with a space or tab, which .env readers strip (the '
                             'service would use another value than the one written); remove it' % (path, key))
    return text


def _backup_name(name):
    # One name per file (not copy's pid and time): the next run finds a backup a killed or interrupted run left
    # behind (the previous private key) and removes it (remove_stale_temps).
    return name + BACKUP_SUFFIX


def write_in(dir_fd, name, data, mode, uid, gid):
    """Replace ``name`` in ``dir_fd`` with ``data`` in one rename (a link there is replaced, never followed).

    The temp is created 0600 by this user, written and fsynced, then given its mode and, last, its owner: nobody
    else can open or change it while the bytes go in."""
    tmp = '%s%s.%s' % (TMP_PREFIX, name, binascii.hexlify(os.urandom(6)).decode('ascii'))
    fd = os.open(tmp, _CREATE_FLAGS, 0o600, dir_fd=dir_fd)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            os.fchmod(fd, mode)
            if uid != -1 or gid != -1:
                os.fchown(fd, uid, gid)
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise
    os.fsync(dir_fd)


# ansible's copy/template backup name (module_utils basic backup_local): <file>.<pid>.<YYYY-MM-DD@HH:MM:SS>~
_COPY_BACKUP = re.compile(r'\.[0-9]+\.[0-9]{4}-[0-9]{2}-[0-9]{2}@[0-9]{2}:[0-9]{2}:[0-9]{2}~\Z')


def _copy_backup_of(name, backed_up):
    """Whether ``name`` is a copy-module backup of one of the files named in ``backed_up``."""
    match = _COPY_BACKUP.search(name)
    return match is not None and name[:match.start()] in backed_up


def remove_stale_temps(dir_fd, targets=(), backed_up=()):
    """Remove the temp files an earlier run of this module left in a directory, and the backups of this call's own
    ``targets`` (they may hold key bytes: a run killed mid-write, or one stopped before the role removed its
    backups): only regular files, never a link. Another file's backup stays: a role may still need it for a
    rollback later in the same run (redis.conf written between the TLS files and their reload, in one directory).
    So too the copy module's backups of the files named in ``backed_up`` (those this call keeps a backup of), which
    the roles made before tls_files. A backup of this run is made after this, when it replaces the file."""
    stale_backups = set(_backup_name(name) for name in targets)
    for name in os.listdir(dir_fd):
        if not (name.startswith(TMP_PREFIX) or name in stale_backups or _copy_backup_of(name, backed_up)):
            continue
        info = _lstat(dir_fd, name)
        if info is not None and stat.S_ISREG(info.st_mode):
            try:
                os.unlink(name, dir_fd=dir_fd)
            except OSError:
                pass


def _final_attributes(want, info):
    """Mode, uid and gid of a file written for ``want``: as asked, else those of the file it replaces (``info``),
    else 0600 and this user's."""
    mode = want.mode
    if mode is None:
        mode = stat.S_IMODE(info.st_mode) if info is not None else 0o600
    uid = info.st_uid if want.uid == -1 and info is not None else want.uid
    gid = info.st_gid if want.gid == -1 and info is not None else want.gid
    return mode, uid, gid


class Action(object):
    """What the planning pass found to do for one want: 'mkdir', 'attributes' or 'write'."""

    def __init__(self, want, what, info=None, old=None, new=None):
        self.want, self.what, self.info, self.old, self.new = want, what, info, old, new


class HostFiles(object):
    """Plan, then write only what differs. ``run()`` returns the result dict (no secret in it).

    On a failure, ``changed_paths`` and ``backups`` say what was already done.

    ``restore`` and ``remove_backups`` are a role's rollback and cleanup: put back the files an earlier call
    replaced with ``backup: true`` (then remove each backup), and remove those backups once the new files are live,
    so no previous private key stays on the host."""

    def __init__(self, directories=(), files=(), env_files=(), checksums=(), read=(), check_mode=False,
                 want_diff=False, restore=(), remove_backups=()):
        self.wants = ([Want('directory', spec) for spec in directories or ()]
                      + [Want('file', spec) for spec in files or ()]
                      + [Want('env', spec) for spec in env_files or ()]
                      + [Want('restore', spec) for spec in restore or ()]
                      + [Want('unbackup', {'path': path + BACKUP_SUFFIX}) for path in remove_backups or ()])
        self.checksum_paths = list(checksums or ())
        self.read_paths = list(read or ())
        self.check_mode = check_mode
        self.want_diff = want_diff
        self.changed_paths = []
        self.backups = {}
        self.removed_backups = []
        self.diffs = []
        self._dirs = {}
        self._to_create = set()
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

    def run(self):
        try:
            actions = [action for action in (self._plan(want) for want in self.wants) if action is not None]
            if self.check_mode:
                self.changed_paths.extend(action.want.path for action in actions if action.what != 'unlink')
                self.removed_backups.extend(action.want.path for action in actions if action.what == 'unlink')
            else:
                # Not where this call restores or removes backups: those are what it works on.
                for directory in sorted(set(os.path.dirname(want.path) for want in self.wants
                                            if want.kind in ('file', 'env'))):
                    if self._dirs.get(directory) is not None:
                        here = [want for want in self.wants if want.kind in ('file', 'env')
                                and os.path.dirname(want.path) == directory]
                        remove_stale_temps(self._dirs[directory],
                                           set(os.path.basename(want.path) for want in here),
                                           set(os.path.basename(want.path) for want in here if want.backup))
                for action in actions:
                    self._do(action)
            result = dict(changed=bool(self.changed_paths or self.removed_backups), changed_paths=self.changed_paths,
                          backups=self.backups, removed_backups=self.removed_backups)
            if self.checksum_paths:
                result['checksums'] = dict((path, sha256_of(path)) for path in self.checksum_paths)
            if self.read_paths:
                result['texts'] = dict((path, read_small_text(path)) for path in self.read_paths)
        finally:
            for fd in self._dirs.values():
                if fd is not None:
                    os.close(fd)
            self._dirs = {}
        if self.want_diff:
            result['diff'] = self.diffs
        return result

    def _dir_fd(self, directory):
        """The descriptor of an existing directory (cached), None when it is absent but planned for creation."""
        if directory in self._dirs:
            return self._dirs[directory]
        if directory in self._to_create:
            return None
        try:
            fd = open_directory(directory)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise HostFilesError('%s: cannot open it (%s)' % (directory, exc.strerror))
            fd = None
        if fd is None:
            return None
        self._dirs[directory] = fd
        return fd

    def _parent(self, want):
        parent, name = os.path.split(want.path)
        fd = self._dir_fd(parent)
        if fd is None and parent not in self._to_create:
            raise HostFilesError('%s: its directory %s does not exist; create it first or list it under directories '
                                 '(before it)' % (want.path, parent))
        return fd, name

    def _plan(self, want):
        """What to do for ``want``, looked at without changing anything; refuses what cannot be done."""
        if want.kind in ('restore', 'unbackup'):
            return self._plan_backup(want)
        parent_fd, name = self._parent(want)
        info = None if parent_fd is None else _lstat(parent_fd, name)
        if want.kind == 'directory':
            return self._plan_directory(want, parent_fd, name, info)
        old = None
        if info is not None:
            fd = open_regular(parent_fd, name, want.path, info)
            try:
                old = read_fd(fd, CONTENT_LIMIT, want.path, 'tls_files compares and backs up only small files')
            finally:
                os.close(fd)
        new = remove_env_entries(set_env_entries(old or b'', want.entries), want.absent_keys) \
            if want.kind == 'env' else want.content
        if old == new:
            return self._plan_attributes(want, info)
        self._diff(want, *self._content_diff(want, old, new))
        return Action(want, 'write', info, old, new)

    def _plan_backup(self, want):
        """Restore: the backup's bytes, read now (never through a link); unbackup: the backup to unlink. Nothing
        to do when there is no backup (or not even its directory)."""
        directory, name = os.path.split(want.path)
        parent_fd = self._dir_fd(directory)
        if want.kind == 'unbackup':
            info = None if parent_fd is None else _lstat(parent_fd, name)
            if info is None:
                return None
            if stat.S_ISDIR(info.st_mode):
                raise HostFilesError('%s: is a directory, not a backup of this module; move it away' % want.path)
            return Action(want, 'unlink', info)
        backup = _backup_name(name)
        info = None if parent_fd is None else _lstat(parent_fd, backup)
        if info is None:
            return None
        if info.st_uid != os.geteuid():
            raise HostFilesError('%s%s: is not a backup this module made (it belongs to uid %d); it is not put back. '
                                 'Check who wrote it, remove it and rerun' % (want.path, BACKUP_SUFFIX, info.st_uid))
        fd = open_regular(parent_fd, backup, want.path + BACKUP_SUFFIX, info)
        try:
            new = read_fd(fd, CONTENT_LIMIT, want.path + BACKUP_SUFFIX, 'tls_files restores only small files')
        finally:
            os.close(fd)
        current = _lstat(parent_fd, name)
        if current is not None:
            _check_regular(current, want.path)
        self._diff(want, 'current file\n', 'its backup (%s)\n' % (want.path + BACKUP_SUFFIX))
        return Action(want, 'restore', current, None, new)

    def _plan_directory(self, want, parent_fd, name, info):
        if info is None:
            self._to_create.add(want.path)
            self._diff(want, 'absent\n', 'directory\n')
            return Action(want, 'mkdir')
        if stat.S_ISLNK(info.st_mode):
            raise _refuse_link(want.path)
        if not stat.S_ISDIR(info.st_mode):
            raise HostFilesError('%s: exists and is not a directory; move it away or choose another path' % want.path)
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        self._dirs[want.path] = fd
        _same_file(fd, info, want.path)
        return self._plan_attributes(want, info)

    def _plan_attributes(self, want, info):
        """Owner, group and mode in place; an action when any differs."""
        differs = ((want.uid != -1 and info.st_uid != want.uid) or (want.gid != -1 and info.st_gid != want.gid)
                   or (want.mode is not None and stat.S_IMODE(info.st_mode) != want.mode))
        if not differs:
            return None
        self._diff(want, 'owner %d group %d mode %04o\n' % (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)),
                   'owner %d group %d mode %04o\n' % (
                       info.st_uid if want.uid == -1 else want.uid, info.st_gid if want.gid == -1 else want.gid,
                       stat.S_IMODE(info.st_mode) if want.mode is None else want.mode))
        return Action(want, 'attributes', info)

    def _diff(self, want, before, after):
        if self.want_diff and (before is not None or after is not None):
            self.diffs.append(dict(before=before or '', after=after or '', before_header=want.path,
                                   after_header=want.path))

    def _do(self, action):
        want = action.want
        try:
            getattr(self, '_do_' + action.what)(action)
        except OSError as exc:
            raise HostFilesError(
                '%s: cannot %s it (%s). %s; fix the cause and rerun, the rerun completes the rest'
                % (want.path, {'mkdir': 'create', 'unlink': 'remove'}.get(action.what, 'change'),
                   exc.strerror or exc,
                   'The paths in changed_paths were changed before it (their backups in backups)'
                   if self.changed_paths else 'Nothing was changed before it'))
        if action.what == 'unlink':
            self.removed_backups.append(want.path)
        else:
            self.changed_paths.append(want.path)

    def _do_unlink(self, action):
        parent_fd, name = self._parent(action.want)
        try:
            os.unlink(name, dir_fd=parent_fd)
        except OSError as exc:
            # Already gone: this call's own clean-up of the directory (a file written beside it) removed it.
            if exc.errno != errno.ENOENT:
                raise
        os.fsync(parent_fd)

    def _do_restore(self, action):
        """The backup's bytes back in one rename (mode and owner as asked, else the file's), then the backup gone."""
        want = action.want
        parent_fd, name = self._parent(want)
        write_in(parent_fd, name, action.new, *_final_attributes(want, action.info))
        os.unlink(_backup_name(name), dir_fd=parent_fd)
        os.fsync(parent_fd)
        self.removed_backups.append(want.path + BACKUP_SUFFIX)

    def _do_mkdir(self, action):
        want = action.want
        parent_fd, name = self._parent(want)
        os.mkdir(name, 0o700, dir_fd=parent_fd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        self._dirs[want.path] = fd
        self._to_create.discard(want.path)
        if os.fstat(fd).st_uid != os.geteuid():
            raise HostFilesError('%s: was replaced right after this run created it; find out who and rerun'
                                 % want.path)
        self._fix_attributes(fd, want, os.fstat(fd))

    def _do_attributes(self, action):
        want = action.want
        if want.kind == 'directory':
            self._fix_attributes(self._dirs[want.path], want, action.info)
            return
        parent_fd, name = self._parent(want)
        fd = open_regular(parent_fd, name, want.path, action.info)
        try:
            self._fix_attributes(fd, want, action.info)
        finally:
            os.close(fd)

    @staticmethod
    def _fix_attributes(fd, want, info):
        mode = stat.S_IMODE(info.st_mode)
        if (want.uid != -1 and info.st_uid != want.uid) or (want.gid != -1 and info.st_gid != want.gid):
            if want.mode is not None and mode & ~want.mode:
                # Narrow first: the new owner or group never gets, even for an instant, a right the final
                # mode does not give (a key going from root's 0640 to the service user's 0600).
                mode &= want.mode
                os.fchmod(fd, mode)
            os.fchown(fd, want.uid, want.gid)
            mode = stat.S_IMODE(os.fstat(fd).st_mode)  # a chown clears setuid and setgid bits
        if want.mode is not None and mode != want.mode:
            os.fchmod(fd, want.mode)

    def _do_write(self, action):
        want, info = action.want, action.info
        parent_fd, name = self._parent(want)
        if want.backup and action.old is not None:
            # Root's own file: a secret's backup is 0600, a public file's keeps its mode.
            backup = _backup_name(name)
            write_in(parent_fd, backup, action.old, 0o600 if want.secret else stat.S_IMODE(info.st_mode), -1, -1)
            self.backups[want.path] = os.path.join(os.path.dirname(want.path), backup)
        write_in(parent_fd, name, action.new, *_final_attributes(want, info))

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
        # A removed key: its name only (whatever it held is not shown).
        lines_before += ['%s=%s\n' % (key, SECRET_MARK) for key in want.absent_keys if key in before]
        return ''.join(lines_before), ''.join(lines_after)

    @staticmethod
    def unique_keys(want):
        seen, keys = set(), []
        for key, value in want.entries:
            if key not in seen:
                seen.add(key)
                keys.append((key, value))
        return keys
