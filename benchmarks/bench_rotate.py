"""Rotation figures on the lab fleet: rotate.yml wall time, and the longest pause a client sees during it.

Prints figures; asserts nothing about time. Needs the lab on mTLS (make demo); leaves it up. The same rotation on
the scale lab at N hosts, against its floor: benchmarks/bench_scale.py.

  python benchmarks/bench_rotate.py              rotate.yml -e force=true (every certificate), then a rerun
  python benchmarks/bench_rotate.py --runs 3

A load client (tests/load/fleet_load.py) runs on pxe1 during each run: SET/GET/LPUSH over mTLS at ~50 ops/s, a
new TLS connection every 20 operations, no retries. Its longest gap between two successful operations is the
pause a client sees; failed operations are counted too.
"""
import argparse
import sys

from bench_fleet import ROOT, playbook
from bench_scale import start_load, stop_load

INVENTORY = ROOT / 'inventories' / 'lab'
PKI = ROOT / 'pki' / 'lab'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=1)
    args = parser.parse_args()
    if not (PKI / 'redis-password').exists():
        sys.exit('the lab is not rolled out: run make demo first')
    print('rotate.yml on the lab fleet (1 Redis, 2 workers, 1 API, 1 pki client), load client on pxe1')
    print('%-26s %8s %9s %11s %8s %9s' % ('run', 'wall s', 'changed', 'client ops', 'failed', 'pause s'))
    for run in range(args.runs):
        for label, extra in (('force=true (renew all)', ['-e', 'force=true']), ('nothing to renew', [])):
            start_load('pxe1', PKI)
            elapsed, changed = playbook(INVENTORY, ROOT / 'playbooks' / 'rotate.yml', *extra)
            stats = stop_load('pxe1')
            print('%-26s %8.1f %9d %11d %8d %9.3f' % ('%d: %s' % (run + 1, label), elapsed, changed, stats['ops'],
                                                      stats['failed'], stats['longest_pause_s']))


if __name__ == '__main__':
    main()
