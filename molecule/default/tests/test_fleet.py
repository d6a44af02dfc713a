"""The operator's checklist for a fleet on mTLS, checked on the real lab containers.

Every refusal test first runs the working command, then the same command with exactly one input changed, and
asserts a TLS or auth error (never a timeout).
"""
import json
import re
import subprocess
import time

import pytest

from fleetlab import (ADMIN_USER, acl_password, assert_no_secret_in, password_file, put_file, run_playbook,
                      stop_process_sampler)

CA_BUNDLE = '/etc/fleetpki/ca-bundle.pem'
WORKER_CERT = '/etc/fleetpki/worker/client-cert.pem'
WORKER_KEY = '/etc/fleetpki/worker/client-key.pem'
REDIS_CERT = '/etc/redis/tls/redis-cert.pem'
REDIS_KEY = '/etc/redis/tls/redis-key.pem'
CLIENT_CERT = '/etc/fleetpki/client/client-cert.pem'
CLIENT_KEY = '/etc/fleetpki/client/client-key.pem'
API_URL = 'https://api1:8443/health'
TIMED_OUT = 124  # timeout(1)'s exit code
TLS_REFUSAL_WORDS = ('ssl', 'tls', 'reset', 'closed', 'certificate', 'handshake', 'i/o error', 'alert')


def redis_cli(fleet, name, *args, cert=WORKER_CERT, key=WORKER_KEY, cacert=CA_BUNDLE, user='own', server='redis1',
              tls=True):
    """redis-cli on a lab host, logged in as `user` (default the host's own ACL user; None: no login) with the
    password from a 0600 file on its standard input: no secret on a command line, even in the tests."""
    user = name if user == 'own' else user
    parts = ['timeout', '10', 'redis-cli']
    if tls:
        parts.append('--tls')
        if cert:
            parts += ['--cert', cert, '--key', key]
        parts += ['--cacert', cacert]
    parts += ['-h', server, '-p', '6379']
    stdin = ''
    if user:
        parts += ['--user', user, '--askpass']
        stdin = ' < %s' % password_file(name, user)
    return fleet[name].run(' '.join(parts + list(args)) + stdin + ' 2>&1')


def assert_refused_by_tls(result):
    output = result.stdout.lower()
    assert result.rc != TIMED_OUT, 'timed out instead of being refused: %r' % result.stdout
    assert 'pong' not in output
    assert any(word in output for word in TLS_REFUSAL_WORDS), 'not a TLS refusal: %r' % result.stdout


def cert_serial(host, path):
    """The serial as an int (openssl pads the hex to whole bytes, the heartbeat does not)."""
    return int(host.check_output('openssl x509 -noout -serial -in %s' % path).split('=', 1)[1].strip(), 16)


def test_no_secret_in_any_process_during_the_rollout(fleet):
    """From prepare on (site.yml, its idempotent rerun) every process's argv and environment on the Redis host
    and the workers was sampled: the canary with a fake secret in its environment was seen, no real secret was."""
    seen = stop_process_sampler(fleet)
    for name, text in seen.items():
        assert 'FLEETPKI_SAMPLER_CANARY=sampler-canary-3e9b1f' in text, '%s: the sampler missed the canary' % name
    assert_no_secret_in(seen, 'the argv or environment of a process during site.yml')


def test_no_key_or_secret_in_any_hosts_journal(fleet):
    """What the modules log when they start (syslog / the journal) on every host after site.yml and its rerun: no
    private key and no secret of the lab (a key was logged there in an escaped form, which the no_log mask missed)."""
    journals = dict((name, host.check_output('journalctl --no-pager -o cat 2>/dev/null || true'))
                    for name, host in fleet.items())
    assert any('Invoked with' in text for text in journals.values()), 'no module start in any journal: is journald on?'
    for name, text in journals.items():
        assert 'PRIVATE KEY' not in text, '%s: a private key is in the journal' % name
    assert_no_secret_in(journals, 'the journal')


@pytest.mark.parametrize('name, path, owner', [
    ('redis1', '/etc/redis/tls/redis-key.pem', 'redis'),
    ('worker1', WORKER_KEY, 'fleet'),
    ('worker2', WORKER_KEY, 'fleet'),
    ('api1', '/etc/fleetpki/api/api-key.pem', 'fleet'),
    ('pxe1', CLIENT_KEY, 'root'),
])
def test_private_keys_are_0600_and_owned_by_the_service_user(fleet, name, path, owner):
    key = fleet[name].file(path)
    assert key.is_file
    assert key.mode == 0o600
    assert key.user == owner


def test_redis_tls_directory_is_roots_and_redis_only_reads_it(fleet):
    """/etc/redis/tls is root:redis 0750: the redis user cannot add or replace a file in it. (It can still rename
    the whole directory, /etc/redis being its own: tls_files follows no link there and resets the directory's owner,
    so that gains it nothing.) Redis (User=redis) reads its key through the group; /etc/redis stays as Debian
    ships it."""
    redis1 = fleet['redis1']
    tls_dir = redis1.file('/etc/redis/tls')
    assert (tls_dir.user, tls_dir.group, tls_dir.mode) == ('root', 'redis', 0o750)
    assert redis1.run('runuser -u redis -- test -r %s', REDIS_KEY).rc == 0, 'redis cannot read its key'
    assert redis1.run('runuser -u redis -- test -w /etc/redis/tls').rc != 0, 'redis can write its TLS directory'
    etc_redis = redis1.file('/etc/redis')
    assert (etc_redis.user, etc_redis.group, etc_redis.mode) == ('redis', 'redis', 0o2770)


def test_worker_env_files_are_root_owned_0640_and_carry_the_tls_settings(fleet):
    for name in ('worker1', 'worker2'):
        env = fleet[name].file('/opt/fleet-worker/.env')
        assert (env.mode, env.user, env.group) == (0o640, 'root', 'fleet')
        content = env.content_string
        for line in ('REDIS_USE_TLS=true', 'REDIS_USERNAME=' + name, 'REDIS_TLS_CERT=' + WORKER_CERT, 'REDIS_TLS_KEY=' + WORKER_KEY,
                     'REDIS_TLS_CA=' + CA_BUNDLE, 'PKI_CA_CERT=' + CA_BUNDLE, 'API_USE_TLS=true',
                     'CALLBACK_API_URL=https://api1:8443/callback/report', 'REDIS_HOST=redis1'):
            assert line in content.splitlines(), line


def test_no_fleet_host_holds_a_ca_key(fleet, pki_dir):
    """The root's, the CA's of pki_ca_dir and each site's (two tiers, two sites)."""
    keys = [pki_dir / 'root' / 'ca-key.pem', pki_dir / 'ca' / 'ca-key.pem'] + sorted(pki_dir.glob('sites/*/ca-key.pem'))
    assert len(keys) == 4 and all(key.is_file() for key in keys), keys
    body = [line for key in keys for line in key.read_text().splitlines() if not line.startswith('-----')]
    assert len(body) >= 8
    # The key lines go to grep in a file, not on its command line: testinfra runs commands through sudo, which
    # logs each command line to the journal, where this very grep would then find them.
    patterns_file = '/root/.fleetpki-test-ca-key-lines'
    for name, host in fleet.items():
        put_file(name, patterns_file, '\n'.join(body) + '\n', '0600')
        found = host.run('grep -rlF --devices=skip -f %s --exclude=%s / --exclude-dir=proc --exclude-dir=sys '
                         '--exclude-dir=dev' % (patterns_file, patterns_file.rsplit('/', 1)[1]))
        host.run('rm -f %s' % patterns_file)
        assert found.stdout.strip() == '', '%s holds the CA key body in: %s' % (name, found.stdout)
        assert found.rc == 1, 'grep on %s failed: %s' % (name, found.stderr)


def test_redis_listens_on_the_tls_port_only(fleet):
    listeners = fleet['redis1'].check_output('ss -ltnpH')
    # 127.0.0.11 is Docker's embedded DNS resolver, not ours; sshd is how Ansible reaches the host.
    ports = {line.split()[3].rsplit(':', 1)[1] for line in listeners.splitlines()
             if '127.0.0.11:' not in line and '"sshd"' not in line}
    assert ports == {'6379'}
    conf = fleet['redis1'].file('/etc/redis/redis.conf')
    assert conf.contains('^port 0$') and conf.contains('^tls-auth-clients yes$')


def on_redis(fleet, *args, **kwargs):
    """redis-cli on the Redis host itself as the admin user, with its own (usage both) certificate."""
    kwargs.setdefault('user', ADMIN_USER)
    return redis_cli(fleet, 'redis1', *args, server='127.0.0.1', cert=REDIS_CERT, key=REDIS_KEY, **kwargs)


def test_plaintext_ping_fails(fleet):
    assert on_redis(fleet, 'PING').stdout.strip() == 'PONG'
    result = on_redis(fleet, 'PING', tls=False)
    assert result.rc != TIMED_OUT and 'PONG' not in result.stdout


def test_worker_cert_gets_pong(fleet):
    assert redis_cli(fleet, 'worker1', 'PING').stdout.strip() == 'PONG'


def test_no_client_cert_is_refused(fleet):
    assert redis_cli(fleet, 'worker1', 'PING').stdout.strip() == 'PONG'
    assert_refused_by_tls(redis_cli(fleet, 'worker1', 'PING', cert=None))


def test_cert_from_another_ca_is_refused(fleet):
    worker = fleet['worker1']
    worker.check_output('openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 '
                        '-subj /CN=worker1 -addext subjectAltName=DNS:worker1 '
                        '-keyout /tmp/rogue-key.pem -out /tmp/rogue-cert.pem 2>/dev/null')
    assert redis_cli(fleet, 'worker1', 'PING').stdout.strip() == 'PONG'
    assert_refused_by_tls(redis_cli(fleet, 'worker1', 'PING', cert='/tmp/rogue-cert.pem', key='/tmp/rogue-key.pem'))


def test_missing_password_gets_noauth(fleet):
    assert redis_cli(fleet, 'worker1', 'PING').stdout.strip() == 'PONG'
    result = redis_cli(fleet, 'worker1', 'PING', user=None)
    assert result.rc != TIMED_OUT
    assert 'NOAUTH' in result.stdout


def test_client_expecting_another_hostname_is_refused(fleet):
    worker = fleet['worker1']
    check = 'python3 /opt/fleetpki/bin/fleet-worker --check --env %s'
    assert json.loads(worker.check_output(check % '/opt/fleet-worker/.env'))['ok'] is True
    # Another name of the same Redis host that its certificate does not hold (its inventory name and address,
    # the ansible_host, are both SANs): Docker's DNS answers for a container's short id too.
    other_name = subprocess.run(['docker', 'inspect', '-f', '{{.Id}}', 'redis1'], stdout=subprocess.PIPE,
                                universal_newlines=True, check=True).stdout.strip()[:12]
    assert worker.run('getent hosts %s' % other_name).rc == 0, 'Docker DNS does not resolve %s' % other_name
    worker.check_output("sed 's/^REDIS_HOST=.*/REDIS_HOST=%s/' /opt/fleet-worker/.env > /tmp/other-host.env" % other_name)
    result = worker.run(check % '/tmp/other-host.env')
    worker.run('rm -f /tmp/other-host.env')
    assert result.rc == 1
    error = json.loads(result.stdout)['error'].lower()
    assert 'hostname' in error or "doesn't match" in error or 'certificate verify failed' in error, error


def test_workers_are_connected_and_process_a_job(fleet, unique):
    for name in ('worker1', 'worker2'):
        beat = json.loads(on_redis(fleet, 'GET', 'fleet:heartbeat:%s' % name).stdout)
        assert time.time() - beat['ts'] < 10
        assert int(beat['serial'], 16) == cert_serial(fleet[name], WORKER_CERT)
    job = 'molecule-job-%s' % unique
    assert on_redis(fleet, 'LPUSH', 'fleet:jobs', job).rc == 0
    for attempt in range(30):
        done = on_redis(fleet, 'SISMEMBER', 'fleet:done', job)
        if done.stdout.strip() == '1':
            break
        time.sleep(0.5)
    assert done.stdout.strip() == '1', 'job %s was not processed after %d checks' % (job, attempt + 1)


def curl_api(host, *extra):
    return host.run('curl -sS --max-time 10 %s %s 2>&1' % (' '.join(extra), API_URL))


def test_api_answers_https_with_a_ca_signed_client_cert(fleet):
    result = curl_api(fleet['pxe1'], '--cacert', CA_BUNDLE, '--cert', CLIENT_CERT, '--key', CLIENT_KEY)
    assert result.rc == 0
    assert json.loads(result.stdout)['status'] == 'ok'


def test_api_refuses_a_client_without_a_cert(fleet):
    """/health is a route of the fleet's own (not a validation report): without a client certificate, 403 (the
    handshake asks for one without insisting, since validation reports may be posted without; see
    test_validation_image.py)."""
    assert curl_api(fleet['pxe1'], '--cacert', CA_BUNDLE, '--cert', CLIENT_CERT, '--key', CLIENT_KEY).rc == 0
    result = curl_api(fleet['pxe1'], '--cacert', CA_BUNDLE, '-w', "'\\n%{http_code}'")
    assert result.rc == 0 and result.stdout.rstrip().endswith('\n403'), 'rc %d: %s' % (result.rc, result.stdout)
    assert 'a client certificate is required for /health' in result.stdout


def test_pki_client_trusts_the_ca_through_the_system_store(fleet):
    result = curl_api(fleet['pxe1'], '--cert', CLIENT_CERT, '--key', CLIENT_KEY)
    assert result.rc == 0, result.stdout
    assert json.loads(result.stdout)['status'] == 'ok'


def test_verify_playbook_passes_without_changes_and_fails_on_a_0644_key(fleet):
    rc, output = run_playbook('playbooks/verify.yml')
    assert rc == 0, output[-3000:]
    recap = output[output.rindex('PLAY RECAP'):]
    assert 'changed=0' in recap and 'changed=1' not in recap and 'failed=0' in recap
    worker = fleet['worker1']
    worker.check_output('chmod 0644 %s' % WORKER_KEY)
    try:
        rc, output = run_playbook('playbooks/verify.yml')
    finally:
        worker.check_output('chmod 0600 %s' % WORKER_KEY)
    assert rc != 0
    assert 'FAIL    worker1' in output


def test_site_under_limit_renews_only_the_limited_host(fleet):
    """The PKI step runs from the fleet play, so --limit worker1 still issues (here: force-renews) its cert."""
    before = {name: cert_serial(fleet[name], WORKER_CERT) for name in ('worker1', 'worker2')}
    redis_before = cert_serial(fleet['redis1'], REDIS_CERT)
    rc, output = run_playbook('site.yml', '--limit', 'worker1', '-e', 'pki_force=true')
    assert rc == 0, output[-3000:]
    assert cert_serial(fleet['worker1'], WORKER_CERT) != before['worker1']
    assert cert_serial(fleet['worker2'], WORKER_CERT) == before['worker2']
    assert cert_serial(fleet['redis1'], REDIS_CERT) == redis_before
    assert redis_cli(fleet, 'worker1', 'PING').stdout.strip() == 'PONG'


def served_serial(host, port=6379):
    """Serial of the certificate Redis presents to a new TLS connection."""
    out = host.check_output(
        'openssl s_client -connect 127.0.0.1:%d -cert %s -key %s -CAfile %s </dev/null 2>/dev/null '
        '| openssl x509 -noout -serial' % (port, REDIS_CERT, REDIS_KEY, CA_BUNDLE))
    return int(out.split('=', 1)[1].strip(), 16)


def test_cert_only_change_reloads_redis_without_a_restart(fleet):
    """A renewed Redis cert is loaded with CONFIG SET: same MainPID, new serial on new connections."""
    redis = fleet['redis1']
    pid_before = redis.check_output('systemctl show -p MainPID --value redis-server')
    serial_before = served_serial(redis)
    rc, output = run_playbook('site.yml', '--limit', 'redis1', '-e', 'pki_force=true')
    assert rc == 0, output[-3000:]
    assert 'Reload the certificate, key and CA with CONFIG SET' in output
    assert redis.check_output('systemctl show -p MainPID --value redis-server') == pid_before
    serial_after = served_serial(redis)
    assert serial_after != serial_before
    assert serial_after == cert_serial(redis, REDIS_CERT)
    assert redis_cli(fleet, 'worker1', 'PING').stdout.strip() == 'PONG'


def test_failed_redis_health_check_stops_the_rollout_before_the_workers(fleet):
    """A Redis that does not come back after a config change stops site.yml before any worker task."""
    rc, output = run_playbook('site.yml', '-e', '{"redis_tls_extra_config": {"maxclients": "not-a-number"}}',
                              '-e', 'redis_tls_health_retries=2')
    try:
        assert rc != 0
        assert 'Workers over mTLS' not in output, 'the workers play ran after a failed Redis'
        assert 'fleetpki.mtls.worker_tls' not in output
    finally:
        rc, output = run_playbook('site.yml')
    assert rc == 0, output[-3000:]
    assert redis_cli(fleet, 'worker1', 'PING').stdout.strip() == 'PONG'


def test_a_worker_identity_gets_only_the_queue(fleet, unique):
    """The worker's own ACL user: the queue's keys, nothing that administers Redis or reads other keys."""
    assert redis_cli(fleet, 'worker1', 'SET', 'fleet:test:%s' % unique, '1').stdout.strip() == 'OK'
    for command in ('CONFIG SET tls-auth-clients optional', 'FLUSHALL', 'ACL LIST', 'ACL SETUSER worker1 +@all',
                    "KEYS '*'", 'SCAN 0', 'GET other:key', 'CLIENT KILL USER fleetpki-admin', 'SHUTDOWN'):
        result = redis_cli(fleet, 'worker1', *command.split())
        assert 'NOPERM' in result.stdout, '%s: %s' % (command, result.stdout)
    assert on_redis(fleet, 'CONFIG', 'GET', 'tls-auth-clients').stdout.split()[-1] == 'yes'


def test_a_worker_cannot_log_in_as_another_or_with_the_old_shared_user(fleet):
    worker = fleet['worker1']
    path = password_file('worker1', 'worker1')
    for user in ('worker2', 'default', ADMIN_USER):
        result = worker.run('timeout 10 redis-cli --tls --cert %s --key %s --cacert %s -h redis1 -p 6379 --user %s '
                            '--askpass PING < %s 2>&1' % (WORKER_CERT, WORKER_KEY, CA_BUNDLE, user, path))
        assert 'PONG' not in result.stdout and 'WRONGPASS' in result.stdout, (user, result.stdout)


def test_redis_has_one_user_per_client_host_and_no_password_in_its_config(fleet):
    users = sorted(on_redis(fleet, 'ACL', 'USERS').stdout.split())
    assert users == sorted(['default', ADMIN_USER, 'pxe1', 'worker1', 'worker2']), users
    default = on_redis(fleet, 'ACL', 'GETUSER', 'default').stdout.split()
    assert 'off' in default and 'on' not in default, default
    conf = fleet['redis1'].file('/etc/redis/redis.conf')
    assert (conf.user, conf.group, conf.mode) == ('redis', 'redis', 0o640)
    assert not re.search(r'^\s*requirepass', conf.content_string, re.M)
    assert_no_secret_in({'/etc/redis/redis.conf': conf.content_string}, 'redis.conf (only hashes belong there)')


def test_the_env_is_root_owned_data_that_verify_never_executes(fleet):
    """A worker's .env is the worker's business: root:fleet 0640 (it reads, cannot rewrite), and verify.yml
    parses it as data, so shell in it runs nowhere."""
    worker = fleet['worker1']
    env = worker.file('/opt/fleet-worker/.env')
    assert (env.user, env.group, env.mode) == ('root', 'fleet', 0o640)
    assert 'REDIS_USERNAME=worker1' in env.content_string
    assert 'PROV_API_TOKEN=molecule-extra-env-secret-5d2a' in env.content_string
    assert acl_password('worker1') in env.content_string
    original = env.content_string
    put_file('worker1', '/opt/fleet-worker/.env', original + 'X=$(id > /tmp/pwned-dollar)\nY=`id > /tmp/pwned-tick`\n',
             '0640')
    worker.check_output('chown root:fleet /opt/fleet-worker/.env')
    try:
        rc, output = run_playbook('playbooks/verify.yml')
    finally:
        put_file('worker1', '/opt/fleet-worker/.env', original, '0640')
        worker.check_output('chown root:fleet /opt/fleet-worker/.env')
    assert not worker.file('/tmp/pwned-dollar').exists and not worker.file('/tmp/pwned-tick').exists
    assert rc == 0, output[-3000:]
    assert 'redis-cli mTLS PING as worker1' in output


def test_no_old_private_key_is_left_on_any_host(fleet):
    """tls_files' backup: true keeps the previous key for a rollback; once the new one is live it is removed
    (the site --limit and cert-only tests above renewed keys)."""
    for name in ('redis1', 'worker1', 'worker2', 'api1'):
        left = fleet[name].check_output("find /etc/redis /etc/fleetpki -name '*~' 2>/dev/null || true")
        assert not left.strip(), '%s keeps old key or certificate files: %s' % (name, left)
