# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-host ACL users of a running Redis, changed with ACL SETUSER / DELUSER (never ACL LOAD: in Redis 7.0 it
drops the connections of every user it reloads).

A user is defined whole, `reset on|off #<sha256 of the password> <rules>`, so its state never depends on what
it was before. Whether a user differs is asked of Redis itself: the same words go to a short-lived probe user
(off, no password), and ACL GETUSER of both are compared, so Redis's own normalization of rules decides.
ACL SETUSER keeps the connections of a user whose password or rules change; a user turned off or removed has its
connections closed (CLIENT KILL USER; DELUSER closes them itself)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import binascii
import hashlib
import os
import re
import shlex
import time

from ansible_collections.fleetpki.mtls.plugins.module_utils._redis.resp import RedisError

USER_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$')
# Rules may not carry these: a second password, a password removal or on/off slipped into the rules of a client
# would defeat the point of its own identity (fleetpki sets them).
FORBIDDEN_WORDS = ('nopass', 'resetpass', 'reset', 'on', 'off')


class AclError(Exception):
    """A bad user definition; the message names the user and the fix."""


def password_hash(password):
    return hashlib.sha256(password.encode('utf-8')).hexdigest()


def user_words(user):
    """The ACL SETUSER words (after the name) that define the user whole."""
    return (['reset', 'on' if user.get('enabled', True) else 'off']
            + (['#' + password_hash(user['password'])] if user.get('password') else [])
            + shlex.split(user.get('rules') or ''))


def validate(users, reserved=()):
    """Every problem of the whole list at once, before anything is changed."""
    problems, seen = [], set()
    for user in users:
        name = user.get('name') or ''
        if not USER_NAME.match(name):
            problems.append('user name %r: use letters, digits, dot, dash or underscore (at most 128)' % name)
        elif name in seen:
            problems.append('user %s is listed twice' % name)
        elif name in reserved:
            problems.append('user %s is reserved (%s)' % (name, ', '.join(reserved)))
        seen.add(name)
        if user.get('enabled', True) and len(user.get('password') or '') < 16:
            problems.append('user %s: its password must be at least 16 characters' % name)
        rules = user.get('rules') or ''
        try:
            shlex.split(rules)
        except ValueError as exc:
            problems.append('user %s: rules %r do not parse: %s' % (name, rules, exc))
            continue
        # Redis reads these words in any case (NOPASS is nopass).
        bad = [w for w in shlex.split(rules) if w.lower() in FORBIDDEN_WORDS or w[:1] in ('<', '>', '#', '!')]
        if bad:
            problems.append('user %s: rules may not set passwords or on/off (%s): fleetpki does' % (name, ' '.join(bad)))
    if problems:
        raise AclError('; '.join(problems))


def getuser(conn, name):
    """ACL GETUSER as a dict, or None when there is no such user."""
    reply = conn.call('ACL', 'GETUSER', name)
    if reply is None:
        return None
    return dict(zip(reply[0::2], reply[1::2]))


def as_redis_would_store(conn, words):
    """ACL GETUSER of a probe user made with these words: how Redis normalizes them. The probe is off and
    keeps no password, so nobody can log in as it, and it is deleted at once."""
    probe = 'fleetpki-probe-' + binascii.hexlify(os.urandom(6)).decode()
    probe_words = [w for w in words if w not in ('on',) and not w.startswith('#')] + ['off']
    try:
        conn.call('ACL', 'SETUSER', probe, *probe_words)
        stored = getuser(conn, probe)
    finally:
        conn.call('ACL', 'DELUSER', probe)
    return stored


def differs(conn, live, words):
    """Does the live user (GETUSER dict) differ from what these words make?"""
    if live is None:
        return True
    wanted = as_redis_would_store(conn, words)
    wanted_flags = [f for f in wanted['flags'] if f != 'off'] + (['on'] if 'on' in words else ['off'])
    wanted_passwords = [w[1:] for w in words if w.startswith('#')]
    comparable = ('commands', 'keys', 'channels', 'selectors')
    return (sorted(live['flags']) != sorted(wanted_flags) or sorted(live['passwords']) != sorted(wanted_passwords)
            or any(live.get(k) != wanted.get(k) for k in comparable))


def clients_of(conn, name):
    own = str(conn.call('CLIENT', 'ID'))
    found = []
    for line in conn.call('CLIENT', 'LIST').splitlines():
        entry = dict(part.split('=', 1) for part in line.split(' ') if '=' in part)
        if entry.get('user') == name and entry.get('id') != own:
            found.append(entry.get('addr', '?'))
    return found


def kill_clients(conn, name):
    try:
        return int(conn.call('CLIENT', 'KILL', 'USER', name))
    except RedisError:
        return 0  # no such user any more: no client to close


def apply_users(conn, users, keep=(), purge=True, check=False):
    """Make the listed users exactly as defined; with purge, delete every other user but `default` and those in
    keep (the admin logged in as). Returns {'created': [], 'updated': [], 'disabled': [], 'deleted': [],
    'killed': {name: count}}."""
    result = {'created': [], 'updated': [], 'disabled': [], 'deleted': [], 'killed': {}}
    listed = set(user['name'] for user in users)
    for user in users:
        words = user_words(user)
        live = getuser(conn, user['name'])
        if not differs(conn, live, words):
            continue
        result['created' if live is None else 'updated'].append(user['name'])
        turned_off = not user.get('enabled', True) and live is not None and 'on' in live['flags']
        if turned_off:
            result['disabled'].append(user['name'])
        if check:
            continue
        conn.call('ACL', 'SETUSER', user['name'], *words)
        if turned_off:
            result['killed'][user['name']] = kill_clients(conn, user['name'])
    if purge:
        for name in conn.call('ACL', 'USERS'):
            # Every user not listed goes, probe-like names included: a user left by someone who was admin once
            # (or by the shared password during a migration) must not outlive the run.
            if name in listed or name == 'default' or name in keep:
                continue
            result['deleted'].append(name)
            if not check:
                conn.call('ACL', 'DELUSER', name)  # closes that user's connections
    return result


def default_user_state(conn):
    live = getuser(conn, 'default')
    return 'on' if live and 'on' in live['flags'] else 'off'


def turn_default_off(conn, timeout=0, check=False):
    """Turn the `default` user (the shared requirepass) off once no client uses it any more, waiting up to
    timeout seconds. Returns changed, default_clients (those still using it when the wait ran out)."""
    result = {'changed': False, 'default_clients': []}
    if default_user_state(conn) == 'off':
        return result
    deadline = time.time() + timeout
    while True:
        result['default_clients'] = clients_of(conn, 'default')
        if not result['default_clients'] or time.time() >= deadline:
            break
        time.sleep(0.5)
    if result['default_clients']:
        return result
    result['changed'] = True
    if not check:
        conn.call('ACL', 'SETUSER', 'default', 'reset', 'off')
        kill_clients(conn, 'default')
    return result
