# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""File handling: atomic writes, the CA directory lock, writability checks.

Every write goes to a temp file in the target directory and is renamed over
the target, so a reader (or a run killed with SIGKILL) never sees half a file.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import fcntl
import os
import stat
import tempfile

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError

TMP_PREFIX = '.fleetpki-tmp-'


def read_bytes(path):
    with open(path, 'rb') as handle:
        return handle.read()


def file_mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def read_bytes_and_mode(path):
    """The content and permission bits of ``path`` from one open (a rerun reads every key and cert)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        with os.fdopen(fd, 'rb') as handle:
            fd = None
            return handle.read(), mode
    finally:
        if fd is not None:
            os.close(fd)


def unwritable_reason(directory):
    """None when ``directory`` exists as a writable directory or could be created; else why not.

    Walks up to the first existing ancestor so that nothing is created to find out.
    """
    path = os.path.abspath(directory)
    missing = False
    while True:
        if os.path.lexists(path):
            if not os.path.isdir(path):
                return '%s is not a directory' % path
            if not os.access(path, os.W_OK | os.X_OK):
                return '%s is not writable' % path
            return None
        missing = True
        parent = os.path.dirname(path)
        if parent == path:
            return 'no existing ancestor of %s' % directory if missing else None
        path = parent


def ensure_dir(directory, mode=0o755):
    try:
        os.makedirs(directory, mode)
    except OSError as exc:
        if exc.errno != errno.EEXIST or not os.path.isdir(directory):
            raise PkiError('cannot create directory %s: %s' % (directory, exc.strerror))


def _create_temp(directory, name):
    """A new file beside ``name``, created exclusively, named from our pid (tempfile's random names cost a third of
    writing 1000 certs' files); another process's or a killed run's file of that name makes us fall back to
    mkstemp. Every name starts with TMP_PREFIX, so remove_stale_temps finds what a killed run left."""
    tmp_path = os.path.join(directory, '%s%s.%d' % (TMP_PREFIX, name, os.getpid()))
    try:
        return os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0), 0o600), tmp_path
    except (IOError, OSError) as exc:
        if exc.errno != errno.EEXIST:
            raise
    return tempfile.mkstemp(prefix=TMP_PREFIX + name + '.', dir=directory)


def write_temp(directory, name, data, mode):
    """Write ``data`` to a fresh temp file beside ``name`` (already at ``mode``) and return its path."""
    fd, tmp_path = _create_temp(directory, name)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp_path)
        raise
    os.close(fd)
    return tmp_path


def atomic_write(path, data, mode):
    """Replace ``path`` with ``data`` at ``mode`` in one rename."""
    directory, name = os.path.split(path)
    tmp_path = write_temp(directory, name, data, mode)
    try:
        os.rename(tmp_path, path)
    except BaseException:
        os.unlink(tmp_path)
        raise


def fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temps(directory):
    """Remove temp files a killed run left behind (only ours, by prefix)."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith(TMP_PREFIX):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


class DirectoryLock:
    """An exclusive flock on a directory itself: serialises runs without creating a lock file."""

    def __init__(self, directory):
        self.directory = directory
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.directory, os.O_RDONLY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc_info):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None
        return False
