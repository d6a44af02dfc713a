# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Crash test of pki_leaf: SIGKILL a 1000-certificate run in its write phase, 20 times, and check the files.

The real module runs the real way: ansible-playbook (from this virtualenv) runs a small playbook in a temp dir
that calls fleetpki.mtls.pki_leaf, found through the checkout's collections/ link. After a CA and a first full
issuance, every round starts a run with force: true (so every one of the 1000 pairs is rewritten), waits until
the run has written something, sleeps a random fraction of the write phase, and SIGKILLs the whole run: the
process group of ansible-playbook and the one its worker makes with setsid, which holds the module (this script
is a child subreaper, so no orphan escapes). Then, on disk:

- every <name>-key.pem / <name>-cert.pem pair present matches (same public key);
- every key file is mode 0600 and parses;
- metadata.json, when present, parses as JSON;
- temp files (.fleetpki-tmp-*) are allowed and counted; lone keys, lone certs, bundles whose certificate is not
  the one beside them, and certificates on disk that metadata.json does not know are counted and reported.

After the 20 kills, one uninterrupted run (force: false, so it has to repair what the kills left) must succeed
and leave all 1000 pairs matching, every bundle current, and every certificate recorded in metadata.json; a
repeat must then report no change.

    .venv/bin/python tests/crash/kill_pki_leaf.py [--rounds 20] [--certs 1000] [--seed N] [--keep]

Exits non-zero on any failure. Uses /dev/shm (tmpfs) when it exists.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import json
import os
import random
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

from cryptography import x509
from cryptography.hazmat.primitives import serialization

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TMP_PREFIX = '.fleetpki-tmp-'
KEY_SUFFIX = '-key.pem'
CERT_SUFFIX = '-cert.pem'
BUNDLE_SUFFIX = '-bundle.pem'
RUN_TIMEOUT = 120.0       # one full uninterrupted run
START_TIMEOUT = 60.0      # until a killed run has written its first file
POLL = 0.002

CA_PLAYBOOK = '''---
- name: Crash test CA
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Create the CA
      fleetpki.mtls.pki_ca:
        dir: "{{ crash_ca_dir }}"
        common_name: Crash Test Root CA
'''

LEAF_PLAYBOOK = '''---
- name: Crash test leaf run
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files:
    - certs.json
  tasks:
    - name: Issue the certificates
      fleetpki.mtls.pki_leaf:
        ca_dir: "{{ crash_ca_dir }}"
        dir: "{{ crash_issued_dir }}"
        force: "{{ crash_force | bool }}"
        certs: "{{ crash_certs }}"
      register: crash_leaf

    - name: Write the summary of the run
      ansible.builtin.copy:
        dest: "{{ crash_result }}"
        mode: "0644"
        content: "{{ {'changed': crash_leaf.changed, 'issued': crash_leaf.issued, 'updated': crash_leaf.updated,
                      'unchanged': crash_leaf.unchanged,
                      'reasons': crash_leaf.certs | map(attribute='reason') | list} | to_json }}"
'''


def find_ansible_playbook():
    for candidate in (os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'),
                      os.path.join(REPO, '.venv', 'bin', 'ansible-playbook')):
        if os.access(candidate, os.X_OK):
            return candidate
    sys.exit('crash test: ansible-playbook not found beside %s nor in %s/.venv/bin' % (sys.executable, REPO))


def make_base_dir():
    parent = '/dev/shm' if os.path.isdir('/dev/shm') and os.access('/dev/shm', os.W_OK) else None
    return tempfile.mkdtemp(prefix='fleetpki-crash-', dir=parent)


def cert_requests(count):
    usages = ('server', 'client', 'both')
    certs = []
    for index in range(count):
        name = 'host%04d' % index
        certs.append({
            'name': name,
            'dns': [name, '%s.fleet.test' % name],
            'ip': ['10.1.%d.%d' % (index // 250, index % 250 + 1)],
            'usage': usages[index % 3],
            'key_type': 'ec-p256',
        })
    return certs


class Runner:
    def __init__(self, base):
        self.base = base
        self.ca_dir = os.path.join(base, 'ca')
        self.issued_dir = os.path.join(base, 'issued')
        self.ansible_playbook = find_ansible_playbook()
        self.env = dict(os.environ)
        self.env.update({
            'ANSIBLE_CONFIG': os.path.join(REPO, 'ansible.cfg'),
            'ANSIBLE_COLLECTIONS_PATH': os.path.join(REPO, 'collections'),
            # A killed run leaves its temp dirs behind (Ansible's, and the module's AnsiballZ payload dir, made
            # with tempfile under TMPDIR): keep them all in the base dir, which is removed at the end.
            'ANSIBLE_LOCAL_TEMP': os.path.join(base, 'ansible-local'),
            'ANSIBLE_REMOTE_TMP': os.path.join(base, 'ansible-remote'),
            'TMPDIR': os.path.join(base, 'tmp'),
            'ANSIBLE_NOCOLOR': '1',
            'ANSIBLE_LOCALHOST_WARNING': 'false',
            'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false',
        })
        os.mkdir(self.env['TMPDIR'])
        self.counter = 0

    def start(self, playbook, extra):
        """Start ansible-playbook in a new session (its own process group); output goes to files."""
        self.counter += 1
        log = os.path.join(self.base, 'run-%02d.log' % self.counter)
        extra = dict(extra, crash_ca_dir=self.ca_dir, crash_issued_dir=self.issued_dir,
                     ansible_python_interpreter=sys.executable)
        argv = [self.ansible_playbook, '-i', 'localhost,', os.path.join(self.base, playbook),
                '-e', json.dumps(extra)]
        with open(log, 'wb') as out:
            proc = subprocess.Popen(argv, cwd=self.base, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        return proc, log

    def run(self, playbook, extra, what):
        """Run to completion; return the summary the leaf playbook writes (or {})."""
        result_path = os.path.join(self.base, 'result-%02d.json' % (self.counter + 1))
        extra = dict(extra, crash_result=result_path)
        started = time.monotonic()
        proc, log = self.start(playbook, extra)
        try:
            rc = proc.wait(RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
            raise CrashTestError('%s did not finish within %.0f s; log %s' % (what, RUN_TIMEOUT, log))
        elapsed = time.monotonic() - started
        if rc != 0:
            with open(log, 'rb') as handle:
                tail = handle.read()[-3000:].decode('utf-8', 'replace')
            raise CrashTestError('%s failed (rc %d):\n%s' % (what, rc, tail))
        summary = {}
        if os.path.exists(result_path):
            with open(result_path) as handle:
                summary = json.load(handle)
        summary['elapsed'] = elapsed
        return summary


class CrashTestError(Exception):
    pass


def read_procs():
    """{pid: (ppid, pgid, state)} of every process, from /proc."""
    procs = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as handle:
                data = handle.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so split after the last ')'.
        fields = data[data.rindex(')') + 2:].split()
        procs[int(entry)] = (int(fields[1]), int(fields[2]), fields[0])
    return procs


def descendants(procs, root):
    children = {}
    for pid, (ppid, _pgid, _state) in procs.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def become_subreaper():
    """Orphans of a killed run are re-parented to this process (not to init), so none can escape the search."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def reap_orphans():
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_tree(proc):
    """SIGKILL every process group of the run and make sure no process of it is left.

    ansible-playbook runs in its own session (start_new_session); each Ansible worker makes a session of its own
    (os.setsid in WorkerProcess._detach) and the module runs in the worker's group. So the groups to kill are
    those of every process below ansible-playbook, gathered while it still runs, then killed in one sweep.
    """
    me = os.getpid()
    groups = set([proc.pid])
    module_pids = set()
    deadline = time.monotonic() + 5
    while True:
        procs = read_procs()
        live = [pid for pid in descendants(procs, me) if procs[pid][2] != 'Z']
        live += [pid for pid, (_ppid, pgid, state) in procs.items()
                 if pgid in groups and state != 'Z' and pid not in live]
        if not live:
            break
        module_pids.update(pid for pid in live if is_module_process(pid))
        if time.monotonic() > deadline:
            raise CrashTestError('processes %s still run after SIGKILL' % live)
        groups.update(procs[pid][1] for pid in live)
        for pgid in groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.005)
        reap_orphans()
    proc.wait()
    return len(groups), len(module_pids)


def is_module_process(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as handle:
            return b'AnsiballZ_pki_leaf' in handle.read()
    except OSError:
        return False


def newer_entries(directory, since_ns):
    """Number of entries in ``directory`` written after ``since_ns`` (a rename keeps the temp file's mtime)."""
    count = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                try:
                    if entry.stat(follow_symlinks=False).st_mtime_ns > since_ns:
                        count += 1
                except FileNotFoundError:
                    count += 1  # a temp file renamed away under us: writing is under way
    except FileNotFoundError:
        pass
    return count


def mtime_ns(path):
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None


def public_bytes(public_key):
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_tree(issued_dir, ca_dir, names, ca_cert_pem):
    """Inspect what a run left on disk; returns (failures, facts)."""
    failures = []
    facts = {'pairs': 0, 'mismatched': 0, 'lone_keys': 0, 'lone_certs': 0, 'bad_mode': 0, 'bad_keys': 0,
             'bad_certs': 0, 'stale_bundles': 0, 'temps': 0, 'metadata': 'absent', 'unrecorded': 0, 'serials': {}}
    listing = set(os.listdir(issued_dir)) if os.path.isdir(issued_dir) else set()
    facts['temps'] = sum(1 for name in listing if name.startswith(TMP_PREFIX))
    facts['temps'] += sum(1 for name in os.listdir(ca_dir) if name.startswith(TMP_PREFIX))

    for name in names:
        key_name, cert_name, bundle_name = name + KEY_SUFFIX, name + CERT_SUFFIX, name + BUNDLE_SUFFIX
        key_path, cert_path = os.path.join(issued_dir, key_name), os.path.join(issued_dir, cert_name)
        key = cert = None
        if key_name in listing:
            mode = stat.S_IMODE(os.lstat(key_path).st_mode)
            if mode != 0o600:
                facts['bad_mode'] += 1
                failures.append('%s has mode %04o, not 0600' % (key_name, mode))
            try:
                with open(key_path, 'rb') as handle:
                    key = serialization.load_pem_private_key(handle.read(), password=None)
            except ValueError as exc:
                facts['bad_keys'] += 1
                failures.append('%s does not parse: %s' % (key_name, exc))
        if cert_name in listing:
            try:
                with open(cert_path, 'rb') as handle:
                    cert_data = handle.read()
                cert = x509.load_pem_x509_certificate(cert_data)
            except ValueError as exc:
                facts['bad_certs'] += 1
                failures.append('%s does not parse: %s' % (cert_name, exc))
        if key_name in listing and cert_name in listing:
            facts['pairs'] += 1
            if key is not None and cert is not None:
                if public_bytes(key.public_key()) != public_bytes(cert.public_key()):
                    facts['mismatched'] += 1
                    failures.append('%s does not match %s' % (key_name, cert_name))
        elif key_name in listing:
            facts['lone_keys'] += 1
        elif cert_name in listing:
            facts['lone_certs'] += 1
        if cert is not None:
            facts['serials'][name] = '%X' % cert.serial_number
            if bundle_name in listing:
                with open(os.path.join(issued_dir, bundle_name), 'rb') as handle:
                    if handle.read() != cert_data + ca_cert_pem:
                        facts['stale_bundles'] += 1

    metadata_path = os.path.join(ca_dir, 'metadata.json')
    if os.path.exists(metadata_path):
        try:
            with open(metadata_path, 'rb') as handle:
                metadata = json.loads(handle.read().decode('utf-8'))
            facts['metadata'] = 'ok'
        except ValueError as exc:
            facts['metadata'] = 'INVALID'
            failures.append('metadata.json does not parse: %s' % exc)
        else:
            recorded = metadata.get('certs', {})
            for name, serial in facts['serials'].items():
                history = [item.get('serial') for item in (recorded.get(name) or {}).get('history', [])]
                if serial not in history:
                    facts['unrecorded'] += 1
            facts['metadata_doc'] = metadata
    return failures, facts


def describe(facts):
    return ('pairs %d, mismatched %d, lone keys %d, lone certs %d, stale bundles %d, bad key mode %d, '
            'temp files %d, metadata %s, certs not in metadata %d'
            % (facts['pairs'], facts['mismatched'], facts['lone_keys'], facts['lone_certs'], facts['stale_bundles'],
               facts['bad_mode'], facts['temps'], facts['metadata'], facts['unrecorded']))


def kill_round(runner, number, write_phase, rng, names, ca_cert_pem):
    """Start a forced run, kill it inside its write phase; returns (killed_in_writes, failures, facts, line)."""
    metadata_path = os.path.join(runner.ca_dir, 'metadata.json')
    since = time.time_ns()
    metadata_before = mtime_ns(metadata_path)
    proc, log = runner.start('leaf.yml', {'crash_force': True, 'crash_result': os.path.join(runner.base, 'x.json')})
    started = time.monotonic()
    try:
        while newer_entries(runner.issued_dir, since) == 0:
            if proc.poll() is not None:
                raise CrashTestError('round %d: the run ended (rc %s) before writing anything; log %s'
                                     % (number, proc.returncode, log))
            if time.monotonic() - started > START_TIMEOUT:
                raise CrashTestError('round %d: nothing written within %.0f s; log %s' % (number, START_TIMEOUT, log))
            time.sleep(POLL)
        writing_at = time.monotonic()
        delay = rng.uniform(0, write_phase)
        time.sleep(delay)
        finished_first = proc.poll() is not None
    except BaseException:
        kill_tree(proc)
        raise
    groups, module_procs = kill_tree(proc)
    killed_at = time.monotonic()
    # The run saves metadata.json once, after its last certificate: a newer file means the writes were over.
    in_writes = not finished_first and mtime_ns(metadata_path) == metadata_before
    failures, facts = check_tree(runner.issued_dir, runner.ca_dir, names, ca_cert_pem)
    if in_writes and not module_procs:
        failures.append('the pki_leaf module process was not found among the processes killed')
    written = newer_entries(runner.issued_dir, since)
    line = ('round %02d: SIGKILL to %d process groups (%d module processes) %.3f s into the write phase '
            '(%.3f s after start), %d files written; %s'
            % (number, groups, module_procs, killed_at - writing_at, killed_at - started, written, describe(facts)))
    return in_writes, failures, facts, line


def final_checks(runner, names, ca_cert_pem, summary):
    failures, facts = check_tree(runner.issued_dir, runner.ca_dir, names, ca_cert_pem)
    if facts['pairs'] != len(names):
        failures.append('%d of %d pairs on disk after the full run' % (facts['pairs'], len(names)))
    if facts['stale_bundles']:
        failures.append('%d bundles are not cert + CA after the full run' % facts['stale_bundles'])
    if facts['metadata'] != 'ok':
        failures.append('metadata.json is %s after the full run' % facts['metadata'])
    else:
        recorded = facts['metadata_doc'].get('certs', {})
        current = sum(1 for name in names if (recorded.get(name) or {}).get('serial') == facts['serials'].get(name))
        if current != len(names):
            failures.append('metadata.json records the current serial of %d of %d certificates'
                            % (current, len(names)))
        if facts['unrecorded']:
            failures.append('%d certificates on disk are missing from the metadata history' % facts['unrecorded'])
    if summary.get('issued', 0) + summary.get('updated', 0) + summary.get('unchanged', 0) != len(names):
        failures.append('the full run reported %r' % summary)
    return failures, facts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=20)
    parser.add_argument('--certs', type=int, default=1000)
    parser.add_argument('--seed', type=int, default=None, help='random seed (printed; default: random)')
    parser.add_argument('--keep', action='store_true', help='keep the work directory')
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2 ** 32)
    rng = random.Random(seed)
    total_started = time.monotonic()

    subreaper = become_subreaper()
    base = make_base_dir()
    runner = Runner(base)
    print('crash test: %d rounds, %d certs, seed %d, work dir %s%s'
          % (args.rounds, args.certs, seed, base, '' if subreaper else ' (not a subreaper: orphans may escape)'))
    sys.stdout.flush()
    certs = cert_requests(args.certs)
    names = [entry['name'] for entry in certs]
    with open(os.path.join(base, 'certs.json'), 'w') as handle:
        json.dump({'crash_certs': certs}, handle)
    for name, text in (('ca.yml', CA_PLAYBOOK), ('leaf.yml', LEAF_PLAYBOOK)):
        with open(os.path.join(base, name), 'w') as handle:
            handle.write(text)

    failures = []
    kills = 0
    mismatched = 0
    keep = args.keep
    try:
        runner.run('ca.yml', {}, 'the CA run')
        with open(os.path.join(runner.ca_dir, 'ca-cert.pem'), 'rb') as handle:
            ca_cert_pem = handle.read()

        # A first full issuance: every round then rewrites existing pairs, and it times the write phase.
        since = time.time_ns()
        summary = runner.run('leaf.yml', {'crash_force': False}, 'the first full run')
        newest = max(os.stat(os.path.join(runner.issued_dir, name)).st_mtime_ns
                     for name in os.listdir(runner.issued_dir))
        oldest = min(os.stat(os.path.join(runner.issued_dir, name)).st_mtime_ns
                     for name in os.listdir(runner.issued_dir))
        write_phase = max((newest - oldest) / 1e9, 0.05)
        print('first full run: %d issued in %.1f s (write phase %.2f s, ansible and module start %.2f s)'
              % (summary.get('issued', -1), summary['elapsed'], write_phase, (oldest - since) / 1e9))
        round_failures, facts = final_checks(runner, names, ca_cert_pem, summary)
        if round_failures:
            raise CrashTestError('the first full run left a bad tree: %s' % '; '.join(round_failures[:10]))

        attempts = 0
        while kills < args.rounds:
            attempts += 1
            if attempts > args.rounds * 3:
                raise CrashTestError('too many runs finished before the kill (%d attempts for %d kills)'
                                     % (attempts, kills))
            in_writes, round_failures, facts, line = kill_round(runner, kills + 1, write_phase, rng, names,
                                                                ca_cert_pem)
            mismatched += facts['mismatched']
            failures.extend('round %d: %s' % (kills + 1, item) for item in round_failures)
            if not in_writes:
                print('%s [the writes were over before the kill: round repeated]' % line)
                continue
            kills += 1
            print('%s%s' % (line, ' FAILED' if round_failures else ''))
            sys.stdout.flush()

        summary = runner.run('leaf.yml', {'crash_force': False}, 'the full run after the kills')
        reasons = {}
        for reason in summary.get('reasons', []):
            key = reason.split(':')[0].split(';')[0]
            reasons[key] = reasons.get(key, 0) + 1
        round_failures, facts = final_checks(runner, names, ca_cert_pem, summary)
        failures.extend('full run: %s' % item for item in round_failures)
        mismatched += facts['mismatched']
        print('full run after the kills: %.1f s, issued %d, updated %d, unchanged %d (%s); %s'
              % (summary['elapsed'], summary.get('issued', -1), summary.get('updated', -1),
                 summary.get('unchanged', -1), ', '.join('%s %d' % item for item in sorted(reasons.items())),
                 describe(facts)))
        repeat = runner.run('leaf.yml', {'crash_force': False}, 'the repeat run')
        if repeat.get('changed') is not False:
            failures.append('the repeat run after the full run reported a change: %r' % repeat)
        print('repeat run: %.1f s, changed %s, unchanged %d'
              % (repeat['elapsed'], repeat.get('changed'), repeat.get('unchanged', -1)))
    except CrashTestError as exc:
        failures.append(str(exc))
    finally:
        if failures:
            keep = True
        if keep:
            print('work dir kept: %s' % base)
        else:
            shutil.rmtree(base, ignore_errors=True)

    print('crash test: %d kills, %d mismatched pairs, %.0f s' % (kills, mismatched, time.monotonic() - total_started))
    if failures:
        for item in failures[:50]:
            print('FAIL: %s' % item)
        print('crash test FAILED: %d problem(s)' % len(failures))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
