"""Rotation figures on the lab fleet: rotate.yml wall time, and the longest pause a client sees during it.

Prints figures; asserts nothing about time. Needs the lab on mTLS (make demo); leaves it up.

  python benchmarks/bench_rotate.py              rotate.yml -e force=true (every certificate), then a rerun
  python benchmarks/bench_rotate.py --runs 3

A load client (tests/load/fleet_load.py) runs on pxe1 during each run: SET/GET/LPUSH over mTLS at ~50 ops/s, a
new TLS connection every 20 operations, no retries. Its longest gap between two successful operations is the
pause a client sees; failed operations are counted too.
"""
import argparse
import json
import subprocess
import sys
import time

from bench_fleet import ROOT, playbook

INVENTORY = ROOT / 'inventories' / 'lab'
STATS = '/var/tmp/fleet-load-bench.json'
LOAD_ENV = '/etc/fleetpki/load-bench.env'


def docker(*args, **kwargs):
    return subprocess.run(['docker'] + list(args), check=True, stdout=subprocess.PIPE, universal_newlines=True,
                          **kwargs).stdout


def lab_password():
    """pxe1's own Redis ACL password (pxe1 is in the lab's redis_clients group), in the lab's PKI dir."""
    return (ROOT / 'pki' / 'lab' / 'redis-acl' / 'pxe1').read_text().strip()


def start_load():
    docker('cp', str(ROOT / 'tests' / 'load' / 'fleet_load.py'), 'pxe1:/opt/fleet-load.py')
    env = ('REDIS_HOST=redis1\nREDIS_PORT=6379\nREDIS_USERNAME=pxe1\nREDIS_PASSWORD=%s\n'
           'CLIENT_PEM=/etc/fleetpki/client/client.pem\nCA_BUNDLE=/etc/fleetpki/ca-bundle.pem\n' % lab_password())
    docker('exec', '-i', 'pxe1', 'sh', '-c', 'umask 077 && cat > %s' % LOAD_ENV, input=env)
    docker('exec', 'pxe1', 'sh', '-c', 'systemctl stop fleet-load-bench 2>/dev/null; rm -f %s' % STATS)
    docker('exec', 'pxe1', 'systemd-run', '--unit', 'fleet-load-bench', '--collect', '/usr/bin/python3',
           '/opt/fleet-load.py', '--env', LOAD_ENV, '--stats', STATS, '--job-prefix', 'bench-%d' % time.time())
    time.sleep(3)


def stop_load():
    docker('exec', 'pxe1', 'systemctl', 'stop', 'fleet-load-bench')
    return json.loads(docker('exec', 'pxe1', 'cat', STATS))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=1)
    args = parser.parse_args()
    if not (INVENTORY / 'pki' / 'redis-password').exists():
        sys.exit('the lab is not rolled out: run make demo first')
    print('rotate.yml on the lab fleet (1 Redis, 2 workers, 1 API, 1 pki client), load client on pxe1')
    print('%-26s %8s %9s %11s %8s %9s' % ('run', 'wall s', 'changed', 'client ops', 'failed', 'pause s'))
    for run in range(args.runs):
        for label, extra in (('force=true (renew all)', ['-e', 'force=true']), ('nothing to renew', [])):
            start_load()
            elapsed, changed = playbook(INVENTORY, ROOT / 'playbooks' / 'rotate.yml', *extra)
            stats = stop_load()
            print('%-26s %8.1f %9d %11d %8d %9.3f' % ('%d: %s' % (run + 1, label), elapsed, changed, stats['ops'],
                                                      stats['failed'], stats['longest_pause_s']))


if __name__ == '__main__':
    main()
