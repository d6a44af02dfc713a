# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reaching a local Redis as its administrator, the way its current redis.conf says.

The redis.conf on the host is what the running Redis was started with (or what fleetpki applied last): it says
which port is open (plaintext during a migration, else TLS) and which TLS files Redis serves, which the admin
connection presents as its own client certificate (the Redis certificate carries clientAuth too).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ssl

from ansible_collections.fleetpki.mtls.plugins.module_utils._redis.resp import (
    Connection, HandshakeError, RedisError, ServerCertExpired, read_conf)


class AdminError(Exception):
    """An error an operator can act on; never carries a password."""


class Unreachable(AdminError):
    """Nothing answers where redis.conf says Redis listens (not running, or still starting)."""


class TlsRefused(AdminError):
    """Redis answers but no TLS session can be made (for example it refuses our certificate because the CA it
    loaded has expired): only a restart loads the files on disk."""


def endpoints(conf, tls_override=None, tls=False):
    """[(port, tls_files or None)] to try in order: the plaintext port while one is open (unless tls), then TLS
    with the conf's files (or those of tls_override). The file may be a step behind the running Redis (the
    plaintext port closed at runtime, redis.conf written next), hence more than one."""
    port, tls_port = int(conf.get('port', '6379') or 0), int(conf.get('tls-port', '0') or 0)
    found = []
    if port > 0 and not tls:
        found.append((port, None))
    if tls_port > 0:
        files = {'cert': conf.get('tls-cert-file'), 'key': conf.get('tls-key-file'),
                 'ca': conf.get('tls-ca-cert-file')}
        files.update(tls_override or {})
        found.append((tls_port, files))
    if not found:
        raise AdminError('redis.conf opens no port (port 0 and no tls-port)')
    return found


def credentials(conf, login_user, login_password, legacy_password):
    """The identities to try, in order: the admin user, then the shared password of the `default` user (a
    Redis from before per-host users, or the requirepass its redis.conf still holds)."""
    found = []
    if login_user and login_password:
        found.append((login_user, login_password))
    for password in (legacy_password, conf.get('requirepass')):
        if password and ('default', password) not in found:
            found.append(('default', password))
    return found


def open_connection(port, tls_files, verify, conf_path):
    """A connection to 127.0.0.1:port; raises Unreachable, TlsRefused or AdminError."""
    try:
        try:
            return Connection('127.0.0.1', port, tls_files, verify=verify)
        except ServerCertExpired:
            # A fleet back from a long shutdown: Redis still serves its expired certificate. The admin connection
            # is to this host's loopback and logs in with its password, so it goes on without checking the
            # certificate, to load the new one; the check after the reload verifies the new one as usual.
            return Connection('127.0.0.1', port, tls_files, verify=False)
    except HandshakeError as exc:
        raise TlsRefused('the TLS handshake with Redis on 127.0.0.1:%s failed: %s (client certificate %s, CA %s)'
                         % (port, exc, tls_files['cert'], tls_files['ca']))
    except ssl.SSLError as exc:
        raise AdminError('cannot use the client certificate %s and key %s with CA %s: %s'
                         % (tls_files['cert'], tls_files['key'], tls_files['ca'], exc))
    except (OSError, ValueError) as exc:
        raise Unreachable('cannot reach Redis on 127.0.0.1:%s as %s says: %s' % (port, conf_path, exc))


def connect(conf_path, login_user=None, login_password=None, legacy_password=None, tls_override=None,
            verify=True, port=None, tls=False):
    """(connection, user logged in as). Raises AdminError with what to do."""
    try:
        conf = read_conf(conf_path)[0]
    except (IOError, OSError) as exc:
        raise AdminError('cannot read %s: %s' % (conf_path, exc))
    candidates = endpoints(conf, tls_override, tls)
    if port:
        candidates = [(port, candidates[-1][1])]
    conn, unreachable = None, None
    for candidate_port, tls_files in candidates:
        try:
            conn = open_connection(candidate_port, tls_files, verify, conf_path)
            break
        except Unreachable as exc:
            unreachable = exc
    if conn is None:
        raise unreachable
    tried = []
    for user, password in credentials(conf, login_user, login_password, legacy_password):
        try:
            conn.call('AUTH', user, password)
            return conn, user
        except RedisError as exc:
            tried.append('%s (%s)' % (user, str(exc).split(' ', 1)[0]))
        except (OSError, ssl.SSLError) as exc:
            conn.close()
            raise AdminError('Redis closed the connection during AUTH: %s' % exc)
    try:
        conn.call('PING')
        return conn, 'default'
    except RedisError:
        conn.close()
        raise AdminError('cannot log in to Redis: tried %s. Check fleetpki_redis_admin_password (and, on a fleet '
                         'that still uses the shared password, fleetpki_redis_password) against the running '
                         'Redis.' % (', '.join(tried) or 'no password'))
