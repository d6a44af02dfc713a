# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Keys born on their hosts (backend of the host_key module).

Each key lives in root's own directory on the host (default /etc/fleetpki/keys, root:root 0700) as
``<name>-key.pem`` (0600) beside ``<name>.csr`` (0644), the certificate request the control node signs. The key
never leaves the host: the roles copy it from here into the service's own path (tls_files' ``src``) along with the
certificate the control node issued for it, so the copy here is the *next* key and the service's is the *live*
one. Rotating writes a new key here at once; the service keeps its live key and certificate until the roll installs
the new pair, so a run that stops in between leaves the service as it was, and the next run certifies and rolls the
new key.

The request is kept and sent again byte for byte while the key and the names stay (ECDSA signs with a random
nonce: a new request of the same key would differ), so the control node's rerun decides from its record.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import errno
import os
import re
import stat

from ansible_collections.fleetpki.mtls.plugins.module_utils._host import host_files
from ansible_collections.fleetpki.mtls.plugins.module_utils._host.host_files import HostFilesError
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError

KEY_MODE = 0o600
CSR_MODE = 0o644
DIR_MODE = 0o700
_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]*$')
# A file there that is not as this module writes it (another owner, a wider mode): never used, replaced.
UNTRUSTED = object()


class KeyRequest(object):
    def __init__(self, spec):
        self.name = spec['name']
        if not self.name or not _NAME_RE.match(self.name):
            raise HostFilesError('keys entry %r: the name must be letters, digits, ".", "_" and "-"' % (self.name,))
        self.common_name = spec['common_name']
        self.dns = sorted(set(name.lower() for name in spec.get('dns') or []))
        self.ip = sorted(set(crypto.normalise_ip(ip) for ip in spec.get('ip') or []))
        self.key_type = spec.get('key_type') or 'ec-p256'
        try:
            crypto.check_key_type(self.key_type, 'keys entry %s key_type' % self.name)
        except PkiError as exc:
            raise HostFilesError(str(exc))
        self.key_name = '%s-key.pem' % self.name
        self.csr_name = '%s.csr' % self.name


def build_csr(key, request):
    names = [crypto.x509.DNSName(name) for name in request.dns]
    names += [crypto.x509.IPAddress(crypto.ipaddress.ip_address(u'%s' % ip)) for ip in request.ip]
    builder = crypto.x509.CertificateSigningRequestBuilder().subject_name(crypto.build_name(request.common_name))
    if names:
        builder = builder.add_extension(crypto.x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, crypto.signing_hash(key)).public_bytes(crypto.serialization.Encoding.PEM)


def _csr_fits(data, key, request):
    """The kept request is of this key and asks for exactly these names."""
    try:
        csr = crypto.x509.load_pem_x509_csr(data)
        if crypto.public_key_der(csr.public_key()) != crypto.public_key_der(key):
            return False
        dns, ips = crypto.sans(csr)
        return (csr.subject.rfc4514_string() == crypto.build_name(request.common_name).rfc4514_string()
                and sorted(set(name.lower() for name in dns)) == request.dns
                and sorted(set(crypto.normalise_ip(ip) for ip in ips)) == request.ip
                and csr.is_signature_valid)
    except (ValueError, crypto.UnsupportedAlgorithm):
        return False


class HostKeys(object):
    def __init__(self, directory, keys, rotate=False, check_mode=False, rotate_names=()):
        self.directory = os.path.abspath(directory)
        self.rotate_names = set(rotate_names or ())
        self.requests = [KeyRequest(spec) for spec in keys]
        names = [request.name for request in self.requests]
        if len(set(names)) != len(names):
            raise HostFilesError('keys: every entry needs its own name (%s)' % ', '.join(sorted(names)))
        self.rotate = rotate
        self.check_mode = check_mode
        self.results = {}
        self.changed = False

    def run(self):
        dir_fd = self._open_directory()
        try:
            for request in self.requests:
                self.results[request.name] = self._one(dir_fd, request)
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
        return self.results

    def _open_directory(self):
        """root's own directory, made 0700 when absent (missing parents 0755, as /etc/fleetpki); refused when anyone
        else could write or read it. Each missing component is made in its parent's descriptor: no link is
        followed."""
        existing, missing = self.directory, []
        while True:
            try:
                fd = host_files.open_directory(existing)
                break
            except OSError as exc:
                if exc.errno != errno.ENOENT or existing == '/':
                    raise HostFilesError('%s: cannot open %s (%s)' % (self.directory, existing, exc.strerror))
                existing, name = os.path.split(existing)
                missing.insert(0, name)
        if not missing:
            return self._checked_dir(fd)
        self.changed = True
        if self.check_mode:
            os.close(fd)
            return None
        try:
            for index, name in enumerate(missing):
                last = index == len(missing) - 1
                os.mkdir(name, DIR_MODE if last else 0o755, dir_fd=fd)
                child = os.open(name, host_files._DIR_FLAGS, dir_fd=fd)  # pylint: disable=protected-access
                os.close(fd)
                fd = child
                os.fchown(fd, os.geteuid(), os.getegid())
                os.fchmod(fd, DIR_MODE if last else 0o755)
        except BaseException:
            os.close(fd)
            raise
        return self._checked_dir(fd)

    def _checked_dir(self, fd):
        info = os.fstat(fd)
        if info.st_uid != os.geteuid() or stat.S_IMODE(info.st_mode) & 0o077:
            os.close(fd)
            raise HostFilesError('%s: holds private keys and must be root\'s alone (owner uid %d, mode %04o): a key '
                                 'another user could read or replace is not the host\'s own. Make it root:root 0700 '
                                 '(chown root:root %s; chmod 0700 %s) and rerun'
                                 % (self.directory, info.st_uid, stat.S_IMODE(info.st_mode), self.directory,
                                    self.directory))
        return fd

    def _read(self, dir_fd, name, mode):
        """The bytes of ``name``, or None when absent; refused when it is not a plain file of ours in ``mode``."""
        if dir_fd is None:
            return None
        info = host_files._lstat(dir_fd, name)  # pylint: disable=protected-access
        if info is None:
            return None
        path = os.path.join(self.directory, name)
        fd = host_files.open_regular(dir_fd, name, path, info)
        try:
            opened = os.fstat(fd)
            if opened.st_uid != os.geteuid() or stat.S_IMODE(opened.st_mode) & ~mode & 0o777:
                return UNTRUSTED
            return host_files.read_fd(fd, host_files.CONTENT_LIMIT, path, 'a key or request is small')
        finally:
            os.close(fd)

    def _one(self, dir_fd, request):
        key_data = self._read(dir_fd, request.key_name, KEY_MODE)
        key, reason = None, None
        if key_data is UNTRUSTED:
            reason = 'the key there was not root\'s alone (owner or mode): a new one is made'
        elif key_data is not None and not self.rotate and request.name not in self.rotate_names:
            try:
                key = crypto.load_private_key(key_data, os.path.join(self.directory, request.key_name))
            except PkiError:
                reason = 'the key there did not load: a new one is made'
            else:
                if crypto.key_type_of(key) != request.key_type:
                    key, reason = None, 'key type changed to %s' % request.key_type
        elif key_data is None:
            reason = 'no key yet'
        elif request.name in self.rotate_names and not self.rotate:
            reason = 'its certificate was revoked: a new key is made'
        else:
            reason = 'rotated'
        if key is None:
            self.changed = True
            if self.check_mode:
                return {'csr': None, 'key_made': True, 'reason': reason}
            key = crypto.generate_key(request.key_type)
            host_files.write_in(dir_fd, request.key_name, crypto.private_key_pem(key), KEY_MODE,
                                os.geteuid(), os.getegid())
        csr_data = self._read(dir_fd, request.csr_name, CSR_MODE)
        if reason is not None or csr_data in (None, UNTRUSTED) or not _csr_fits(csr_data, key, request):
            csr_data = build_csr(key, request)
            if self.check_mode:
                self.changed = True
            else:
                host_files.write_in(dir_fd, request.csr_name, csr_data, CSR_MODE, os.geteuid(), os.getegid())
                self.changed = True
        return {'csr': csr_data.decode('ascii'), 'key_made': reason is not None, 'reason': reason or 'kept'}
