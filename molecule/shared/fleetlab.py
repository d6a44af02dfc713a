"""What the molecule scenarios' testinfra checks share: one testinfra host per lab container, paths on the
control node, playbook runs, and the live load (tests/load/fleet_load.py on pxe1) with its final count.

Each scenario's tests/conftest.py puts this directory on sys.path and re-exports the fixtures.
"""
import json
import os
import pathlib
import re
import subprocess
import time
import uuid

import pytest
import testinfra

INVENTORY = os.environ.get('MOLECULE_INVENTORY_FILE', '')
PROJECT = pathlib.Path(os.environ.get('MOLECULE_PROJECT_DIRECTORY', pathlib.Path(__file__).parents[2]))
# The shared requirepass of the migration scenario's fleet before its switch (and of no other scenario).
REDIS_PASSWORD = 'molecule-redis-Pa55w0rd-7f3c9e'
CA_PASSPHRASE = 'molecule-ca-passphrase-b81d4a'
# The default scenario's root (two tiers, two sites): its own test-only secret.
ROOT_PASSPHRASE = 'molecule-root-passphrase-c4e7f1'
# A secret of the operator's own in the workers' .env (worker_tls_extra_env): never in a log either.
EXTRA_ENV_SECRET = 'molecule-extra-env-secret-5d2a'
PKI_DIR = PROJECT / '.build' / 'molecule-pki'
ADMIN_USER = 'fleetpki-admin'
HOSTS = ('redis1', 'worker1', 'worker2', 'api1', 'pxe1')
WORKERS = ('worker1', 'worker2')
CA_BUNDLE = '/etc/fleetpki/ca-bundle.pem'
REDIS_CERT = '/etc/redis/tls/redis-cert.pem'
REDIS_KEY = '/etc/redis/tls/redis-key.pem'
WORKER_CERT = '/etc/fleetpki/worker/client-cert.pem'
CLIENT_PEM = '/etc/fleetpki/client/client.pem'
LOAD_ENV = '/etc/fleetpki/load.env'
LOAD_STATS = '/var/tmp/fleet-load.json'


@pytest.fixture(scope='session')
def fleet():
    assert INVENTORY, 'run through molecule (MOLECULE_INVENTORY_FILE is not set)'
    return {name: testinfra.get_host('ansible://%s?ansible_inventory=%s' % (name, INVENTORY)) for name in HOSTS}


@pytest.fixture(scope='session')
def pki_dir():
    return PKI_DIR


def acl_password(user):
    """The Redis ACL password the roles made for a user on the control node (<PKI dir>/redis-acl/<user>)."""
    return (PKI_DIR / 'redis-acl' / user).read_text().strip()


def every_secret():
    """Every secret of the lab: the admin's and each host's Redis password, the shared password, the CA
    passphrase, the root's. What a log or a process list must never show."""
    acl_dir = PKI_DIR / 'redis-acl'
    found = [path.read_text().strip() for path in acl_dir.iterdir()] if acl_dir.is_dir() else []
    return found + [REDIS_PASSWORD, CA_PASSPHRASE, ROOT_PASSPHRASE, EXTRA_ENV_SECRET]


PUT_PASSWORDS = {}


def password_file(container, user, password=None):
    """A 0600 file in the container holding a user's Redis password, for redis-cli --askpass < file: test
    commands keep secrets off their command lines too (the process sampler would find them)."""
    path = '/root/.fleetpki-test-redis-%s' % user
    password = password if password is not None else acl_password(user)
    if PUT_PASSWORDS.get((container, path)) != password:
        put_file(container, path, password, '0600')
        PUT_PASSWORDS[(container, path)] = password
    return path


def load_env(port, tls=True, user='pxe1'):
    """The load client's .env: its own ACL user (pxe1 is in the redis_clients group) over mTLS, or the shared
    password in plaintext (user=None, tls=False: a fleet before its switch)."""
    if not tls:
        return 'REDIS_HOST=redis1\nREDIS_PORT=%d\nREDIS_USE_TLS=false\nREDIS_PASSWORD=%s\n' % (port, REDIS_PASSWORD)
    return ('REDIS_HOST=redis1\nREDIS_PORT=%d\nREDIS_USE_TLS=true\nREDIS_USERNAME=%s\nREDIS_PASSWORD=%s\n'
            'CLIENT_PEM=%s\nCA_BUNDLE=%s\n' % (port, user, acl_password(user), CLIENT_PEM, CA_BUNDLE))


SAMPLER = '/var/tmp/fleetpki-proc-sampler.py'
SAMPLES = '/var/tmp/fleetpki-proc-samples.txt'


def start_process_sampler(fleet, hosts=('redis1', 'worker1', 'worker2')):
    """tests/tools/proc_sampler.py on each host: every process's argv and environment, every 20 ms, until
    stop_process_sampler."""
    for name in hosts:
        put_file(name, SAMPLER, (PROJECT / 'tests' / 'tools' / 'proc_sampler.py').read_text(), '0755')
        fleet[name].run('systemctl stop fleet-proc-sampler; rm -f %s' % SAMPLES)
        fleet[name].check_output('systemd-run --unit fleet-proc-sampler --collect /usr/bin/python3 %s %s'
                                 % (SAMPLER, SAMPLES))


def stop_process_sampler(fleet, hosts=('redis1', 'worker1', 'worker2')):
    """{host: what the sampler saw (one line per distinct argv or environment)}."""
    seen = {}
    for name in hosts:
        fleet[name].run('systemctl stop fleet-proc-sampler')
        seen[name] = fleet[name].check_output('cat %s' % SAMPLES)
    return seen


def assert_no_secret_in(texts, what):
    """No secret of the lab in any of these texts ({name: text}); names the place, never the secret."""
    secrets = [secret for secret in every_secret() if secret]
    assert secrets, 'no secret to look for: is the PKI dir there?'
    for name, text in texts.items():
        hits = [index for index, secret in enumerate(secrets) if secret in text]
        assert not hits, '%s: %d secret(s) of the lab found in %s' % (name, len(hits), what)


@pytest.fixture()
def unique():
    return uuid.uuid4().hex[:12]


ANSI_ESCAPE = re.compile(r'\x1b\[[0-9;]*m')


def playbook_env():
    # molecule exports ANSIBLE_FORCE_COLOR, which beats ANSIBLE_NOCOLOR: drop it so the recap is plain text.
    env = {key: value for key, value in os.environ.items() if key != 'ANSIBLE_FORCE_COLOR'}
    return dict(env, ANSIBLE_CONFIG=str(PROJECT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1',
                ANSIBLE_COLLECTIONS_PATH=str(PROJECT / 'collections'))


def run_playbook(*args):
    """ansible-playbook from the project against molecule's inventory; returns (rc, output)."""
    proc = subprocess.run(['ansible-playbook', '-i', INVENTORY] + list(args), cwd=str(PROJECT), env=playbook_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=900,
                          check=False)
    return proc.returncode, ANSI_ESCAPE.sub('', proc.stdout)


def changed_counts(output):
    """{host: changed} from the PLAY RECAP of a playbook's output."""
    recap = output[output.rindex('PLAY RECAP'):]
    return {host: int(count) for host, count in re.findall(r'^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)', recap, re.M)}


def assert_nothing_changed(rc, output):
    """The run passed and no host of its recap reports a change."""
    assert rc == 0, output[-4000:]
    counts = changed_counts(output)
    assert counts and not any(counts.values()), 'expected no change: %s\n%s' % (counts, output[-3000:])


def redis_cli(fleet, port, *args):
    """redis-cli over mTLS on redis1 itself as the admin user, with the server's own (server + client)
    certificate; the password comes from a 0600 file on its standard input."""
    return fleet['redis1'].check_output(
        "redis-cli --tls --cert %s --key %s --cacert %s -h 127.0.0.1 -p %d --user %s --askpass %s < %s"
        % (REDIS_CERT, REDIS_KEY, CA_BUNDLE, port, ADMIN_USER, ' '.join(args), password_file('redis1', ADMIN_USER)))


def redis_pid(fleet):
    return fleet['redis1'].check_output('systemctl show -p MainPID --value redis-server')


def cert_serial(host, path):
    return int(host.check_output('openssl x509 -noout -serial -in %s' % path).split('=', 1)[1], 16)


def oldest_client_age(fleet, port):
    """Age in seconds of the oldest client connection other than this CLIENT LIST's own."""
    ages = [int(m.group(1)) for line in redis_cli(fleet, port, 'CLIENT', 'LIST').splitlines()
            if 'cmd=client' not in line for m in [re.search(r'\bage=(\d+)', line)] if m]
    return max(ages or [0])


def put_file(container, path, content, mode='0644'):
    """Write a file into a lab container atomically (temp file + rename): readers never see half of it."""
    subprocess.run(['docker', 'exec', '-i', container, 'sh', '-c', 'cat > "$1.tmp" && chmod %s "$1.tmp" && '
                    'mv "$1.tmp" "$1"' % mode, 'put_file', path], input=content, universal_newlines=True, check=True)


def read_root_file(container, path):
    """A file only root can read in a lab container (a host's private key, for a test that borrows it)."""
    return subprocess.run(['docker', 'exec', container, 'cat', path], capture_output=True, universal_newlines=True,
                          check=True).stdout


def record(scenario, name, **values):
    """Figures for run_molecule.sh to print: .build/molecule-logs/<scenario>/figures.json."""
    figures_file = PROJECT / '.build' / 'molecule-logs' / scenario / 'figures.json'
    figures = json.loads(figures_file.read_text()) if figures_file.exists() else {}
    figures[name] = values
    figures_file.parent.mkdir(parents=True, exist_ok=True)
    figures_file.write_text(json.dumps(figures, indent=2, sort_keys=True) + '\n')


def load_stats(fleet):
    return json.loads(fleet['pxe1'].check_output('cat %s' % LOAD_STATS))


def start_load(fleet, env_text):
    """Start the load client on pxe1 with this .env; returns the prefix of the job ids it pushes."""
    pxe, prefix = fleet['pxe1'], 'load-%s' % uuid.uuid4().hex[:12]
    put_file('pxe1', '/opt/fleet-load.py', (PROJECT / 'tests' / 'load' / 'fleet_load.py').read_text(), '0755')
    pxe.run('mkdir -p %s; systemctl stop fleet-load; rm -f %s' % (os.path.dirname(LOAD_ENV), LOAD_STATS))
    put_file('pxe1', LOAD_ENV, env_text, '0600')
    pxe.check_output('systemd-run --unit fleet-load --collect /usr/bin/python3 /opt/fleet-load.py --env %s '
                     '--stats %s --job-prefix %s' % (LOAD_ENV, LOAD_STATS, prefix))
    for dummy in range(60):
        if pxe.file(LOAD_STATS).exists and load_stats(fleet)['ops'] >= 100:
            break
        time.sleep(0.5)
    return prefix


def assert_no_failed_operation(fleet):
    stats = load_stats(fleet)
    assert stats['failed'] == 0, stats['failures']
    return stats


def stop_load_and_check_every_job(fleet, port, job_prefix, scenario):
    """Stop the load, let the workers drain the queue, then: every job id done exactly once, no failed
    operation. Prints and records the counts."""
    fleet['pxe1'].check_output('systemctl stop fleet-load')
    for dummy in range(60):
        stats = load_stats(fleet)
        if stats['stopped']:
            break
        time.sleep(0.5)
    for dummy in range(120):
        pending = int(redis_cli(fleet, port, 'LLEN', 'fleet:jobs')) + sum(
            int(redis_cli(fleet, port, 'LLEN', 'fleet:processing:%s' % worker)) for worker in WORKERS)
        if pending == 0:
            break
        time.sleep(0.5)
    assert pending == 0, '%d jobs still queued or in progress' % pending
    done = sum(1 for member in redis_cli(fleet, port, 'SMEMBERS', 'fleet:done').splitlines()
               if member.startswith(job_prefix + '-'))
    duplicates = int(redis_cli(fleet, port, 'GET', 'fleet:done:duplicates') or '0')
    record(scenario, 'load', ops=stats['ops'], failed=stats['failed'], jobs_pushed=stats['jobs_pushed'],
           jobs_done=done, duplicates=duplicates, connections=stats['connections'],
           longest_pause_s=stats['longest_pause_s'])
    print('load: %d operations, %d failed, %d jobs pushed, %d done, %d duplicates, %d connections, longest pause '
          '%.3f s' % (stats['ops'], stats['failed'], stats['jobs_pushed'], done, duplicates, stats['connections'],
                      stats['longest_pause_s']))
    assert stats['failed'] == 0, stats['failures']
    assert done == stats['jobs_pushed']
    assert duplicates == 0
