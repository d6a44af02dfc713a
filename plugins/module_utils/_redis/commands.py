# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The commands of module redis_admin: each connects as the admin, does one job and returns its result dict
(with `changed`). Errors an operator can act on are raised as AdminError."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ssl

from ansible_collections.fleetpki.mtls.plugins.module_utils._redis import acl, live
from ansible_collections.fleetpki.mtls.plugins.module_utils._redis.admin import AdminError, TlsRefused, Unreachable, connect
from ansible_collections.fleetpki.mtls.plugins.module_utils._redis.resp import RedisError, read_conf


def _tls_override(params):
    files = {'cert': params.get('tls_cert_file'), 'key': params.get('tls_key_file'), 'ca': params.get('tls_ca_file')}
    return dict((k, v) for k, v in files.items() if v)


def _connect(params, tls_only=False, own_files=True):
    """Connect as the admin; own_files=False ignores tls_*_file (reload_tls: those are the files to load, the
    connection presents what redis.conf names)."""
    port = None
    if tls_only:
        port = int(read_conf(params['conf_path'])[0].get('tls-port', '0') or 0)
        if not port:
            raise AdminError('%s opens no TLS port (tls-port)' % params['conf_path'])
    conn, user = connect(params['conf_path'], params['login_user'], params['login_password'],
                         params['legacy_password'], _tls_override(params) if own_files else None,
                         verify=params['verify_server'],
                         port=port, tls=tls_only)
    return conn, user


def config(params, check):
    """A new redis.conf (desired_conf) into the running Redis with one CONFIG SET; reachable=false when nothing
    answers (the caller then restarts it). A Redis that answers but refuses the login is an error, never a
    reason to restart."""
    try:
        conn, user = _connect(params)
    except (Unreachable, TlsRefused) as exc:
        # tls_refused: Redis runs but takes no TLS session (an expired CA in its context): a restart loads the
        # files on disk, so the caller restarts it even when redis.conf did not change.
        return {'changed': False, 'reachable': False, 'runtime': False, 'reason': str(exc), 'changed_settings': [],
                'plain_port_kept': 0, 'plain_clients': [], 'tls_refused': isinstance(exc, TlsRefused)}
    try:
        result = live.apply_config(conn, params['desired_conf'] or '', check)
    finally:
        conn.close()
    result['changed_settings'] = result.pop('changed')
    result['changed'] = bool(result['changed_settings']) and result['runtime']
    result['login_user'] = user
    return result


def reload_tls(params, check):
    conn = _connect(params, own_files=False)[0]
    try:
        if not check:
            live.reload_tls(conn, params['tls_cert_file'], params['tls_key_file'], params['tls_ca_file'])
    except RedisError as exc:
        raise AdminError('Redis refused the new TLS files (%s, %s, %s): %s. It keeps serving the previous ones.'
                         % (params['tls_cert_file'], params['tls_key_file'], params['tls_ca_file'], exc))
    finally:
        conn.close()
    return {'changed': True}


def check_tls(params, check):
    """PING as the admin over a new mTLS connection to the TLS port; with expect_cert, the certificate Redis
    presents must be that file."""
    conn = _connect(params, tls_only=True)[0]
    try:
        pong = conn.call('PING')
    finally:
        conn.close()
    result = {'changed': False, 'ping': pong}
    if params['expect_cert']:
        conf = read_conf(params['conf_path'])[0]
        files = dict({'cert': conf.get('tls-cert-file'), 'key': conf.get('tls-key-file'),
                      'ca': conf.get('tls-ca-cert-file')}, **_tls_override(params))
        ok, message = live.presented_cert(conf.get('tls-port'), files['ca'], files['cert'], files['key'],
                                          params['expect_cert'])
        result.update(presented_ok=ok, presented=message)
        if not ok:
            raise AdminError(message)
    return result


def close_plain(params, check):
    conn = _connect(params, tls_only=True)[0]
    try:
        result = live.close_plain(conn, params['drain_timeout'], check)
    finally:
        conn.close()
    return result


def users(params, check):
    """Per-host ACL users; the admin user logged in as is always kept. default_user: on (leave it), off (turn it
    off once no client uses it, waiting up to drain_timeout) or unchanged."""
    users_list = params['users'] or []
    acl.validate(users_list, reserved=('default',))
    conn, user = _connect(params)
    first_user = user
    try:
        result = acl.apply_users(conn, users_list, keep=(params['login_user'],), purge=params['purge'], check=check)
        result['default_clients'] = []
        if params['default_user'] == 'off' and user == 'default' and not check:
            # Logged in with the shared password: turning `default` off would take this very connection's rights
            # away. The admin user exists now; go on as the admin.
            conn.close()
            conn, user = _connect(params)
        if params['default_user'] == 'off':
            closed = acl.turn_default_off(conn, params['drain_timeout'], check)
            result['default_clients'] = closed['default_clients']
            result['default_turned_off'] = closed['changed']
        result['default_user'] = acl.default_user_state(conn) if not check or not result.get('default_turned_off') \
            else 'off'
    finally:
        conn.close()
    result['login_user'] = first_user
    result['changed'] = bool(result['created'] or result['updated'] or result['deleted']
                             or result.get('default_turned_off'))
    return result


COMMANDS = {'config': config, 'reload_tls': reload_tls, 'check': check_tls, 'close_plain': close_plain,
            'users': users}


def run(params, check):
    try:
        return COMMANDS[params['command']](params, check)
    except (AdminError, acl.AclError) as exc:
        raise AdminError(str(exc))
    except (OSError, ssl.SSLError, RedisError) as exc:
        raise AdminError('Redis %s failed: %s: %s' % (params['command'], type(exc).__name__, exc))
