# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runtime changes to a running Redis, none of which drops a client: CONFIG SET of a new redis.conf, the TLS
files reloaded in one CONFIG SET, the plaintext port closed once its clients have moved, and the check that a
new TLS connection presents the installed certificate."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import re
import socket
import ssl
import time

from ansible_collections.fleetpki.mtls.plugins.module_utils._redis.resp import RedisError, parse_conf

# Order matters inside one CONFIG SET: the TLS context before the TLS listener that needs it; other directives
# follow in file order.
ORDER = ('tls-cert-file', 'tls-key-file', 'tls-ca-cert-file', 'tls-auth-clients', 'tls-protocols', 'tls-port',
         'port', 'bind', 'requirepass')
# Redis memory units: 1k = 1000 bytes, 1kb = 1024 bytes (as in redis.conf).
UNITS = {'k': 1000, 'kb': 1024, 'm': 1000 ** 2, 'mb': 1024 ** 2, 'g': 1000 ** 3, 'gb': 1024 ** 3}
# Secrets other than requirepass are never compared (CONFIG GET would bring them back); they take effect at the
# next restart.
NOT_COMPARED = ('masterauth', 'tls-key-file-pass', 'tls-client-key-file-pass')


def client_entries(conn):
    """CLIENT LIST as dicts, this connection excluded."""
    own = str(conn.call('CLIENT', 'ID'))
    entries = []
    for line in conn.call('CLIENT', 'LIST').splitlines():
        entry = dict(part.split('=', 1) for part in line.split(' ') if '=' in part)
        if entry.get('id') != own:
            entries.append(entry)
    return entries


def local_port(entry):
    laddr = entry.get('laddr', '')
    return int(laddr.rsplit(':', 1)[1]) if ':' in laddr else None


def clients_on(conn, port):
    """Addresses of the clients connected to a local port."""
    return [e.get('addr', '?') for e in client_entries(conn) if local_port(e) == port]


def live_value(conn, name):
    """The live value, or None when Redis has no such parameter to read (rename-command, include, ...)."""
    reply = conn.call('CONFIG', 'GET', name)
    return reply[1] if reply and len(reply) > 1 else None


def normalized(value):
    """A redis.conf value the way CONFIG GET shows it (memory units in bytes, yes/no in lower case)."""
    value = (value or '').strip()
    match = re.match(r'^(\d+)(k|kb|m|mb|g|gb)$', value.lower())
    if match:
        return str(int(match.group(1)) * UNITS[match.group(2)])
    return value.lower() if value.lower() in ('yes', 'no') else value


def apply_config(conn, desired_text, check=False):
    """Compare every directive of the new redis.conf with the live value and set those that differ in one
    CONFIG SET (Redis applies it atomically: on failure it keeps the old state, and only a restart can load the
    file). A plaintext port that is open stays open (its clients move first; see close_plain).

    Returns reachable, runtime (false: only a restart can apply the file), reason, changed (names),
    plain_port_kept, plain_clients."""
    wanted = parse_conf(desired_text)[0]
    for name in NOT_COMPARED:
        wanted.pop(name, None)
    result = {'reachable': True, 'runtime': True, 'reason': '', 'changed': [], 'plain_port_kept': 0,
              'plain_clients': []}
    live = dict((name, live_value(conn, name)) for name in set(wanted) | set(['port', 'tls-port']))
    live_port, live_tls_port = int(live.get('port') or 0), int(live.get('tls-port') or 0)
    if live_port > 0:
        result['plain_clients'] = clients_on(conn, live_port)
    if 'port' in wanted and int(wanted['port']) == 0 and live_port > 0:
        wanted['port'] = str(live_port)
        result['plain_port_kept'] = live_port
    want_port, want_tls_port = int(wanted.get('port', live_port)), int(wanted.get('tls-port', live_tls_port))
    if (live_port > 0 and want_tls_port == live_port) or (live_tls_port > 0 and want_port == live_tls_port > 0):
        result['runtime'] = False
        result['reason'] = ('port %d changes from %s to %s: a running Redis cannot hand a port from one listener '
                            'to the other' % (live_port or live_tls_port, 'plaintext' if live_port else 'TLS',
                                              'TLS' if live_port else 'plaintext'))
        return result
    names = [name for name in ORDER if name in wanted] + [name for name in wanted if name not in ORDER]
    unreadable = [name for name in names if live[name] is None]
    if unreadable:
        result['runtime'] = False
        result['reason'] = 'Redis cannot report %s at runtime' % ', '.join(unreadable)
        return result
    differing = [name for name in names if normalized(wanted[name]) != normalized(live[name])]
    result['changed'] = differing
    if not differing or check:
        return result
    pairs = []
    for name in differing:
        pairs += [name, wanted[name]]
    try:
        conn.call('CONFIG', 'SET', *pairs)
    except RedisError as exc:
        result.update(runtime=False, changed=[],
                      reason='Redis refused CONFIG SET %s: %s' % (' '.join(differing), exc))
        return result
    still = [name for name in differing if normalized(live_value(conn, name)) != normalized(wanted[name])]
    if still:
        result.update(runtime=False, reason='after CONFIG SET, Redis still differs in %s' % ', '.join(still))
    return result


def close_plain(conn, timeout, check=False):
    """Wait until no client uses the plaintext port, then close it (CONFIG SET port 0). The connection given
    must not be on the plaintext port itself. Returns changed, plain_port, plain_clients (those still there
    when the wait ran out)."""
    port = int(live_value(conn, 'port') or 0)
    result = {'changed': False, 'plain_port': port, 'plain_clients': []}
    if port == 0:
        return result
    deadline = time.time() + timeout
    while True:
        result['plain_clients'] = clients_on(conn, port)
        if not result['plain_clients'] or time.time() >= deadline:
            break
        time.sleep(1)
    if not result['plain_clients']:
        if not check:
            conn.call('CONFIG', 'SET', 'port', '0')
        result['changed'] = True
    return result


def reload_tls(conn, cert, key, ca):
    """One CONFIG SET with cert, key and CA: Redis swaps its TLS context atomically, existing connections
    stay; on a bad pair it answers an error and keeps serving the old files."""
    conn.call('CONFIG', 'SET', 'tls-cert-file', cert, 'tls-key-file', key, 'tls-ca-cert-file', ca)


def fingerprint(der):
    return hashlib.sha256(der).hexdigest()


def first_cert_der(text):
    """The DER of the first certificate of a PEM file. A certificate file carries its issuing CA's after it (two
    tiers); ssl.PEM_cert_to_DER_cert on the whole file would decode past the first END line whenever the leaf's
    base64 has no padding to stop at."""
    start = text.index(ssl.PEM_HEADER)
    return ssl.PEM_cert_to_DER_cert(text[start:text.index(ssl.PEM_FOOTER, start) + len(ssl.PEM_FOOTER)])


def presented_cert(port, ca, cert, key, expected_file, host='127.0.0.1'):
    """(ok, message): does a new mTLS connection get the certificate in expected_file?"""
    with open(expected_file) as handle:
        expected = first_cert_der(handle.read())
    context = ssl.create_default_context(cafile=ca)
    context.check_hostname = False  # the certificate itself is compared below
    context.load_cert_chain(cert, key)
    try:
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                presented = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        return False, 'no TLS handshake with %s:%s: %s' % (host, port, exc)
    if presented != expected:
        return False, ('%s:%s presents sha256 %s, the file %s holds sha256 %s'
                       % (host, port, fingerprint(presented), expected_file, fingerprint(expected)))
    return True, '%s:%s presents %s (sha256 %s)' % (host, port, expected_file, fingerprint(expected))
