"""redis_admin against a real redis-server 7 with TLS and client certificates, and real clients (redis-py)."""
import json
import time

import pytest
import redis

from ansible_collections.fleetpki.mtls.plugins.module_utils._redis.admin import AdminError
from ansible_collections.fleetpki.mtls.plugins.module_utils._redis.commands import run

from redis_under_test import ADMIN_PASSWORD, LEGACY_PASSWORD, WORKER_PASSWORD

# The queue rules the redis_tls role gives a worker by default (roles/redis_tls/defaults/main.yml).
WORKER_RULES = ('resetkeys ~fleet:* resetchannels -@all +@connection +@read +@write +@keyspace '
                '-@admin -@dangerous -@scripting -scan -randomkey -dbsize -client|tracking -select -move -copy')
SECRETS = (ADMIN_PASSWORD, LEGACY_PASSWORD, WORKER_PASSWORD)


def client(server, username=None, password=None, cert='worker', port=None):
    return redis.Redis(host='localhost', port=port or server.tls_port, username=username, password=password,
                       ssl=True, ssl_certfile=server.pki[cert + '_cert'], ssl_keyfile=server.pki[cert + '_key'],
                       ssl_ca_certs=server.pki['ca'], ssl_cert_reqs='required', socket_timeout=5,
                       single_connection_client=True)


def no_secret_in(result):
    text = json.dumps(result)
    assert not any(secret in text for secret in SECRETS), text


def worker_user(**extra):
    return dict(dict(name='worker1', password=WORKER_PASSWORD, rules=WORKER_RULES, enabled=True), **extra)


def test_config_applies_a_change_at_runtime_once(redis_tls):
    desired = redis_tls.conf_text(**{'maxmemory-policy': 'noeviction', 'timeout': '300'})
    checked = run(redis_tls.params('config', desired_conf=desired), check=True)
    assert checked['changed'] and sorted(checked['changed_settings']) == ['timeout']
    assert client(redis_tls, 'fleetpki-admin', ADMIN_PASSWORD).config_get('timeout')['timeout'] == '0'
    applied = run(redis_tls.params('config', desired_conf=desired), check=False)
    assert applied['changed'] and applied['runtime'] and applied['login_user'] == 'fleetpki-admin'
    assert client(redis_tls, 'fleetpki-admin', ADMIN_PASSWORD).config_get('timeout')['timeout'] == '300'
    again = run(redis_tls.params('config', desired_conf=desired), check=False)
    assert not again['changed'] and again['changed_settings'] == []
    no_secret_in(applied)


def test_config_reports_what_only_a_restart_can_apply(redis_tls):
    desired = redis_tls.conf_text(databases='32')
    result = run(redis_tls.params('config', desired_conf=desired), check=False)
    assert not result['runtime'] and not result['changed'] and 'databases' in result['reason']


def test_config_of_an_unreachable_redis_says_so(redis_tls):
    redis_tls.stop()
    result = run(redis_tls.params('config', desired_conf=redis_tls.conf_text()), check=False)
    assert result['reachable'] is False and 'cannot reach Redis' in result['reason']


def test_wrong_admin_password_is_a_clear_error_without_the_password(redis_tls):
    with pytest.raises(AdminError) as error:
        run(redis_tls.params('check', login_password='not-the-admin-password-000'), check=False)
    assert 'cannot log in to Redis' in str(error.value) and 'not-the-admin-password' not in str(error.value)


def test_reload_tls_swaps_the_served_certificate_without_dropping_a_client(redis_tls):
    kept = client(redis_tls, 'fleetpki-admin', ADMIN_PASSWORD)
    assert kept.ping()
    pki = redis_tls.pki
    run(redis_tls.params('reload_tls', tls_cert_file=pki['server2_cert'], tls_key_file=pki['server2_key'],
                         tls_ca_file=pki['ca']), check=False)
    assert kept.ping(), 'the existing connection was dropped'
    redis_tls.write_conf(**{'tls-cert-file': pki['server2_cert'], 'tls-key-file': pki['server2_key']})
    checked = run(redis_tls.params('check', expect_cert=pki['server2_cert']), check=False)
    assert checked['presented_ok'] and checked['ping'] == 'PONG'
    with pytest.raises(AdminError) as error:
        run(redis_tls.params('check', expect_cert=pki['server_cert']), check=False)
    assert 'presents sha256' in str(error.value)


def test_reload_tls_with_a_key_that_does_not_match_keeps_the_old_files(redis_tls):
    pki = redis_tls.pki
    with pytest.raises(AdminError) as error:
        run(redis_tls.params('reload_tls', tls_cert_file=pki['server2_cert'], tls_key_file=pki['server_key'],
                             tls_ca_file=pki['ca']), check=False)
    assert 'keeps serving the previous ones' in str(error.value)
    assert run(redis_tls.params('check', expect_cert=pki['server_cert']), check=False)['presented_ok']


def test_a_worker_user_gets_only_the_queue(redis_tls):
    result = run(redis_tls.params('users', users=[worker_user()]), check=False)
    assert result['created'] == ['worker1'] and result['changed']
    no_secret_in(result)
    worker = client(redis_tls, 'worker1', WORKER_PASSWORD)
    assert worker.set('fleet:job:1', 'x') and worker.get('fleet:job:1') == b'x'
    assert worker.lpush('fleet:jobs', 'a') and worker.blmove('fleet:jobs', 'fleet:processing:w1', 1) == b'a'
    refused = [['CONFIG', 'SET', 'tls-auth-clients', 'optional'], ['FLUSHALL'], ['ACL', 'LIST'],
               ['ACL', 'SETUSER', 'worker1', '+@all'], ['KEYS', '*'], ['SCAN', '0'], ['GET', 'other:key'],
               ['CLIENT', 'KILL', 'USER', 'fleetpki-admin'], ['SHUTDOWN'], ['FUNCTION', 'FLUSH'], ['DBSIZE'],
               ['CLIENT', 'TRACKING', 'on', 'BCAST'], ['SELECT', '1'], ['MOVE', 'fleet:job:1', '1'],
               ['COPY', 'fleet:job:1', 'fleet:job:2', 'DB', '1']]
    for command in refused:
        with pytest.raises(redis.exceptions.ResponseError) as error:
            worker.execute_command(*command)
        assert 'NOPERM' in str(error.value) or 'no permissions' in str(error.value), command


def test_users_are_idempotent_and_check_mode_changes_nothing(redis_tls):
    run(redis_tls.params('users', users=[worker_user()]), check=False)
    again = run(redis_tls.params('users', users=[worker_user()]), check=False)
    assert not again['changed'] and again['updated'] == [] and again['created'] == []
    wider = worker_user(rules=WORKER_RULES.replace('~fleet:*', '~fleet:* ~load:*'))
    checked = run(redis_tls.params('users', users=[wider]), check=True)
    assert checked['updated'] == ['worker1']
    worker = client(redis_tls, 'worker1', WORKER_PASSWORD)
    with pytest.raises(redis.exceptions.ResponseError):
        worker.get('load:1')
    run(redis_tls.params('users', users=[wider]), check=False)
    assert worker.get('load:1') is None
    users = client(redis_tls, 'fleetpki-admin', ADMIN_PASSWORD).acl_users()
    assert not [name for name in users if name.startswith('fleetpki-probe-')], users


def test_a_password_change_keeps_the_open_connection_and_refuses_the_old_password(redis_tls):
    run(redis_tls.params('users', users=[worker_user()]), check=False)
    worker = client(redis_tls, 'worker1', WORKER_PASSWORD)
    assert worker.ping()
    run(redis_tls.params('users', users=[worker_user(password='An0ther-worker-password-77Xy')]), check=False)
    assert worker.ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        client(redis_tls, 'worker1', WORKER_PASSWORD).ping()


def test_turning_a_user_off_closes_its_connections_at_once_and_no_other(redis_tls):
    second = dict(name='worker2', password=WORKER_PASSWORD + '-2', rules=WORKER_RULES)
    run(redis_tls.params('users', users=[worker_user(), second]), check=False)
    revoked, other = client(redis_tls, 'worker1', WORKER_PASSWORD), client(redis_tls, 'worker2', WORKER_PASSWORD + '-2')
    assert revoked.ping() and other.ping()
    started = time.time()
    result = run(redis_tls.params('users', users=[dict(name='worker1', enabled=False)]), check=False)
    assert result['disabled'] == ['worker1'] and time.time() - started < 1.0
    with pytest.raises((redis.exceptions.ConnectionError, redis.exceptions.AuthenticationError)):
        revoked.ping()
    with pytest.raises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)):
        client(redis_tls, 'worker1', WORKER_PASSWORD).ping()
    assert other.ping(), 'another user lost its connection'


def test_purge_deletes_users_not_listed_but_never_the_admin(redis_tls):
    run(redis_tls.params('users', users=[worker_user(), dict(name='old-host', password='x' * 20, rules='')]),
        check=False)
    admin = client(redis_tls, 'fleetpki-admin', ADMIN_PASSWORD)
    admin.execute_command('ACL', 'SETUSER', 'fleetpki-probe-backdoor', 'on', '>backdoor-password-123', '+@all', '~*')
    result = run(redis_tls.params('users', users=[worker_user()], purge=True), check=False)
    assert sorted(result['deleted']) == ['fleetpki-probe-backdoor', 'old-host']
    names = client(redis_tls, 'fleetpki-admin', ADMIN_PASSWORD).acl_users()
    assert sorted(names) == ['default', 'fleetpki-admin', 'worker1']


def test_bad_users_are_refused_whole_before_any_change(redis_tls):
    bad = [worker_user(), dict(name='../x', password='p' * 20, rules=''), dict(name='w2', password='short'),
           dict(name='w3', password='p' * 20, rules='NOPASS +@all'), dict(name='w4', password='p' * 20, rules='>x')]
    with pytest.raises(AdminError) as error:
        run(redis_tls.params('users', users=bad), check=False)
    message = str(error.value)
    assert "'../x'" in message and 'w2: its password' in message and 'w3' in message and 'w4' in message
    assert client(redis_tls, 'fleetpki-admin', ADMIN_PASSWORD).acl_users() == ['default', 'fleetpki-admin']


def test_a_shared_password_fleet_moves_to_per_host_users_and_default_goes_off_when_unused(redis_legacy):
    server = redis_legacy
    legacy = redis.Redis(host='127.0.0.1', port=server.plain_port, password=LEGACY_PASSWORD,
                         single_connection_client=True)
    assert legacy.ping()
    admin = dict(name='fleetpki-admin', password=ADMIN_PASSWORD, rules='~* &* +@all')
    result = run(server.params('users', users=[admin, worker_user()], default_user='off'), check=False)
    assert result['login_user'] == 'default' and sorted(result['created']) == ['fleetpki-admin', 'worker1']
    assert result['default_user'] == 'on' and len(result['default_clients']) == 1, result
    assert legacy.ping(), 'the shared-password client was cut'
    legacy.close()
    closed = run(server.params('users', users=[admin, worker_user()], default_user='off', drain_timeout=5),
                 check=False)
    assert closed['login_user'] == 'fleetpki-admin' and closed['default_user'] == 'off' and closed['changed']
    with pytest.raises(redis.exceptions.RedisError):
        redis.Redis(host='127.0.0.1', port=server.plain_port, password=LEGACY_PASSWORD).ping()
    assert client(server, 'worker1', WORKER_PASSWORD).ping()
    no_secret_in(closed)


def test_close_plain_waits_for_its_clients_then_closes_the_port(redis_legacy):
    server = redis_legacy
    plain = redis.Redis(host='127.0.0.1', port=server.plain_port, password=LEGACY_PASSWORD,
                        single_connection_client=True)
    assert plain.ping()
    kept = run(server.params('close_plain', drain_timeout=1), check=False)
    assert not kept['changed'] and len(kept['plain_clients']) == 1
    plain.close()
    closed = run(server.params('close_plain', drain_timeout=5), check=False)
    assert closed['changed'] and closed['plain_port'] == server.plain_port
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis(host='127.0.0.1', port=server.plain_port, password=LEGACY_PASSWORD, socket_timeout=2).ping()
    # redis.conf still names the plaintext port (the role writes it next): the next admin action goes over TLS,
    # never "unreachable" (which would make the role restart Redis).
    admin = dict(name='fleetpki-admin', password=ADMIN_PASSWORD, rules='~* &* +@all')
    after = run(server.params('users', users=[admin, worker_user()], default_user='off', drain_timeout=3), check=False)
    assert after['changed'] and after['default_user'] == 'off', (after['default_clients'], after['login_user'])
    assert run(server.params('config', desired_conf=server.conf_text(port='0')), check=False)['reachable']
