"""Fleet scale (issue 11): site / rotate / verify on the scale lab at N hosts, each against Ansible's own floor.

Prints figures; asserts nothing about time.

  python benchmarks/bench_scale.py                   N = 5, 25, 50 (make bench-scale SIZES="5 25 50")
  python benchmarks/bench_scale.py 5 --forks 20 --batch-size 20%
  python benchmarks/bench_scale.py 50 --first-run-only --no-floor
  python benchmarks/bench_scale.py --project       the growth (fixed + per host x N) from the last results

For each N: lab/scale.sh up N (1 Redis, 1 API, 1 pki client, N-3 workers over SSH), then
  site.yml (first run), site.yml (idempotent rerun), rotate.yml -e force=true under the load client, verify.yml,
each with -f FORKS and -e fleetpki_worker_batch_size=BATCH. A callback (benchmarks/callback_plugins/task_count.py)
records per play and host the tasks that reached the host. The FLOOR of a run is a generated playbook with the
same plays (hosts, serial, max_fail_percentage), the same inventory, forks and connection, in which every host
runs ansible.builtin.ping exactly as many times as tasks reached it in the run: what Ansible itself costs for
that shape. Printed: seconds, tasks per fleet host (max, mean), run / floor; changed for the rerun; the load
client's ops, failed ops and longest pause for rotate; the scale lab's memory (docker stats) after site.yml.
The lab is taken down after each N (--keep leaves the last one up). Logs: .build/bench-scale/.
"""
import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time

from bench_fleet import BIN, ROOT, env

SCALE = ROOT / 'lab' / 'scale.sh'
LAB = ROOT / '.build' / 'lab-scale'
INVENTORY = LAB / 'inventory'
WORK = ROOT / '.build' / 'bench-scale'
CALLBACKS = ROOT / 'benchmarks' / 'callback_plugins'
PREFIX = 'scale-'
LABEL = 'fleetpki-lab=' + PREFIX  # lab/lab.sh's label for FLEETPKI_LAB_PREFIX=scale-
LOAD_CLIENT = PREFIX + 'pxe1'
STATS = '/var/tmp/fleet-load-bench.json'
LOAD_ENV = '/etc/fleetpki/load-bench.env'
LOCAL_HOSTS = ('localhost', '127.0.0.1', '::1')
RUNS = ('site-rerun', 'rotate', 'verify')


def docker(*args, **kwargs):
    return subprocess.run(['docker'] + list(args), check=True, stdout=subprocess.PIPE, universal_newlines=True,
                          **kwargs).stdout


def counting_env(count_file):
    """The collection's callbacks as ansible.cfg enables them, plus task_count; the stdout callback unchanged."""
    values = env()
    values.update(ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS), FLEETPKI_TASK_COUNT_FILE=str(count_file),
                  ANSIBLE_CALLBACKS_ENABLED='fleetpki.mtls.summary,task_count')
    return values


def hosts_cpu_seconds():
    """CPU time used so far by the scale lab's containers (cgroup v1 cpuacct or v2 cpu.stat), None when unknown.
    The lab's hosts share this machine's cores with the control node: their modules' CPU is part of a run's time
    here, where a real fleet runs it on its own hosts."""
    total = 0.0
    for container in docker('ps', '-q', '--no-trunc', '--filter', 'label=%s' % LABEL).split():
        v1 = '/sys/fs/cgroup/cpuacct/docker/%s/cpuacct.usage' % container
        v2 = '/sys/fs/cgroup/system.slice/docker-%s.scope/cpu.stat' % container
        if os.path.exists(v1):
            with open(v1) as handle:
                total += int(handle.read()) / 1e9
        elif os.path.exists(v2):
            with open(v2) as handle:
                total += int(handle.read().split()[1]) / 1e6  # usage_usec
        else:
            return None
    return total


def run_playbook(label, path, forks, extra):
    """One timed ansible-playbook run; returns (seconds, the callback's counts). The counts also get the CPU
    seconds of the control node (ansible-playbook, its forks and their ssh clients; not the ControlPersist masters,
    which are not its children) and of the lab's hosts during the run."""
    count_file = WORK / ('%s.json' % label)
    log = WORK / ('%s.log' % label)
    command = [str(BIN / 'ansible-playbook'), '-i', str(INVENTORY), '-f', str(forks), str(path)] + list(extra)
    hosts_before = hosts_cpu_seconds()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    with open(str(log), 'w') as handle:
        proc = subprocess.run(command, cwd=str(ROOT), env=counting_env(count_file), stdout=handle,
                              stderr=subprocess.STDOUT, check=False)
    elapsed = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    hosts_after = hosts_cpu_seconds()
    cpu = {'control_node': after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime,
           'hosts': None if hosts_before is None or hosts_after is None else hosts_after - hosts_before}
    if proc.returncode != 0:
        with open(str(log)) as handle:
            tail = handle.read()[-3000:]
        sys.exit('%s failed (rc %d), log %s:\n%s' % (label, proc.returncode, log, tail))
    with open(str(count_file)) as handle:
        counts = json.load(handle)
    counts['cpu'] = cpu
    return elapsed, counts


def fleet_tasks(counts, kind='tasks'):
    """Tasks that reached each fleet host over the whole run (the control node's own plays left out); with
    kind='calls', the module runs (a loop's items each count)."""
    per_host = {}
    for play in counts['plays']:
        for host, number in play[kind].items():
            if host not in LOCAL_HOSTS:
                per_host[host] = per_host.get(host, 0) + number
    return per_host


def floor_playbook(counts, path):
    """The run's shape with ping: one play per recorded play, each host pinging as often as tasks reached it."""
    plays = []
    for number, play in enumerate(counts['plays']):
        most = max(play['tasks'].values() or [0])
        floor = {
            'name': 'floor %d: %s' % (number + 1, play['name']),
            'hosts': play['hosts'],
            'gather_facts': False,
            'vars': {'floor_counts': play['tasks']},
            'tasks': [{'name': 'ping %d' % index, 'ansible.builtin.ping': {},
                       'when': 'floor_counts.get(inventory_hostname, 0) > %d' % index} for index in range(most)],
        }
        if play['serial']:
            floor['serial'] = play['serial']
        if play['max_fail_percentage'] is not None:
            floor['max_fail_percentage'] = play['max_fail_percentage']
        if play['connection'] == 'local' or all(host in LOCAL_HOSTS for host in play['hosts']):
            floor['connection'] = 'local'
        plays.append(floor)
    # JSON is YAML: no dependency beyond the standard library.
    path.write_text(json.dumps(plays, indent=1) + '\n')
    return path


def measure(label, path, forks, extra, with_floor=True):
    seconds, counts = run_playbook(label, path, forks, extra)
    per_host = fleet_tasks(counts)
    print('  %s: %.1f s' % (label, seconds), flush=True)
    floor_seconds, floor_counts = None, {}
    if with_floor:
        floor_seconds, floor_counts = run_playbook(label + '-floor',
                                                   floor_playbook(counts, WORK / (label + '-floor.yml')), forks, extra)
        if fleet_tasks(floor_counts) != per_host:
            sys.exit('%s: the floor did not repeat the run\'s tasks per host: %s != %s'
                     % (label, per_host, fleet_tasks(floor_counts)))
        print('  %s floor: %.1f s' % (label, floor_seconds), flush=True)
    calls = fleet_tasks(counts, 'calls')
    return {'run': label, 'seconds': seconds, 'floor_seconds': floor_seconds, 'changed': counts['changed'],
            'cpu': counts['cpu'], 'floor_cpu': floor_counts.get('cpu'),
            'tasks_max': max(per_host.values() or [0]), 'calls_max': max(calls.values() or [0]),
            'tasks_mean': sum(per_host.values()) / float(len(per_host) or 1), 'plays': len(counts['plays'])}


def start_load(container=LOAD_CLIENT, pki_dir=LAB / 'pki'):
    """tests/load/fleet_load.py on pxe1 as a transient unit: pxe1's own ACL user (pxe1 is in redis_clients, its
    password in the PKI dir), its client cert, over mTLS; ~50 ops/s, a new TLS connection every 20, no retries."""
    password = (pki_dir / 'redis-acl' / 'pxe1').read_text().strip()
    docker('cp', str(ROOT / 'tests' / 'load' / 'fleet_load.py'), container + ':/opt/fleet-load.py')
    load_env = ('REDIS_HOST=redis1\nREDIS_PORT=6379\nREDIS_USERNAME=pxe1\nREDIS_PASSWORD=%s\n'
                'CLIENT_PEM=/etc/fleetpki/client/client.pem\nCA_BUNDLE=/etc/fleetpki/ca-bundle.pem\n' % password)
    docker('exec', '-i', container, 'sh', '-c', 'umask 077 && cat > %s' % LOAD_ENV, input=load_env)
    docker('exec', container, 'sh', '-c', 'systemctl stop fleet-load-bench 2>/dev/null; rm -f %s' % STATS)
    docker('exec', container, 'systemd-run', '--unit', 'fleet-load-bench', '--collect', '/usr/bin/python3',
           '/opt/fleet-load.py', '--env', LOAD_ENV, '--stats', STATS, '--job-prefix', 'bench-%d' % time.time())
    time.sleep(3)


def stop_load(container=LOAD_CLIENT):
    """Stop the load client; its counts: ops, failed, longest_pause_s..."""
    docker('exec', container, 'systemctl', 'stop', 'fleet-load-bench')
    return json.loads(docker('exec', container, 'cat', STATS))


def lab_containers():
    """The containers lab/scale.sh started (its label), running or not."""
    return docker('ps', '-a', '--filter', 'label=%s' % LABEL, '--format', '{{.Names}}').split()


def lab_memory_mib():
    """Total memory of the scale lab's containers (those with its label) as docker stats shows it."""
    units = {'B': 1.0 / 2 ** 20, 'KiB': 1.0 / 1024, 'MiB': 1.0, 'GiB': 1024.0}
    total = 0.0
    names = lab_containers()
    for line in docker('stats', '--no-stream', '--format', '{{.Name}} {{.MemUsage}}', *names).splitlines():
        name, usage = line.split(' ', 1)
        match = re.match(r'([\d.]+)(B|KiB|MiB|GiB)', usage)
        if match:
            total += float(match.group(1)) * units[match.group(2)]
    return total


def scale_lab(*args):
    subprocess.run([str(SCALE)] + list(args), check=True, stdout=subprocess.DEVNULL)


def bench_size(size, args):
    extra = ['-e', 'fleetpki_worker_batch_size=%s' % args.batch_size]
    scale_lab('down')
    started = time.monotonic()
    scale_lab('up', str(size))
    lab_seconds = time.monotonic() - started
    print('N=%d: lab up in %.1f s; forks %d, worker batch size %s' % (size, lab_seconds, args.forks, args.batch_size),
          flush=True)
    rows = [measure('n%d-site-first' % size, ROOT / 'site.yml', args.forks, extra, args.floor)]
    memory = lab_memory_mib()
    load = None
    if 'site-rerun' in args.runs:
        rows.append(measure('n%d-site-rerun' % size, ROOT / 'site.yml', args.forks, extra, args.floor))
    if 'rotate' in args.runs:
        start_load()
        try:
            rows.append(measure('n%d-rotate-force' % size, ROOT / 'playbooks' / 'rotate.yml', args.forks,
                                extra + ['-e', 'force=true'], args.floor))
        finally:
            load = stop_load()
    if 'verify' in args.runs:
        rows.append(measure('n%d-verify' % size, ROOT / 'playbooks' / 'verify.yml', args.forks, extra, args.floor))
    if not args.keep or size != args.sizes[-1]:
        scale_lab('down')
    return {'size': size, 'forks': args.forks, 'batch_size': args.batch_size, 'memory_mib': memory, 'load': load,
            'lab_up_seconds': lab_seconds, 'rows': rows, 'loadavg_after': os.getloadavg()}


def report(result):
    print('N=%d hosts, forks %d, worker batch size %s; lab up in %.1f s; lab memory after site.yml %.0f MiB '
          '(docker stats)' % (result['size'], result['forks'], result['batch_size'], result['lab_up_seconds'],
                              result['memory_mib']))
    header = ('run', 'run s', 'floor s', 'ratio', 'tasks max', 'tasks mean', 'calls max', 'changed')
    print('  %-18s %8s %8s %7s %10s %11s %10s %8s' % header)
    for row in result['rows']:
        floor = row['floor_seconds']
        print('  %-18s %8.1f %8s %7s %10d %11.1f %10d %8d' % (
            row['run'].split('-', 1)[1], row['seconds'], '-' if floor is None else '%.1f' % floor,
            '-' if floor is None else '%.2f' % (row['seconds'] / floor), row['tasks_max'], row['tasks_mean'],
            row.get('calls_max', 0), row['changed']))
    for row in result['rows']:
        if row['run'].endswith('site-rerun'):
            print('  idempotent rerun: changed=%d (%s)' % (row['changed'], 'idempotent' if row['changed'] == 0
                                                           else 'NOT idempotent'))
    if any(row.get('cpu') for row in result['rows']):
        print('  CPU seconds (this machine\'s cores serve the control node and the lab\'s hosts alike):')
        print('  %-18s %12s %12s %14s %14s' % ('run', 'control node', 'lab hosts', 'floor control', 'floor hosts'))

        def shown(value):
            return '-' if value is None else '%.1f' % value
        for row in result['rows']:
            cpu, floor_cpu = row.get('cpu') or {}, row.get('floor_cpu') or {}
            print('  %-18s %12s %12s %14s %14s' % (
                row['run'].split('-', 1)[1], shown(cpu.get('control_node')), shown(cpu.get('hosts')),
                shown(floor_cpu.get('control_node')), shown(floor_cpu.get('hosts'))))
    for row in result['rows']:
        if row['run'].endswith('site-rerun'):
            print('  where the idempotent rerun spends its time (task start to the next task\'s start):')
            print('\n'.join(top_tasks(row['run'])))
    load = result['load']
    if load:
        print('  rotate under load: %d client ops, %d failed, longest pause %.3f s'
              % (load['ops'], load['failed'], load['longest_pause_s']))
    sys.stdout.flush()


def top_tasks(label, count=12):
    """The tasks the run spent most wall time on (task_count's task_seconds), as printable lines."""
    path = WORK / ('%s.json' % label)
    seconds = json.loads(path.read_text()).get('task_seconds', {}) if path.exists() else {}
    total = sum(seconds.values()) or 1.0
    return ['    %6.1f s %4.0f%%  %s' % (value, 100 * value / total, name)
            for name, value in sorted(seconds.items(), key=lambda item: -item[1])[:count]]


def fit(points):
    """Least squares of seconds = fixed + per_host * N over (N, seconds) points."""
    count = float(len(points))
    mean_n = sum(n for n, dummy in points) / count
    mean_s = sum(s for dummy, s in points) / count
    spread = sum((n - mean_n) ** 2 for n, dummy in points)
    per_host = sum((n - mean_n) * (s - mean_s) for n, s in points) / spread
    return mean_s - per_host * mean_n, per_host


def project(results, sizes=(500, 5000)):
    """Each run's and floor's time as fixed + per host * N from the sizes measured, and what that gives for larger
    fleets with this control node, forks and batch size (docs/benchmarks.md discusses what changes past it)."""
    kinds = {}
    for result in results:
        for row in result['rows']:
            kind = row['run'].split('-', 1)[1]
            kinds.setdefault(kind, []).append((result['size'], row['seconds'], row['floor_seconds']))
    print('Growth (least squares over N = %s): seconds = fixed + per host x N' % ', '.join(
        str(result['size']) for result in results))
    print('  %-18s %9s %9s %11s %11s %s' % ('run', 'fixed s', 's/host', 'floor fixed', 'floor s/host',
                                            '  '.join('N=%d run (floor)' % n for n in sizes)))
    for kind, points in kinds.items():
        if len(set(n for n, dummy, dummy2 in points)) < 2:
            continue
        fixed, per_host = fit([(n, s) for n, s, dummy in points])
        floors = [(n, f) for n, dummy, f in points if f is not None]
        floor_fixed, floor_per_host = fit(floors) if len(floors) == len(points) else (None, None)

        def floor_at(n):
            return '-' if floor_fixed is None else '%.0f s' % (floor_fixed + floor_per_host * n)
        projected = '  '.join('%.0f s (%s)' % (fixed + per_host * n, floor_at(n)) for n in sizes)
        print('  %-18s %9.1f %9.2f %11s %11s %s' % (
            kind, fixed, per_host, '-' if floor_fixed is None else '%.1f' % floor_fixed,
            '-' if floor_per_host is None else '%.2f' % floor_per_host, projected))
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('sizes', type=int, nargs='*', default=[5, 25, 50], help='fleet sizes N (4 to 244, the bounds of lab/scale.sh)')
    parser.add_argument('--forks', type=int, default=20, help='ansible-playbook -f, the same for runs and floors')
    parser.add_argument('--batch-size', default='20%', help='fleetpki_worker_batch_size (a number or a percentage)')
    parser.add_argument('--keep', action='store_true', help='leave the last scale lab up')
    parser.add_argument('--first-run-only', dest='runs', action='store_const', const=(), default=RUNS,
                        help='only site.yml\'s first run (and the lab\'s memory after it)')
    parser.add_argument('--no-floor', dest='floor', action='store_false', help='measure the runs only')
    parser.add_argument('--replace-lab', action='store_true',
                        help='take down a scale lab that is already up (its PKI in .build/lab-scale goes with it)')
    parser.add_argument('--project', action='store_true',
                        help='only print the growth from the last run\'s results (.build/bench-scale/results.json)')
    args = parser.parse_args()
    if args.project:
        results = json.loads((WORK / 'results.json').read_text())
        for result in results:
            report(result)
        project(results)
        return
    running = lab_containers()
    if running and not args.replace_lab:
        sys.exit('A scale lab is up (%d containers: %s...). The benchmark starts each size on a new one, which takes '
                 'this one down with its PKI: run make lab-scale-down first, or pass --replace-lab.'
                 % (len(running), ', '.join(running[:3])))
    WORK.mkdir(parents=True, exist_ok=True)
    print('load average %s; %d cores' % (' '.join('%.2f' % v for v in os.getloadavg()), os.cpu_count()), flush=True)
    results = []
    for size in args.sizes:
        results.append(bench_size(size, args))
        report(results[-1])
        (WORK / 'results.json').write_text(json.dumps(results, indent=1) + '\n')
    if len(results) > 1:
        project(results)


if __name__ == '__main__':
    main()
