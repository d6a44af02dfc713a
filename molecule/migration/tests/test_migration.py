"""Migration under live load, on the lab containers: a password-only plaintext fleet taken to full mTLS by
site.yml while the workers process jobs and a client keeps doing SET/GET/LPUSH, never retrying.

The staged switch, as an operator runs it: site.yml opens TLS on port 6380 beside plaintext 6379 (CONFIG SET, no
restart) and gives every client host its own ACL user (ACL SETUSER, no restart), moves the workers to TLS and
their own users one at a time, then closes 6379 and the shared password once no client uses them. The load client
stands for every other client: it moves to TLS and its own user (pxe1 is in redis_clients) once its certificate
is there and Redis answers on 6380 (the test rewrites its .env then, as an operator would reconfigure a client);
it opens a new connection every 20 operations, so it leaves the plaintext port within a second.
"""
import json
import re
import subprocess
import threading
import time

import pytest

from fleetlab import (ADMIN_USER, CA_BUNDLE, CA_PASSPHRASE, CLIENT_PEM, INVENTORY, LOAD_ENV, PKI_DIR, PROJECT,
                      REDIS_PASSWORD, WORKER_CERT, WORKERS, assert_no_secret_in, assert_nothing_changed, cert_serial,
                      load_env, load_stats, oldest_client_age, password_file, playbook_env, put_file, record,
                      redis_cli, redis_pid, start_load, start_process_sampler, stop_load_and_check_every_job,
                      stop_process_sampler)

HOST_CERTS = (('redis1', '/etc/redis/tls/redis-cert.pem'), ('worker1', WORKER_CERT), ('worker2', WORKER_CERT),
              ('api1', '/etc/fleetpki/api/api-cert.pem'), ('pxe1', '/etc/fleetpki/client/client-cert.pem'))
OLD_CA = PROJECT / '.build' / 'molecule-old-scripts' / 'pki' / 'ca' / 'ca-cert.pem'
STATE = {}


def plain_redis(fleet, *args):
    """redis-cli in plaintext with the shared password (the `default` user), from a 0600 file on stdin."""
    return fleet['redis1'].run('redis-cli -h 127.0.0.1 -p 6379 --askpass %s < %s'
                               % (' '.join(args), password_file('redis1', 'default', REDIS_PASSWORD)))


def tls_redis(fleet, *args):
    return redis_cli(fleet, 6380, *args)


def playbook_process(*args):
    return subprocess.Popen(['ansible-playbook', '-i', INVENTORY] + list(args), cwd=str(PROJECT), env=playbook_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)


def move_load_client_when_tls_answers(fleet, done, moved):
    """The operator's part of the switch: once pxe1 has its certificate and Redis answers over mTLS on 6380,
    point the load client there."""
    pxe = fleet['pxe1']
    while not done.is_set():
        if pxe.file(CLIENT_PEM).exists and (PKI_DIR / 'redis-acl' / 'pxe1').exists() and pxe.run(
                "redis-cli --tls --cert %s --key %s --cacert %s -h redis1 -p 6380 --user pxe1 --askpass PING < %s"
                % (CLIENT_PEM, CLIENT_PEM, CA_BUNDLE, password_file('pxe1', 'pxe1'))).stdout.strip() == 'PONG':
            put_file('pxe1', LOAD_ENV, load_env(6380), '0600')
            moved.append(time.time())
            return
        time.sleep(1)


@pytest.fixture(scope='module')
def load(fleet):
    """The load client on pxe1, in plaintext with the password, as every client runs today."""
    STATE['job_prefix'] = start_load(fleet, load_env(6379, tls=False))
    yield fleet['pxe1']
    fleet['pxe1'].run('systemctl stop fleet-load')


def test_the_fleet_starts_as_it_runs_today(fleet):
    assert plain_redis(fleet, 'PING').stdout.strip() == 'PONG'
    assert fleet['redis1'].run('redis-cli -h 127.0.0.1 -p 6379 PING').stdout.strip() != 'PONG', 'no password'
    assert plain_redis(fleet, 'CONFIG', 'GET', 'tls-port').stdout.split()[-1] == '0'
    for worker in WORKERS:
        heartbeat = json.loads(plain_redis(fleet, 'GET', 'fleet:heartbeat:%s' % worker).stdout)
        assert heartbeat['serial'] is None, heartbeat
    assert not (PROJECT / '.build' / 'molecule-pki' / 'issued').exists()


def test_load_runs_in_plaintext_without_a_failure(fleet, load):
    stats = load_stats(fleet)
    assert stats['failed'] == 0, stats['failures']
    assert stats['ops'] >= 100 and stats['tls'] == 'false'
    STATE['redis_pid'] = redis_pid(fleet)


def test_site_yml_switches_the_fleet_to_mtls_without_a_failed_request(fleet, load, pki_dir):
    started = time.time()
    done, moved = threading.Event(), []
    start_process_sampler(fleet)
    mover = threading.Thread(target=move_load_client_when_tls_answers, args=(fleet, done, moved))
    mover.start()
    proc = playbook_process('site.yml', '--diff', '-vvv')
    try:
        output = proc.communicate(timeout=1500)[0]
    finally:
        done.set()
        mover.join()
    seconds = time.time() - started
    log = PROJECT / '.build' / 'molecule-logs' / 'migration' / 'site.log'
    log.write_text(output)
    sampled = stop_process_sampler(fleet)
    assert proc.returncode == 0, output[-5000:]
    assert moved, 'the load client never saw Redis answer over mTLS on 6380'
    scan = subprocess.run(['python3', str(PROJECT / 'tests' / 'tools' / 'scan_log_for_secrets.py'), str(log),
                           str(pki_dir), REDIS_PASSWORD, CA_PASSPHRASE],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert scan.returncode == 0, scan.stdout
    assert_no_secret_in(sampled, 'the argv or environment of a process during site.yml')
    # Redis kept its process: every change went in with CONFIG SET.
    assert redis_pid(fleet) == STATE['redis_pid'], 'redis-server was restarted'
    assert tls_redis(fleet, 'CONFIG', 'GET', 'port').split()[-1] == '0'
    assert plain_redis(fleet, 'PING').rc != 0, 'the plaintext port is still open'
    conf = fleet['redis1'].file('/etc/redis/redis.conf').content_string
    assert re.search(r'^port 0$', conf, re.M) and re.search(r'^tls-port 6380$', conf, re.M)
    assert re.search(r'^tls-auth-clients yes$', conf, re.M)
    # The shared password is gone: every client has its own user, the `default` user is off.
    assert not re.search(r'^\s*requirepass', conf, re.M) and re.search(r'^user default reset off$', conf, re.M)
    assert 'WRONGPASS' in fleet['redis1'].run(
        'redis-cli --tls --cert /etc/redis/tls/redis-cert.pem --key /etc/redis/tls/redis-key.pem --cacert %s '
        '-h 127.0.0.1 -p 6380 --user default --askpass PING < %s 2>&1'
        % (CA_BUNDLE, password_file('redis1', 'default', REDIS_PASSWORD))).stdout
    assert sorted(tls_redis(fleet, 'ACL', 'USERS').split()) == sorted(['default', ADMIN_USER, 'pxe1'] + list(WORKERS))
    # Every worker beats over TLS on its certificate; no connection from before the switch is left.
    for worker in WORKERS:
        heartbeat = json.loads(tls_redis(fleet, 'GET', 'fleet:heartbeat:%s' % worker))
        assert int(heartbeat['serial'], 16) == cert_serial(fleet[worker], WORKER_CERT)
        env = fleet[worker].file('/opt/fleet-worker/.env').content_string
        assert 'REDIS_USE_TLS=true' in env and 'REDIS_USERNAME=%s' % worker in env and REDIS_PASSWORD not in env
    age, elapsed = oldest_client_age(fleet, 6380), time.time() - started
    assert age < elapsed, 'a client connection %d s old survived the switch' % age
    stats = load_stats(fleet)
    assert stats['failed'] == 0, stats['failures']
    assert stats['tls'] == 'true'
    record('migration', 'site_migration', wall_s=round(seconds, 1), longest_pause_s=stats['longest_pause_s'], ops=stats['ops'])


def test_the_old_scripts_ca_was_adopted_and_signs_every_certificate(fleet, pki_dir):
    old_ca = OLD_CA.read_text()
    for name, path in HOST_CERTS:
        host = fleet[name]
        assert host.file(CA_BUNDLE).content_string.strip() == old_ca.strip(), '%s trusts another CA' % name
        assert host.run('openssl verify -CAfile %s %s' % (CA_BUNDLE, path)).rc == 0, name
    assert (pki_dir / 'issued' / 'redis-redis1-cert.pem').exists()


def test_a_second_site_run_changes_nothing(fleet, load):
    proc = playbook_process('site.yml')
    output = proc.communicate(timeout=900)[0]
    assert_nothing_changed(proc.returncode, output)
    assert redis_pid(fleet) == STATE['redis_pid']


def test_every_job_done_exactly_once_and_no_failed_operation(fleet, load):
    stop_load_and_check_every_job(fleet, 6380, STATE['job_prefix'], 'migration')
