"""Change a running Redis to the settings redis.conf is about to get, without a restart (fleetpki.mtls.redis_tls).

Runs on the Redis host as root, before the role writes redis.conf: it reads the current redis.conf (what the
running Redis was started with, or what the role applied last) to know how to reach Redis and with which
password, so no secret travels on a command line or comes back in the output.

  redis_live.py apply CONF --desired-b64 B64 [--set-password] [--check]
      B64 is the new redis.conf (base64, without its requirepass line). Compares every directive in it with the
      live value (CONFIG GET) and sets those that differ in one CONFIG SET (applied atomically by Redis; on
      failure, for example an immutable setting, it keeps the old state and only a restart can apply the file).
      The wanted password comes from the environment (FLEETPKI_REDIS_PASSWORD). A plaintext port that is open stays open (its clients move first;
      see close-plain). Prints JSON: reachable, runtime (false: only a restart can apply the change), reason,
      changed (names), plain_port_kept, plain_clients (addresses of clients on the plaintext port).
  redis_live.py close-plain CONF [--timeout SECONDS] [--check]
      Waits until no client is connected to the plaintext port, then closes it (CONFIG SET port 0). Prints JSON:
      changed, plain_port, plain_clients (those still connected when the timeout ran out).

Exit status 0 whenever the JSON says what happened; 2 on a usage error.
"""
import argparse
import base64
import json
import os
import re
import shlex
import socket
import ssl
import sys
import time

# Order matters inside one CONFIG SET: the TLS context before the TLS listener that needs it; other directives
# follow in file order.
ORDER = ('tls-cert-file', 'tls-key-file', 'tls-ca-cert-file', 'tls-auth-clients', 'tls-protocols', 'tls-port',
         'port', 'bind', 'requirepass')
# Redis memory units: 1k = 1000 bytes, 1kb = 1024 bytes (as in redis.conf).
UNITS = {'k': 1000, 'kb': 1024, 'm': 1000 ** 2, 'mb': 1024 ** 2, 'g': 1000 ** 3, 'gb': 1024 ** 3}


class RedisError(Exception):
    pass


class Connection:
    """A minimal RESP2 client over TCP or TLS to 127.0.0.1 (redis-py is not on the Redis host)."""

    def __init__(self, port, tls_files=None, timeout=5.0):
        sock = socket.create_connection(('127.0.0.1', port), timeout)
        if tls_files:
            context = ssl.create_default_context(cafile=tls_files['ca'])
            context.check_hostname = False  # 127.0.0.1; the chain to the fleet CA is still verified
            context.load_cert_chain(tls_files['cert'], tls_files['key'])
            sock = context.wrap_socket(sock)
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
        try:
            self.sock.close()
        except OSError:
            pass


def read_conf(path):
    with open(path) as handle:
        return parse_conf(handle.read())


def parse_conf(text):
    """The directives of redis.conf, last one wins (as in Redis). Includes are not followed."""
    conf = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        if words:
            conf[words[0].lower()] = ' '.join(words[1:])
    return conf


def connect(conf):
    """Reach Redis the way its current redis.conf says: plaintext if a plain port is open, else TLS."""
    port, tls_port = int(conf.get('port', '6379') or 0), int(conf.get('tls-port', '0') or 0)
    if port > 0:
        conn = Connection(port)
    elif tls_port > 0:
        conn = Connection(tls_port, {'cert': conf.get('tls-cert-file'), 'key': conf.get('tls-key-file'),
                                     'ca': conf.get('tls-ca-cert-file')})
    else:
        raise RedisError('redis.conf opens no port (port 0 and no tls-port)')
    if conf.get('requirepass'):
        conn.call('AUTH', conf['requirepass'])
    return conn


def client_port(entry):
    laddr = entry.get('laddr', '')
    return int(laddr.rsplit(':', 1)[1]) if ':' in laddr else None


def clients_on(conn, port):
    """Addresses of the clients connected to a local port, this connection excluded."""
    own = conn.call('CLIENT', 'ID')
    found = []
    for line in conn.call('CLIENT', 'LIST').splitlines():
        entry = dict(part.split('=', 1) for part in line.split(' ') if '=' in part)
        if entry.get('id') != str(own) and client_port(entry) == port:
            found.append(entry.get('addr', '?'))
    return found


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


def apply(args):
    conf = read_conf(args.conf)
    wanted = parse_conf(base64.b64decode(args.desired_b64).decode()) if args.desired_b64 else {}
    wanted.pop('requirepass', None)  # only ever from the environment
    if args.set_password:
        wanted['requirepass'] = os.environ.get('FLEETPKI_REDIS_PASSWORD', '')
    result = {'reachable': False, 'runtime': True, 'reason': '', 'changed': [], 'plain_port_kept': 0,
              'plain_clients': []}
    try:
        conn = connect(conf)
        live = {name: live_value(conn, name) for name in set(wanted) | {'port', 'tls-port'}}
    except (OSError, RedisError, ssl.SSLError) as exc:
        result['reason'] = 'cannot reach Redis as %s says: %s' % (args.conf, exc)
        return result
    result['reachable'] = True
    live_port, live_tls_port = int(live.get('port') or 0), int(live.get('tls-port') or 0)
    if live_port > 0:
        result['plain_clients'] = clients_on(conn, live_port)
    # Closing the plaintext port waits until its clients have moved (close-plain, after the workers' roll).
    if 'port' in wanted and int(wanted['port']) == 0 and live_port > 0:
        wanted['port'] = str(live_port)
        result['plain_port_kept'] = live_port
    want_port, want_tls_port = int(wanted.get('port', live_port)), int(wanted.get('tls-port', live_tls_port))
    swaps_plain_to_tls = live_port > 0 and want_tls_port == live_port
    swaps_tls_to_plain = live_tls_port > 0 and want_port == live_tls_port > 0
    if swaps_plain_to_tls or swaps_tls_to_plain:
        result['runtime'] = False
        result['reason'] = ('port %d changes from %s to %s: a running Redis cannot hand a port from one listener '
                            'to the other' % (live_port or live_tls_port, 'plaintext' if live_port else 'TLS',
                                              'TLS' if live_port else 'plaintext'))
        conn.close()
        return result
    names = [name for name in ORDER if name in wanted] + [name for name in wanted if name not in ORDER]
    unreadable = [name for name in names if live[name] is None]
    if unreadable:
        result['runtime'] = False
        result['reason'] = 'Redis cannot report %s at runtime' % ', '.join(unreadable)
        conn.close()
        return result
    differing = [name for name in names if normalized(wanted[name]) != normalized(live[name])]
    result['changed'] = differing
    if differing and not args.check:
        pairs = []
        for name in differing:
            pairs += [name, wanted[name]]
        try:
            conn.call('CONFIG', 'SET', *pairs)
        except RedisError as exc:
            result['runtime'] = False
            result['reason'] = 'Redis refused CONFIG SET %s: %s' % (' '.join(differing), exc)
            result['changed'] = []
        else:
            if wanted.get('requirepass') and 'requirepass' in differing:
                conn.call('AUTH', wanted['requirepass'])
            still = [name for name in differing if normalized(live_value(conn, name)) != normalized(wanted[name])]
            if still:
                result['runtime'] = False
                result['reason'] = 'after CONFIG SET, Redis still differs in %s' % ', '.join(still)
    conn.close()
    return result


def close_plain(args):
    conf = read_conf(args.conf)
    port = int(conf.get('port', '6379') or 0)
    result = {'changed': False, 'plain_port': port, 'plain_clients': []}
    if port == 0:
        return result
    tls_conf = dict(conf, port='0')  # through the TLS port, so this connection is not one of the waited for
    conn = connect(tls_conf)
    deadline = time.time() + args.timeout
    while True:
        result['plain_clients'] = clients_on(conn, port)
        if not result['plain_clients'] or time.time() >= deadline:
            break
        time.sleep(1)
    if not result['plain_clients']:
        if not args.check:
            conn.call('CONFIG', 'SET', 'port', '0')
        result['changed'] = True
    conn.close()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    sub = parser.add_subparsers(dest='command', required=True)
    apply_parser = sub.add_parser('apply')
    apply_parser.add_argument('conf')
    apply_parser.add_argument('--desired-b64')
    apply_parser.add_argument('--set-password', action='store_true')
    apply_parser.add_argument('--check', action='store_true')
    close_parser = sub.add_parser('close-plain')
    close_parser.add_argument('conf')
    close_parser.add_argument('--timeout', type=float, default=120)
    close_parser.add_argument('--check', action='store_true')
    args = parser.parse_args()
    result = apply(args) if args.command == 'apply' else close_plain(args)
    json.dump(result, sys.stdout, sort_keys=True)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
