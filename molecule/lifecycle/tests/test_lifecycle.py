"""Lifecycle under live load, on the lab containers: the operator's checklist for renewal, the CA rollover (the move of
the fleet of one CA under a new root) and revocation without one failed request, then the faults (on two tiers since
the move).

The tests run in file order: a load client on pxe1 (tests/load/fleet_load.py) does SET/GET/LPUSH over mTLS, a new
TLS connection every 20 operations, never retrying, while the workers process the jobs it pushes. Each lifecycle
step is a real playbook run; the load's counts are checked after every step and in full at the end.
"""
import datetime
import hashlib
import json
import os
import pathlib
import random
import re
import shlex
import subprocess
import sys
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from fleetlab import (CA_BUNDLE, CA_PASSPHRASE, CLIENT_PEM, INVENTORY, PROJECT, REDIS_CERT, REDIS_KEY, ROOT_PASSPHRASE,
                      WORKER_CERT, WORKERS,
                      acl_password, assert_no_failed_operation, assert_no_secret_in, assert_nothing_changed, cert_serial,
                      changed_counts, load_env, oldest_client_age, password_file, put_file, read_root_file, record,
                      redis_cli,
                      redis_pid, run_playbook, start_load, start_process_sampler, stop_load_and_check_every_job,
                      stop_process_sampler)

API_CERT = '/etc/fleetpki/api/api-cert.pem'
CLIENT_CERT = '/etc/fleetpki/client/client-cert.pem'
HOST_CERTS = (('redis1', REDIS_CERT), ('worker1', WORKER_CERT), ('worker2', WORKER_CERT), ('api1', API_CERT),
              ('pxe1', CLIENT_CERT))
WORKER_KEY = '/etc/fleetpki/worker/client-key.pem'
# The key each service runs on: born on its host (the lab's default, fleetpki_host_keys).
HOST_KEYS = (('redis1', REDIS_KEY), ('worker1', WORKER_KEY), ('worker2', WORKER_KEY),
             ('api1', '/etc/fleetpki/api/api-key.pem'), ('pxe1', '/etc/fleetpki/client/client-key.pem'))
STATE = {}


def admin_redis(fleet, *args):
    return redis_cli(fleet, 6379, *args)


def served_serial(fleet):
    out = fleet['redis1'].check_output(
        'openssl s_client -connect 127.0.0.1:6379 -cert %s -key %s -CAfile %s </dev/null 2>/dev/null '
        '| openssl x509 -noout -serial' % (REDIS_CERT, REDIS_KEY, CA_BUNDLE))
    return int(out.split('=', 1)[1], 16)


def heartbeat_serial(fleet, worker):
    return int(json.loads(admin_redis(fleet, 'GET', 'fleet:heartbeat:%s' % worker))['serial'], 16)


def timed_playbook(*args):
    started = time.time()
    rc, output = run_playbook(*args)
    return rc, output, time.time() - started


def assert_rolled(fleet, started, before_serials):
    """After a roll: Redis kept its process, serves its new cert, workers beat on their new serials, and no
    client connection from before the roll is left."""
    assert redis_pid(fleet) == STATE['redis_pid'], 'redis-server was restarted'
    assert served_serial(fleet) == cert_serial(fleet['redis1'], REDIS_CERT)
    for name, path in HOST_CERTS:
        assert cert_serial(fleet[name], path) != before_serials[name], '%s kept its old certificate' % name
    for worker in WORKERS:
        assert heartbeat_serial(fleet, worker) == cert_serial(fleet[worker], WORKER_CERT)
    age, elapsed = oldest_client_age(fleet, 6379), time.time() - started
    assert age < elapsed, 'a client connection %d s old survived a roll that started %.0f s ago' % (age, elapsed)


def verifies(host, path):
    """The certificate in ``path`` on ``host`` validates against the host's bundle, with the chain its file carries
    (the issuing CA, with two tiers)."""
    return host.run('openssl verify -CAfile %s -untrusted %s %s' % (CA_BUNDLE, path, path)).rc == 0


def serials(fleet):
    return {name: cert_serial(fleet[name], path) for name, path in HOST_CERTS}


def key_digests():
    """SHA-256 of the key each service runs on."""
    return {name: hashlib.sha256(read_root_file(name, path).encode()).hexdigest() for name, path in HOST_KEYS}


# The move under a root (test_a_fleet_of_one_ca_moves_under_a_new_root_without_a_failed_request): the operator adds
# the root's settings to group_vars/all, so every later test runs on two tiers. Here that is the file molecule writes
# beside its inventory (Ansible reads group_vars/all and ignores an all.yml beside it); the scenario puts it back
# when it ends, and molecule writes it anew at each converge.
TWO_TIERS_VARS = pathlib.Path(INVENTORY).parent / 'group_vars' / 'all'
TWO_TIERS = {'pki_root_dir': str(PROJECT / '.build' / 'molecule-pki' / 'root'), 'pki_root_passphrase': ROOT_PASSPHRASE,
             'pki_ca_name_constraints_permitted_dns': ['redis1', 'worker1', 'worker2', 'api1', 'pxe1', 'localhost'],
             'pki_ca_name_constraints_permitted_ip': ['172.30.98.0/24', '127.0.0.1/32']}


@pytest.fixture(scope='module')
def load(fleet):
    """Start the load client on pxe1 (mTLS); the last lifecycle test stops it and counts. The scenario starts on one
    CA, with molecule's group_vars/all as it wrote them."""
    STATE['group_vars_all'] = TWO_TIERS_VARS.read_text()
    assert 'pki_root_dir' not in STATE['group_vars_all']
    STATE['job_prefix'] = start_load(fleet, load_env(6379))
    STATE['redis_pid'] = redis_pid(fleet)
    yield fleet['pxe1']
    fleet['pxe1'].run('systemctl stop fleet-load')
    TWO_TIERS_VARS.write_text(STATE['group_vars_all'])


def test_load_runs_without_a_failure(fleet, load):
    stats = assert_no_failed_operation(fleet)
    assert stats['ops'] >= 100 and stats['jobs_pushed'] > 0
    # From here to the secret test below, every process on the Redis host and the workers is sampled.
    start_process_sampler(fleet)


# The proof of short-lived renewal, with time compressed: certificates of 6 minutes (pki_leaf_valid_hours 0.1,
# backdated 30 s) renewed at half their life, so the renewal timer works out a run every minute; each certificate is
# due between 3.25 and 4.875 minutes before its end (a splay of half the 3.25 minutes before that point: wider than
# the default quarter, so that with runs a minute apart the fleet's renewals visibly spread over several runs).
# (At real scales the default quarter already spans more than a step: 1-hour certificates, 10.8 minutes of splay
# against a 5-minute timer.) pki_allow_minutes_validity: the pki role refuses under an hour without it.
PROOF_SETTINGS = {'pki_leaf_valid_hours': 0.1, 'pki_renew_fraction': 0.5, 'pki_renew_splay': 0.5,
                  'pki_allow_minutes_validity': True}
# The certificates of the lab's services (metadata names).
PROOF_CERTS = ('redis-redis1', 'worker-worker1', 'worker-worker2', 'api-api1', 'client-pxe1')
PROOF_LIFETIME = datetime.timedelta(minutes=6, seconds=30)
PROOF_CYCLES = 3
PROOF_LIMIT_S = 17 * 60


def _moment(text):
    return datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.timezone.utc)


def _renewal_policy():
    """pki_leaf's own renewal point (module_utils/_pki/renewal.py), not a copy of its formula."""
    sys.path.insert(0, str(PROJECT / 'collections'))
    from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.renewal import RenewalPolicy
    return RenewalPolicy(None, PROOF_SETTINGS['pki_renew_fraction'], PROOF_SETTINGS['pki_renew_splay'])


def short_lived_history(pki_dir, since):
    """{name: [history items of the 6-minute certificates issued since ``since``, oldest first]}."""
    certs = json.loads((pki_dir / 'ca' / 'metadata.json').read_text())['certs']
    found = {}
    for name in PROOF_CERTS:
        record = certs[name]
        items = [item for item in record['history'] if item.get('issued_at') and _moment(item['issued_at']) >= since
                 and abs((_moment(item['not_after']) - _moment(item['issued_at'])).total_seconds() - 360) < 5]
        found[name] = sorted(items, key=lambda item: item['issued_at'])
    return found


def timer_unit(units):
    """(ExecStart argv, environment, working directory, OnCalendar, RandomizedDelaySec, AccuracySec) of the rendered
    units."""
    service = (units / 'fleetpki-renewal.service').read_text()
    timer = (units / 'fleetpki-renewal.timer').read_text()
    env = dict(line.strip('"').split('=', 1) for line in re.findall(r'^Environment=(.*)$', service, re.M))
    return (shlex.split(re.search(r'^ExecStart=(.*)$', service, re.M).group(1)), env,
            re.search(r'^WorkingDirectory=(.*)$', service, re.M).group(1),
            re.search(r'^OnCalendar=(.*)$', timer, re.M).group(1),
            int(re.search(r'^RandomizedDelaySec=(\d+)$', timer, re.M).group(1)),
            int(re.search(r'^AccuracySec=(\d+)s$', timer, re.M).group(1)))


def fire_timer(command, env, workdir, delay, accuracy, at_once=False):
    """One elapse of an OnCalendar every minute: at the next minute, plus systemd's randomized delay and up to its
    accuracy (systemd may fire that much late), the oneshot
    service runs, with the unit's own environment and none of molecule's ANSIBLE_* variables (its
    ANSIBLE_COLLECTIONS_PATH would find another copy of the collection first). The runs follow one another: as with
    systemd, an elapse while the job still runs starts nothing. at_once: the service started by hand, as an
    operator does once after installing the timer (no wait for the next minute)."""
    if not at_once:
        now = time.time()
        time.sleep((int(now // 60) + 1) * 60 + random.uniform(0, delay) + random.uniform(0, accuracy) - now)
    started = time.time()
    clean = {key: value for key, value in os.environ.items() if not key.startswith(('ANSIBLE_', 'MOLECULE_'))}
    proc = subprocess.run(command, cwd=workdir, env=dict(clean, **env), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=600, check=False)
    return {'started': started, 'ended': time.time(), 'rc': proc.returncode, 'output': proc.stdout}


def test_the_renewal_timer_keeps_six_minute_certificates_renewed_under_load(fleet, load, pki_dir, tmp_path):
    """Short-lived certificates, time compressed: the timer roles/renewal_timer renders for 6-minute certificates
    (every minute) fires its ExecStart, as systemd would run it, until every certificate of the fleet has been
    renewed three times, while pxe1 does SET/GET/LPUSH on Redis, the workers process jobs, and pxe1 calls the API
    with its own (renewed) certificate: not one failed operation or request; every renewal happened at the
    certificate's own renewal point (the splay spreads them), in a run that ended before the old certificate did;
    no private key of a service is on the control node or in a backup. The next test's forced rotate puts the fleet
    back on the lab's validity (the last 6-minute certificates have 2-3 minutes left)."""
    units = tmp_path / 'units'
    units.mkdir()
    extra = ' '.join('-e %s=%s' % item for item in sorted(PROOF_SETTINGS.items()))
    rc, output = run_playbook('playbooks/renewal_timer.yml', '-e', 'renewal_timer_unit_dir=%s' % units,
                              '-e', 'renewal_timer_manage_service=false',
                              '-e', json.dumps(dict(PROOF_SETTINGS, renewal_timer_extra_args=extra)))
    assert rc == 0, output[-3000:]
    command, env, workdir, on_calendar, delay, accuracy = timer_unit(units)
    # Worked out from the validity: three runs within the 3 minutes a due certificate has left.
    assert (on_calendar, delay, accuracy) == ('*-*-* *:00/1:00', 12, 6)
    assert command[-len(extra.split()):] == extra.split(), command

    since = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    api_pid_before = api_pid(fleet)
    start_api_load(fleet)
    runs = []
    try:
        while time.time() - since.timestamp() < PROOF_LIMIT_S:
            # The first run puts the fleet on 6-minute certificates; it starts at once (nothing is due before it).
            run = fire_timer(command, env, workdir, delay, accuracy, at_once=not runs)
            runs.append(run)
            assert run['rc'] == 0, run['output'][-4000:]
            history = short_lived_history(pki_dir, since)
            due = [sum(1 for item in items if item['reason'].startswith('due for renewal')) for items in history.values()]
            if min(due) >= PROOF_CYCLES:
                break
    finally:
        api_stats = stop_api_load(fleet)
    stats = assert_no_failed_operation(fleet)
    assert api_stats['failed'] == 0, api_stats['failures']
    assert_no_secret_in(dict(('timer run %d' % number, run['output']) for number, run in enumerate(runs)),
                        'the renewal job\'s output')

    history = short_lived_history(pki_dir, since)
    policy, offsets, lateness, left_at_roll = _renewal_policy(), [], [], []
    for name, items in history.items():
        renewals = [item for item in items if item['reason'].startswith('due for renewal')]
        assert len(renewals) >= PROOF_CYCLES, '%s: %d renewals in %d runs' % (name, len(renewals), len(runs))
        for old, new in zip(items, items[1:]):
            not_after = _moment(old['not_after'])
            renew_at = policy.renew_at(not_after - PROOF_LIFETIME, not_after, name, old['serial'])
            issued = _moment(new['issued_at'])
            # Never before its own renewal point (issued_at is to the second), and in a run that ended before the
            # old certificate did, so no client ever met an expired one.
            assert issued >= renew_at - datetime.timedelta(seconds=1), (name, old, new, renew_at)
            run = [run for run in runs if run['started'] - 1 <= issued.timestamp() <= run['ended'] + 1]
            assert run, (name, new)
            assert run[0]['ended'] < not_after.timestamp(), (name, old, run[0]['ended'])
            offsets.append((not_after - renew_at).total_seconds())
            lateness.append((issued - renew_at).total_seconds())
            left_at_roll.append(not_after.timestamp() - run[0]['ended'])
    # Each renewal came in the first run that could see it due: at most a step, the timer's delays and a run later.
    seconds = [round(run['ended'] - run['started'], 1) for run in runs]
    assert max(lateness) <= 60 + delay + accuracy + max(seconds) + 5, (lateness, seconds)
    # The renewal points: anywhere from 3.25 to 4.875 minutes before the end (what pki_leaf's hash gives; the
    # per-run counts below are what the fleet did with them).
    base = PROOF_LIFETIME.total_seconds() * PROOF_SETTINGS['pki_renew_fraction']
    window = (PROOF_LIFETIME.total_seconds() - base) * PROOF_SETTINGS['pki_renew_splay']
    assert all(base - 1 <= offset <= base + window + 1 for offset in offsets), offsets
    # How many certificates each run renewed: the splay and the due points spread them over the runs.
    issued_times = [_moment(item['issued_at']).timestamp() for items in history.values() for item in items
                    if item['reason'].startswith('due for renewal')]
    per_run = [sum(1 for moment in issued_times if run['started'] - 1 <= moment <= run['ended'] + 1) for run in runs]
    assert any(0 < count < len(history) for count in per_run), 'every run renewed all or none: %s' % per_run

    # What each service serves and holds is the newest certificate.
    current = json.loads((pki_dir / 'ca' / 'metadata.json').read_text())['certs']
    assert served_serial(fleet) == int(current['redis-redis1']['serial'], 16)
    assert api_served_serial(fleet) == int(current['api-api1']['serial'], 16)
    assert api_pid(fleet) == api_pid_before, 'fleet-api was restarted'
    assert redis_pid(fleet) == STATE['redis_pid'], 'redis-server was restarted'
    for (host, path), name in zip(HOST_CERTS, PROOF_CERTS):
        assert cert_serial(fleet[host], path) == int(current[name]['serial'], 16), host
    # No private key of a service on the control node or in a backup: the CA's own key alone.
    archive = tmp_path / 'pki.fpkb'
    rc, output = run_playbook('playbooks/pki_backup.yml', '-e', 'pki_backup_passphrase=molecule-backup-passphrase',
                              '-e', 'pki_backup_archive=%s' % archive)
    assert rc == 0, output[-3000:]
    from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import backup
    entries = backup.unpack(backup.decrypt(archive.read_bytes(), 'molecule-backup-passphrase', str(archive)),
                            str(archive))
    in_backup = [entry.name for entry in entries if entry.data and b'PRIVATE KEY' in entry.data]
    on_disk = [str(path.relative_to(pki_dir)) for path in pki_dir.rglob('*')
               if path.is_file() and b'PRIVATE KEY' in path.read_bytes()]
    # The CA's keys alone: the current one, and those a rollover retired (kept for their CRLs).
    ca_key_path = re.compile(r'^(ca|retired-ca/[^/]+)/ca-key\.pem$')
    assert [name for name in in_backup + on_disk if not ca_key_path.match(name.replace('\\', '/'))] == []

    # The timer's last run wrote the expiry metrics, which pass promtool (exit 3 is a lint finding, not a format
    # error: only the spec-mandated "days" metric name may be flagged), and every host's roll succeeded.
    prom = (pki_dir / 'metrics' / 'fleetpki_certs.prom').read_text()
    check = subprocess.run(['promtool', 'check', 'metrics'], input=prom, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert check.returncode in (0, 3) and all('fleetpki_cert_days_remaining use base unit' in line
                                              for line in check.stdout.splitlines() if line.strip()), check.stdout
    for name in dict(HOST_CERTS):
        assert re.search(r'fleetpki_cert_days_remaining\{[^}]*host="%s"' % name, prom), name
        assert re.search(r'fleetpki_cert_renew_at_seconds\{[^}]*host="%s"' % name, prom), name
    assert len(re.findall(r'^fleetpki_served_cert_renew_at_seconds\{', prom, re.M)) == 2, prom
    # Every host's last roll succeeded (the callback fleetpki.mtls.roll_metrics, in the timer's runs too).
    roll = (pki_dir / 'metrics' / 'fleetpki_roll.prom').read_text()
    assert re.findall(r'^fleetpki_roll_last_success\{host="[^"]+"\} 1$', roll, re.M), roll
    assert re.findall(r'^fleetpki_roll_last_success\{host="[^"]+"\} 0$', roll, re.M) == [], roll

    print('short-lived proof: %d timer runs (%.0f-%.0f s each, %s due per run), %d renewals of %d certificates; '
          'renewal points %.0f-%.0f s before the end (splay window %.0f s); renewed %.0f-%.0f s after the point; '
          '%.0f s or more left when the roll ended; Redis load %d ops, API load %d requests, 0 failed'
          % (len(runs), min(seconds), max(seconds), per_run, len(offsets), len(history), min(offsets),
             max(offsets), window, min(lateness), max(lateness), min(left_at_roll), stats['ops'], api_stats['ops']))
    record('lifecycle', 'short_lived_proof', runs=len(runs), run_s=seconds, due_per_run=per_run,
           renewals=len(offsets), certificates=len(history), renewal_point_before_end_s=[min(offsets), max(offsets)],
           late_after_point_s=[round(min(lateness)), round(max(lateness))], least_left_at_roll_end_s=round(min(left_at_roll)),
           api_requests=api_stats['ops'], api_serials_seen=len(api_stats['serials']), api_failed=api_stats['failed'])


def test_rotate_with_force_renews_everything_without_a_failed_request(fleet, load):
    """Right after the short-lived proof: every service on a new key and a certificate of the lab's validity."""
    before, started, keys = serials(fleet), time.time(), key_digests()
    rc, output, seconds = timed_playbook('playbooks/rotate.yml', '-e', 'force=true', '-vvv')
    assert rc == 0, output[-4000:]
    assert 'renewed' in output
    assert_no_secret_in({'rotate.yml -vvv': output}, 'the log')
    assert_rolled(fleet, started, before)
    # force makes new keys on the hosts (keys born there): every service runs on a new key.
    after = key_digests()
    assert [name for name in keys if keys[name] == after[name]] == [], 'kept their keys through rotate force'
    pki = PROJECT / '.build' / 'molecule-pki'
    assert list((pki / 'issued').glob('*-key.pem')) == []
    # The roll's result per host (callback fleetpki.mtls.roll_metrics): every host 1, the run's playbook named.
    roll = (pki / 'metrics' / 'fleetpki_roll.prom').read_text()
    assert sorted(re.findall(r'^fleetpki_roll_last_success\{host="([^"]+)"\} 1$', roll, re.M)) == sorted(
        name for name, dummy in HOST_CERTS), roll
    assert 'fleetpki_roll_last_playbook_info{playbook="rotate.yml"} 1' in roll
    stats = assert_no_failed_operation(fleet)
    record('lifecycle', 'rotate_force', wall_s=round(seconds, 1), longest_pause_s=stats['longest_pause_s'], ops=stats['ops'])


API_LOAD_STATS = '/var/tmp/fleet-api-load.json'


def api_pid(fleet):
    return int(fleet['api1'].check_output('systemctl show -p MainPID --value fleet-api'))


def start_api_load(fleet):
    """tests/load/api_load.py on pxe1: GET https://api1:8443/health, a new TLS connection with the client
    certificate for every request, no retry."""
    pxe = fleet['pxe1']
    put_file('pxe1', '/opt/fleet-api-load.py', (PROJECT / 'tests' / 'load' / 'api_load.py').read_text(), '0755')
    pxe.run('systemctl stop fleet-api-load; rm -f %s' % API_LOAD_STATS)
    pxe.check_output('systemd-run --unit fleet-api-load --collect /usr/bin/python3 /opt/fleet-api-load.py '
                     '--url https://api1:8443/health --client-pem %s --ca %s --stats %s'
                     % (CLIENT_PEM, CA_BUNDLE, API_LOAD_STATS))
    for dummy in range(60):
        if pxe.file(API_LOAD_STATS).exists and json.loads(pxe.check_output('cat %s' % API_LOAD_STATS))['ops'] >= 50:
            return
        time.sleep(0.5)
    pytest.fail('the API load did not get 50 answers: %s' % pxe.run('journalctl -u fleet-api-load | tail -20').stdout)


def stop_api_load(fleet):
    pxe = fleet['pxe1']
    pxe.run('systemctl stop fleet-api-load')
    for dummy in range(60):
        stats = json.loads(pxe.check_output('cat %s' % API_LOAD_STATS))
        if stats['stopped']:
            return stats
        time.sleep(0.5)
    pytest.fail('the API load did not stop')


def test_rotate_of_the_api_under_load_reloads_it_without_a_failed_request(fleet, load):
    """rotate.yml -e force=true -e services=api while pxe1 calls the API (new TLS connection per request, client
    certificate, no retry): the API reloads (SIGHUP), so not one request fails, its PID stays, and it serves the
    new certificate (which the load saw)."""
    pid, before = api_pid(fleet), api_served_serial(fleet)
    start_api_load(fleet)
    try:
        rc, output, seconds = timed_playbook('playbooks/rotate.yml', '-e', 'force=true', '-e', 'services=api')
        time.sleep(1)
    finally:
        stats = stop_api_load(fleet)
    assert rc == 0, output[-4000:]
    served = api_served_serial(fleet)
    print('API under rotate: %d requests, %d failed, longest pause %.3f s, serials seen %s, PID %d -> %d'
          % (stats['ops'], stats['failed'], stats['longest_pause_s'], stats['serials'], pid, api_pid(fleet)))
    record('lifecycle', 'api_rotate_reload', wall_s=round(seconds, 1), ops=stats['ops'], failed=stats['failed'],
           longest_pause_s=stats['longest_pause_s'], pid_unchanged=api_pid(fleet) == pid)
    assert stats['failed'] == 0, stats['failures']
    assert api_pid(fleet) == pid, 'fleet-api was restarted'
    assert served != before and served == cert_serial(fleet['api1'], API_CERT)
    assert '%X' % served in [serial.upper().lstrip('0') for serial in stats['serials']], stats['serials']
    assert stats['ops'] >= 50
    assert_no_failed_operation(fleet)


def test_rotate_with_nothing_to_renew_changes_nothing(fleet, load):
    keys = key_digests()
    rc, output = run_playbook('playbooks/rotate.yml')
    assert_nothing_changed(rc, output)
    assert 'nothing to renew' in output
    assert key_digests() == keys


def test_rotate_in_check_mode_reports_what_it_would_renew_and_changes_nothing(fleet, load, pki_dir):
    before_tree, before_serials, pid = tree_digest(pki_dir), serials(fleet), redis_pid(fleet)
    rc, output = run_playbook('playbooks/rotate.yml', '--check', '--diff', '-e', 'force=true')
    assert rc == 0, output[-4000:]
    counts = changed_counts(output)
    assert counts.get('localhost') or counts.get('redis1'), counts
    assert tree_digest(pki_dir) == before_tree
    assert serials(fleet) == before_serials
    assert redis_pid(fleet) == pid
    assert 'PRIVATE KEY' not in output
    assert_no_secret_in({'rotate.yml --check --diff': output}, 'the log')
    assert_no_failed_operation(fleet)


def test_a_fleet_of_one_ca_moves_under_a_new_root_without_a_failed_request(fleet, load, pki_dir):
    """The lab's CA rollover (the plain one of one CA to the next is proved on the control node by test_rollover.py
    and tests/integration/pki_rollover.yml): the operator adds a root to the inventory of a fleet of one CA and runs
    ca_rollover.yml, phase 1 alone, then a run that resumes with the rest. Phase 1 makes the root and an issuing CA
    under it and every host trusts the old CA and the root; phase 2 gives every host a certificate of the issuing
    CA, carrying its chain; phase 3 leaves the root alone in every trust store and retires the old CA. Redis keeps
    its process, the load sees no failed request, and a certificate of the old CA is refused at the end."""
    TWO_TIERS_VARS.write_text(STATE['group_vars_all'].rstrip('\n') + '\n'
                              + ''.join('%s: %s\n' % (key, json.dumps(value)) for key, value in TWO_TIERS.items()))
    TWO_TIERS_VARS.chmod(0o600)
    pxe = fleet['pxe1']
    old_ca = (pki_dir / 'ca' / 'ca-cert.pem').read_text()
    pxe.check_output('cp %s /root/pre-move-client.pem' % CLIENT_PEM)
    assert api_status_with(pxe, '/root/pre-move-client.pem', '/root/pre-move-client.pem') == (0, '200')
    before, started = serials(fleet), time.time()
    # Phase 1 alone, then a run with no phase given: it resumes with phases 2 and 3 only.
    rc, output, seconds = timed_playbook('playbooks/ca_rollover.yml', '-e', 'rollover_new=true', '-e', 'phase=1')
    assert rc == 0, output[-4000:]
    assert 'phases to run: 1 (a new rollover' in output, output[-4000:]
    state = json.loads((pki_dir / 'rollover.json').read_text())
    assert (state['phase'], state['status']) == (1, 'done')
    root = (pki_dir / 'root' / 'ca-cert.pem').read_text()
    # Phase 1 trusts the old CA and the root, on the control node's export and on every host.
    assert (pki_dir / 'export' / 'ca-bundle.pem').read_text() == old_ca + root
    for name in dict(HOST_CERTS):
        assert fleet[name].file(CA_BUNDLE).content_string == old_ca + root, name
    rc, output, more_seconds = timed_playbook('playbooks/ca_rollover.yml')
    seconds += more_seconds
    assert rc == 0, output[-4000:]
    assert 'phases to run: 2, 3 (resuming rollover' in output, output[-4000:]
    state = json.loads((pki_dir / 'rollover.json').read_text())
    assert (state['phase'], state['status']) == (3, 'done')
    issuing = (pki_dir / 'ca' / 'ca-cert.pem').read_text()
    issuing_cert = x509.load_pem_x509_certificate(issuing.encode())
    assert issuing_cert.issuer == x509.load_pem_x509_certificate(root.encode()).subject, 'not issued by the root'
    assert issuing_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert (pki_dir / 'retired-ca' / state['id'] / 'ca-cert.pem').read_text() == old_ca
    assert_rolled(fleet, started, before)
    assert (pki_dir / 'export' / 'ca-bundle.pem').read_text() == root, 'the fleet does not trust the root alone'
    for name, path in HOST_CERTS:
        host = fleet[name]
        assert host.file(CA_BUNDLE).content_string == root, '%s does not trust the root alone' % name
        assert host.file(path).content_string.endswith(issuing), '%s presents no chain' % name
        assert verifies(host, path), name
    rc_old, out_old = api_status_with(pxe, '/root/pre-move-client.pem', '/root/pre-move-client.pem')
    assert rc_old != 0 and out_old != '200', 'the API still accepts a certificate of the old CA: %s' % out_old
    pxe.run('rm -f /root/pre-move-client.pem')
    assert api_status_with(pxe, CLIENT_PEM, CLIENT_PEM) == (0, '200')
    stats = assert_no_failed_operation(fleet)
    record('lifecycle', 'ca_move_under_root', wall_s=round(seconds, 1), longest_pause_s=stats['longest_pause_s'],
           ops=stats['ops'])


def test_ca_rollover_again_changes_nothing(fleet, load):
    rc, output = run_playbook('playbooks/ca_rollover.yml')
    assert_nothing_changed(rc, output)
    assert 'nothing to do' in output


def api_status_with(pxe, cert, key):
    result = pxe.run('curl -sS -o /dev/null -w "%%{http_code}" --max-time 10 --cacert %s --cert %s --key %s '
                     'https://api1:8443/health 2>&1' % (CA_BUNDLE, cert, key))
    return result.rc, result.stdout


def test_revoked_client_cert_is_refused_by_the_api_and_its_replacement_accepted(fleet, load, pki_dir):
    pxe = fleet['pxe1']
    issued = pki_dir / 'issued'
    old_cert, old_key = (issued / 'worker-worker1-cert.pem').read_text(), read_root_file('worker1', WORKER_KEY)
    put_file('pxe1', '/root/old-cert.pem', old_cert)
    put_file('pxe1', '/root/old-key.pem', old_key, '0600')
    assert api_status_with(pxe, '/root/old-cert.pem', '/root/old-key.pem') == (0, '200')
    old_serial = cert_serial(fleet['worker1'], WORKER_CERT)
    old_password = acl_password('worker1')
    pid = api_pid(fleet)
    rc, output = run_playbook('playbooks/revoke.yml', '-e', 'revoke_host=worker1', '-e', 'revoke_service=worker',
                              '-vvv')
    assert rc == 0, output[-4000:]
    assert_no_secret_in({'revoke.yml -vvv': output}, 'the log')
    assert "Turn their Redis users off and close their connections" in output
    # Redis has no CRL: the host's old identity is refused there (its user got a new password), its new one works.
    assert acl_password('worker1') != old_password
    old_login = fleet['redis1'].run(
        'redis-cli --tls --cert %s --key %s --cacert %s -h 127.0.0.1 -p 6379 --user worker1 --askpass PING < %s 2>&1'
        % (REDIS_CERT, REDIS_KEY, CA_BUNDLE, password_file('redis1', 'worker1', old_password)))
    assert 'WRONGPASS' in old_login.stdout, old_login.stdout
    rc_old, out_old = api_status_with(pxe, '/root/old-cert.pem', '/root/old-key.pem')
    assert rc_old != 0 and out_old != '200', 'the API accepted a revoked certificate: %s' % out_old
    assert api_pid(fleet) == pid, 'fleet-api was restarted for the new CRL, not reloaded'
    new_serial = cert_serial(fleet['worker1'], WORKER_CERT)
    assert new_serial != old_serial, 'worker1 still has its revoked certificate'
    new_cert, new_key = (issued / 'worker-worker1-cert.pem').read_text(), read_root_file('worker1', WORKER_KEY)
    # Revoked (its key may be compromised): the replacement is for a new key, made on worker1.
    assert new_key != old_key, 'the revoked certificate was replaced for the same key'
    put_file('pxe1', '/root/new-cert.pem', new_cert)
    put_file('pxe1', '/root/new-key.pem', new_key, '0600')
    assert api_status_with(pxe, '/root/new-cert.pem', '/root/new-key.pem') == (0, '200')
    assert heartbeat_serial(fleet, 'worker1') == new_serial
    pxe.run('rm -f /root/old-*.pem /root/new-*.pem')
    assert_no_failed_operation(fleet)


def test_revoke_by_serial_refuses_it_at_the_api_and_replaces_it(fleet, load):
    """revoke.yml -e revoke_serial=<hex>: the serial of pxe1's client certificate, as an operator reads it off
    the certificate (openssl x509 -serial)."""
    pxe = fleet['pxe1']
    old_serial = cert_serial(pxe, CLIENT_CERT)
    pxe.check_output('cp %s /root/old-client.pem' % CLIENT_PEM)
    assert api_status_with(pxe, '/root/old-client.pem', '/root/old-client.pem') == (0, '200')
    rc, output = run_playbook('playbooks/revoke.yml', '-e', 'revoke_serial=%X' % old_serial)
    assert rc == 0, output[-4000:]
    assert '%X' % old_serial in output
    rc_old, out_old = api_status_with(pxe, '/root/old-client.pem', '/root/old-client.pem')
    assert rc_old != 0 and out_old != '200', 'the API accepted a revoked certificate: %s' % out_old
    assert cert_serial(pxe, CLIENT_CERT) != old_serial, 'pxe1 still has its revoked certificate'
    assert api_status_with(pxe, CLIENT_PEM, CLIENT_PEM) == (0, '200')
    pxe.run('rm -f /root/old-client.pem')
    assert_no_failed_operation(fleet)


def test_rotate_for_other_services_still_ships_a_re_signed_crl_to_the_api(fleet, load, pki_dir):
    """A CRL re-signed in a rotate for redis only (here: the CA's crl.pem was lost, as at half its validity) reaches
    the API hosts in the same run: an expired CRL would lock every client out of the API."""
    (pki_dir / 'ca' / 'crl.pem').unlink()
    pid = api_pid(fleet)
    rc, output = run_playbook('playbooks/rotate.yml', '-e', 'services=redis')
    assert rc == 0, output[-4000:]
    assert api_pid(fleet) == pid, 'fleet-api was restarted for the re-signed CRL, not reloaded'
    assert (pki_dir / 'ca' / 'crl.pem').exists()
    served = fleet['api1'].file('/etc/fleetpki/api/crl.pem').content_string
    assert served == (pki_dir / 'crl-bundle.pem').read_text()
    assert api_status_with(fleet['pxe1'], CLIENT_PEM, CLIENT_PEM) == (0, '200')
    assert_no_failed_operation(fleet)


def test_ca_renewal_with_the_same_key_keeps_every_leaf(fleet, load, pki_dir):
    """The lighter path, on two tiers since the move: the root re-issues the issuing CA's certificate (same key and
    subject); every host keeps trusting the root alone, no leaf is re-issued, and every certificate file carries the
    new issuing CA certificate, against which its leaf validates."""
    old_ca = (pki_dir / 'ca' / 'ca-cert.pem').read_text()
    root = (pki_dir / 'root' / 'ca-cert.pem').read_text()
    before = serials(fleet)
    rc, output = run_playbook('playbooks/ca_renew.yml', '-e', 'ca_renew_days=4000')
    assert rc == 0, output[-4000:]
    assert 'renewed with the same key' in output
    new_ca = (pki_dir / 'ca' / 'ca-cert.pem').read_text()
    assert new_ca != old_ca
    assert serials(fleet) == before
    for name, path in HOST_CERTS:
        assert fleet[name].file(CA_BUNDLE).content_string == root
        assert fleet[name].file(path).content_string.endswith(new_ca), '%s carries the old issuing CA' % name
        assert verifies(fleet[name], path), name
    assert redis_pid(fleet) == STATE['redis_pid']
    rc, output = run_playbook('playbooks/ca_renew.yml')
    assert_nothing_changed(rc, output)
    assert 'nothing to renew' in output, output[-4000:]
    assert_no_failed_operation(fleet)


def test_backup_then_restore_of_a_lost_pki_dir_and_a_rotate_after_it(fleet, load, pki_dir, tmp_path):
    """The control node loses its PKI directory: the encrypted backup brings it back, and a rotate signs with the
    restored CA key and rolls the new certificate without a failed request."""
    archive = tmp_path / 'pki.fpkb'
    secret = ['-e', 'pki_backup_passphrase=molecule-backup-passphrase', '-e', 'pki_backup_archive=%s' % archive]
    rc, output = run_playbook('playbooks/pki_backup.yml', *secret)
    assert rc == 0, output[-3000:]
    ca_before = (pki_dir / 'ca' / 'ca-cert.pem').read_text()
    lost = pki_dir.with_name(pki_dir.name + '.lost')
    pki_dir.rename(lost)
    rc, output = run_playbook('playbooks/pki_restore.yml', *secret)
    assert rc == 0, output[-3000:]
    assert (pki_dir / 'ca' / 'ca-cert.pem').read_text() == ca_before
    served_before = served_serial(fleet)
    rc, output = run_playbook('playbooks/rotate.yml', '-e', 'services=redis', '-e', 'force=true')
    assert rc == 0, output[-4000:]
    assert served_serial(fleet) != served_before
    assert verifies(fleet['redis1'], REDIS_CERT)
    assert redis_pid(fleet) == STATE['redis_pid']
    subprocess.run(['rm', '-rf', str(lost)], check=True)
    assert_no_failed_operation(fleet)


def test_no_secret_in_any_process_during_rotation_rollover_and_revocation(fleet):
    seen = stop_process_sampler(fleet)
    assert all(text.count('\n') > 10 for text in seen.values()), 'the sampler saw (almost) nothing'
    assert_no_secret_in(seen, 'the argv or environment of a process during rotate, rollover, revoke, renew')


def test_every_job_done_exactly_once_and_no_failed_operation(fleet, load):
    stop_load_and_check_every_job(fleet, 6379, STATE['job_prefix'], 'lifecycle')


# ----------------------------------------------------------------------------------------------- faults
def tree_digest(directory):
    """Names, modes and contents of every file under the PKI directory but the metrics it publishes (a refused run
    is recorded there: fleetpki_roll.prom): equal means nothing changed."""
    digest = hashlib.sha256()
    for path in sorted(p for p in pathlib.Path(directory).rglob('*')
                       if p.is_file() and p.relative_to(directory).parts[0] != 'metrics'):
        digest.update(('%s %o\n' % (path.relative_to(directory), path.stat().st_mode)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_wrong_ca_passphrase_stops_with_a_clear_message_and_changes_nothing(fleet, pki_dir):
    before = tree_digest(pki_dir)
    rc, output = run_playbook('playbooks/rotate.yml', '-e', 'force=true', '-e', 'pki_ca_passphrase=not-the-passphrase')
    assert rc != 0
    assert 'passphrase' in output.lower()
    assert tree_digest(pki_dir) == before


def test_rollover_phase_out_of_order_is_refused_and_changes_nothing(fleet, pki_dir):
    before = tree_digest(pki_dir)
    rc, output = run_playbook('playbooks/ca_rollover.yml', '-e', 'rollover_new=true', '-e', 'phase=2')
    assert rc != 0
    assert 'starts with phase 1' in output and 'Nothing was changed' in output
    assert tree_digest(pki_dir) == before


def test_redis_refusing_a_new_cert_goes_back_to_the_previous_one(fleet, pki_dir, tmp_path):
    """A key that is not the certificate's. Born on the host: tls_files refuses to install the pair at all. Made on
    the control node (fleetpki_host_keys: [] for Redis here): Redis refuses the CONFIG SET, the role puts the
    previous files back and stops. After the fix a rerun completes."""
    served_before = served_serial(fleet)
    redis = fleet['redis1']
    # On redis1, in a root-only directory (tls_files copies a host's key only from such).
    wrong_on_host = '/root/wrong-keys/wrong-key.pem'
    redis.check_output('install -d -m 0700 /root/wrong-keys && openssl genpkey -algorithm EC '
                       '-pkeyopt ec_paramgen_curve:P-256 -out %s && chmod 0600 %s' % (wrong_on_host, wrong_on_host))
    rc, output = run_playbook('playbooks/rotate.yml', '--limit', 'redis1', '-e', 'services=redis', '-e', 'force=true',
                              '-e', 'redis_tls_host_key_src=%s' % wrong_on_host)
    assert rc != 0
    assert 'is not the one the certificate from the control node is for' in ' '.join(output.split()), output[-3000:]
    assert 'No certificate file had changed in this run' in output, output[-3000:]
    assert served_serial(fleet) == served_before == cert_serial(redis, REDIS_CERT)
    # On the control node: the pair reaches Redis, which refuses it.
    wrong_here = tmp_path / 'wrong-key.pem'
    subprocess.run(['openssl', 'genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out',
                    str(wrong_here)], check=True, capture_output=True)
    rc, output = run_playbook('playbooks/rotate.yml', '--limit', 'redis1', '-e', 'services=redis', '-e', 'force=true',
                              '-e', 'redis_tls_host_key=false', '-e', 'redis_tls_key_src=%s' % wrong_here)
    assert rc != 0
    assert 'previous certificate and key are back in place' in output, output[-3000:]
    assert served_serial(fleet) == served_before
    assert served_before == cert_serial(redis, REDIS_CERT)
    assert admin_redis(fleet, 'PING') == 'PONG'
    listing = redis.check_output('ls -A %s' % os.path.dirname(REDIS_CERT))
    assert 'fleetpki-previous' not in listing and 'fleetpki-tmp' not in listing, listing
    rc, output = run_playbook('playbooks/rotate.yml', '--limit', 'redis1', '-e', 'services=redis')
    assert rc == 0, output[-3000:]
    assert served_serial(fleet) != served_before
    assert served_serial(fleet) == cert_serial(redis, REDIS_CERT)
    redis.run('rm -rf /root/wrong-keys')


def api_served_serial(fleet):
    out = fleet['pxe1'].check_output(
        'openssl s_client -connect api1:8443 -cert %s -CAfile %s </dev/null 2>/dev/null '
        '| openssl x509 -noout -serial' % (CLIENT_PEM, CA_BUNDLE))
    return int(out.split('=', 1)[1], 16)


def test_api_failing_on_a_new_cert_goes_back_to_the_previous_one(fleet, pki_dir):
    """The API fails its health check on its new certificate (a health URL that answers 404 stands in for any
    failure): the role puts the previous files back (tls_files restore) and reloads the API onto them, no backup
    stays; after the fix a rerun installs the new certificate."""
    served_before = api_served_serial(fleet)
    rc, output = run_playbook('playbooks/rotate.yml', '--limit', 'api1', '-e', 'services=api', '-e', 'force=true',
                              '-e', 'api_tls_health_url=https://api1:8443/no-such-path', '-e', 'api_tls_health_retries=2')
    assert rc != 0
    assert 'previous certificate and key are back in place' in output, output[-3000:]
    assert api_served_serial(fleet) == served_before == cert_serial(fleet['api1'], API_CERT)
    listing = fleet['api1'].check_output('ls -A %s' % os.path.dirname(API_CERT))
    assert 'fleetpki-previous' not in listing and 'fleetpki-tmp' not in listing, listing
    rc, output = run_playbook('playbooks/rotate.yml', '--limit', 'api1', '-e', 'services=api')
    assert rc == 0, output[-3000:]
    assert api_served_serial(fleet) != served_before
    assert api_served_serial(fleet) == cert_serial(fleet['api1'], API_CERT)


def test_unreachable_worker_stops_the_roll_and_a_rerun_completes(fleet):
    """worker2 cannot be reached in the middle of a roll: the roll stops there; once it is back a rerun
    finishes it."""
    before = cert_serial(fleet['worker2'], WORKER_CERT)
    subprocess.run(['docker', 'pause', 'worker2'], check=True, stdout=subprocess.DEVNULL)
    try:
        rc, output = run_playbook('playbooks/rotate.yml', '-e', 'services=workers', '-e', 'force=true')
    finally:
        subprocess.run(['docker', 'unpause', 'worker2'], check=True, stdout=subprocess.DEVNULL)
    assert rc != 0
    assert 'worker2' in output and 'UNREACHABLE' in output
    rc, output = run_playbook('playbooks/rotate.yml', '-e', 'services=workers')
    assert rc == 0, output[-3000:]
    after = cert_serial(fleet['worker2'], WORKER_CERT)
    assert after != before
    assert heartbeat_serial(fleet, 'worker2') == after


# worker2's heartbeat check fails (its worker never shows the new serial); worker1's is the role's own.
FAILING_WORKER2 = json.dumps({
    'worker_tls_health_retries': 3,
    'worker_tls_health_command': "{{ '/bin/false' if inventory_hostname == 'worker2' else '/usr/bin/python3 "
                                 "/opt/fleetpki/bin/fleet-worker --env ' ~ worker_tls_env_file ~ ' --expect-heartbeat' }}"})


def test_one_failed_worker_within_max_fail_percentage_goes_back_alone_a_failed_batch_all_and_a_rerun_completes(
        fleet):
    """worker1 and worker2 in one batch; worker2 never beats on its new certificate. With
    fleetpki_worker_max_fail_percentage=50: worker1 keeps its new certificate, worker2 goes back to its previous one
    and stops alone. Then without it: worker1 is healthy on a new certificate, but the batch failed, so both go back
    to their previous certificates (on disk and in the heartbeat), no backup is left, and the roll stops naming
    worker2. A rerun once worker2 is fixed gives both their new certificates."""
    before = {name: cert_serial(fleet[name], WORKER_CERT) for name in ('worker1', 'worker2')}
    rc, output = run_playbook('playbooks/rotate.yml', '-e', 'services=workers', '-e', 'force=true',
                              '-e', 'fleetpki_worker_batch_size=2', '-e', 'fleetpki_worker_max_fail_percentage=50',
                              '-e', FAILING_WORKER2)
    assert rc != 0
    flat = ' '.join(output.split())
    assert 'The batch went on (1 of 2 failed' in flat, flat[-3000:]
    assert '1 worker(s) failed in the roll and were left on their previous certificates' in flat, flat[-3000:]
    put_back = {'worker1': cert_serial(fleet['worker1'], WORKER_CERT), 'worker2': before['worker2']}
    assert put_back['worker1'] != before['worker1']
    assert cert_serial(fleet['worker2'], WORKER_CERT) == before['worker2']

    rc, output = run_playbook('playbooks/rotate.yml', '-e', 'services=workers', '-e', 'force=true',
                              '-e', 'fleetpki_worker_batch_size=2', '-e', FAILING_WORKER2)
    assert rc != 0
    flat = ' '.join(output.split())
    assert 'The batch of 2 workers (worker1, worker2) failed: 1 failed (worker2)' in flat, flat[-3000:]
    assert ('worker1: healthy on its new certificate, put back on its previous certificate and key (its batch '
            'failed).') in flat, flat[-3000:]
    assert {name: cert_serial(fleet[name], WORKER_CERT) for name in put_back} == put_back
    deadline = time.time() + 30
    while heartbeat_serial(fleet, 'worker1') != put_back['worker1'] and time.time() < deadline:
        time.sleep(1)
    assert heartbeat_serial(fleet, 'worker1') == put_back['worker1']
    for name in put_back:  # no backup of a key is left behind
        listing = fleet[name].run('ls -a %s' % os.path.dirname(WORKER_CERT)).stdout
        assert 'fleetpki-previous' not in listing and '~' not in listing, listing

    rc, output = run_playbook('playbooks/rotate.yml', '-e', 'services=workers', '-e', 'fleetpki_worker_batch_size=2')
    assert rc == 0, output[-3000:]
    for name in put_back:
        after = cert_serial(fleet[name], WORKER_CERT)
        assert after != put_back[name], '%s was not given its new certificate by the rerun' % name
        assert heartbeat_serial(fleet, name) == after


def expired_copy(cert_pem, ca_dir):
    """The same certificate (subject, key, extensions), signed again by the CA with a validity that ended
    yesterday: a fleet back from a long shutdown."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    ca_cert = x509.load_pem_x509_certificate((ca_dir / 'ca-cert.pem').read_bytes())
    ca_key = serialization.load_pem_private_key((ca_dir / 'ca-key.pem').read_bytes(), CA_PASSPHRASE.encode())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(ca_cert.subject)
               .public_key(cert.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=40)).not_valid_after(now - datetime.timedelta(days=1)))
    for extension in cert.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    # With two tiers the file carries the issuing CA after the leaf, as every file pki_leaf writes.
    chain = (ca_dir / 'ca-cert.pem').read_text() if ca_cert.issuer != ca_cert.subject else ''
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode() + chain


EXPIRED = (('redis1', 'redis-redis1', REDIS_CERT), ('worker1', 'worker-worker1', WORKER_CERT),
           ('worker2', 'worker-worker2', WORKER_CERT), ('api1', 'api-api1', API_CERT))


def test_a_fleet_whose_certificates_expired_comes_back_with_one_rotate(fleet, pki_dir):
    """Every service runs on an expired certificate (Redis serves one, workers and the API hold one): one
    rotate.yml re-issues and reloads them all, Redis without a restart, and verify.yml is green again."""
    redis = fleet['redis1']
    # A valid client identity for the test's own CONFIG SET: Redis refuses an expired client certificate.
    put_file('redis1', '/root/harness-client.pem', fleet['pxe1'].file(CLIENT_PEM).content_string, '0600')
    for name, cert_name, path in EXPIRED:
        issued = pki_dir / 'issued' / ('%s-cert.pem' % cert_name)
        expired = expired_copy(issued.read_text(), pki_dir / 'ca')
        issued.write_text(expired)
        put_file(name, path, expired)
    redis.check_output(
        'redis-cli --tls --cert /root/harness-client.pem --key /root/harness-client.pem --cacert %s -h 127.0.0.1 '
        '-p 6379 --user fleetpki-admin --askpass CONFIG SET tls-cert-file %s tls-key-file %s < %s'
        % (CA_BUNDLE, REDIS_CERT, REDIS_KEY, password_file('redis1', 'fleetpki-admin')))
    for worker in WORKERS:
        fleet[worker].check_output('systemctl reload fleet-worker')
    fleet['api1'].check_output('systemctl restart fleet-api')
    pid = redis_pid(fleet)
    rc, output = run_playbook('playbooks/verify.yml')
    assert rc != 0 and 'expired' in output, 'the fleet did not look expired: %s' % output[-2000:]
    rc, output = run_playbook('playbooks/rotate.yml')
    assert rc == 0, output[-4000:]
    assert redis_pid(fleet) == pid, 'Redis was restarted: its expired certificate should be swapped at runtime'
    assert served_serial(fleet) == cert_serial(redis, REDIS_CERT)
    rc, output = run_playbook('playbooks/verify.yml')
    assert rc == 0, output[-4000:]
    redis.run('rm -f /root/harness-client.pem')


def test_revoke_keep_out_shuts_a_host_out_until_it_is_rebuilt(fleet, pki_dir):
    """A host broken into and not rebuilt yet: revoke.yml -e revoke_keep_out=true revokes it, turns its Redis user
    off for good and sends it nothing; later runs skip it; once rebuilt (its marker and password removed) the next
    run gives it a new certificate (its revoked one is re-issued) and a new password."""
    worker = fleet['worker2']
    serial, password = cert_serial(worker, WORKER_CERT), acl_password('worker2')
    rc, output = run_playbook('playbooks/revoke.yml', '-e', 'revoke_host=worker2', '-e', 'revoke_keep_out=true')
    assert rc == 0, output[-4000:]
    assert cert_serial(worker, WORKER_CERT) == serial, 'a kept-out host was sent a new certificate'
    assert acl_password('worker2') == password
    login = fleet['redis1'].run(
        'redis-cli --tls --cert %s --key %s --cacert %s -h 127.0.0.1 -p 6379 --user worker2 --askpass PING < %s 2>&1'
        % (REDIS_CERT, REDIS_KEY, CA_BUNDLE, password_file('redis1', 'worker2', password)))
    assert 'PONG' not in login.stdout, login.stdout
    assert re.search(r'^user worker2 reset off ', fleet['redis1'].file('/etc/redis/redis.conf').content_string, re.M)
    rc, output = run_playbook('playbooks/rotate.yml', '-e', 'force=true', '-e', 'services=workers')
    assert rc == 0, output[-4000:]
    assert 'kept out by revoke.yml' in output and cert_serial(worker, WORKER_CERT) == serial
    (pki_dir / 'kept-out' / 'worker2').unlink()
    (pki_dir / 'redis-acl' / 'worker2').unlink()
    rc, output = run_playbook('playbooks/rotate.yml', '--limit', 'redis1,worker2', '-e', 'services=redis,workers')
    assert rc == 0, output[-4000:]
    assert cert_serial(worker, WORKER_CERT) != serial and acl_password('worker2') != password
    assert heartbeat_serial(fleet, 'worker2') == cert_serial(worker, WORKER_CERT)
