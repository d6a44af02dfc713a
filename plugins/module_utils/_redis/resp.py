# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A minimal RESP2 client over TCP or TLS, and redis.conf parsing (standard library only)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import shlex
import socket
import ssl


class RedisError(Exception):
    """An error reply of Redis (-ERR, -NOPERM, -WRONGPASS ...), or a reply this client cannot read."""


class HandshakeError(Exception):
    """Redis answered, but the TLS handshake failed (a certificate it or we refuse)."""


class ServerCertExpired(HandshakeError):
    """The certificate Redis serves has expired (OpenSSL's X509_V_ERR_CERT_HAS_EXPIRED)."""


X509_V_ERR_CERT_HAS_EXPIRED = 10


class Connection:
    """One connection to Redis. TLS when tls_files (cert, key, ca) are given: the chain to the CA is verified,
    the host name is not (the admin connects to 127.0.0.1, which the certificate need not carry)."""

    def __init__(self, host, port, tls_files=None, timeout=5.0, verify=True):
        context = None
        if tls_files:
            context = ssl.create_default_context(cafile=tls_files['ca'])
            context.check_hostname = False
            if not verify:
                # Only to reach a Redis whose own certificate has already expired (recovery): the connection
                # is to this host's loopback, and the admin still authenticates with its password.
                context.verify_mode = ssl.CERT_NONE
            context.load_cert_chain(tls_files['cert'], tls_files['key'])
        sock = socket.create_connection((host, int(port)), timeout)
        self.peer_cert = None
        if context is not None:
            try:
                sock = context.wrap_socket(sock)
            except ssl.SSLCertVerificationError as exc:
                sock.close()
                if exc.verify_code == X509_V_ERR_CERT_HAS_EXPIRED:
                    raise ServerCertExpired(str(exc))
                raise HandshakeError(str(exc))
            except (OSError, ssl.SSLError) as exc:
                sock.close()
                raise HandshakeError(str(exc))
            self.peer_cert = sock.getpeercert(binary_form=True)
        self.sock = sock
        self.reader = sock.makefile('rb')

    def call(self, *args):
        parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
        payload = b'*%d\r\n' % len(parts) + b''.join(b'$%d\r\n%s\r\n' % (len(p), p) for p in parts)
        self.sock.sendall(payload)
        return self._read()

    def _read(self):
        line = self.reader.readline()
        if not line:
            raise ConnectionError('Redis closed the connection')
        kind, rest = line[:1], line[1:-2]
        if kind == b'+':
            return rest.decode()
        if kind == b'-':
            raise RedisError(rest.decode())
        if kind == b':':
            return int(rest)
        if kind == b'$':
            size = int(rest)
            return None if size < 0 else self.reader.read(size + 2)[:-2].decode()
        if kind == b'*':
            size = int(rest)
            return None if size < 0 else [self._read() for dummy in range(size)]
        raise RedisError('unexpected reply %r' % line[:20])

    def close(self):
        # The reader made by makefile() holds the socket open too: close both, or Redis still sees this client.
        for closable in (self.reader, self.sock):
            try:
                closable.close()
            except OSError:
                pass


def parse_conf(text):
    """The directives of a redis.conf text, last one wins (as in Redis); `user` lines are kept apart, as
    {'user': [line words ...]} is not a directive a CONFIG GET can read. Includes are not followed."""
    conf, users = {}, []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        if not words:
            continue
        if words[0].lower() == 'user':
            users.append(words[1:])
        else:
            conf[words[0].lower()] = ' '.join(words[1:])
    return conf, users


def read_conf(path):
    with open(path) as handle:
        return parse_conf(handle.read())
