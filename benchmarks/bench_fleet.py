"""Fleet rollout figures: how the PKI play grows with the inventory, and site.yml on a lab fleet.

Prints figures; asserts nothing about time.

  python benchmarks/bench_fleet.py                 both parts (the lab part, bench_scale.py at 5 hosts, needs Docker)
  python benchmarks/bench_fleet.py --pki-only      only the PKI play on inventories of 100 and 1000 hosts
  python benchmarks/bench_fleet.py --sizes 100 1000 5000

The PKI play (playbooks/pki.yml) runs on the control node only, so its inventories have no real hosts behind
them. It runs on tmpfs when /dev/shm exists (the disk here throttles bursts of small writes).
"""
import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = ROOT / '.venv' / 'bin'


def env():
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1',
                PATH='%s:%s' % (BIN, os.environ.get('PATH', '')))


def playbook(inventory, path, *extra):
    started = time.monotonic()
    proc = subprocess.run([str(BIN / 'ansible-playbook'), '-i', str(inventory), str(path)] + list(extra),
                          cwd=str(ROOT), env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit('%s failed:\n%s' % (path, proc.stdout[-3000:]))
    changed = sum(int(n) for n in re.findall(r'changed=(\d+)', proc.stdout[proc.stdout.rfind('PLAY RECAP'):]))
    return elapsed, changed


def fake_inventory(directory, size):
    """1 Redis, 1 API, 1 pki_client and size-3 workers; unreachable names, PKI under ``directory``."""
    workers = ['worker%05d' % i for i in range(size - 3)]
    lines = ['fleet:', '  vars:', '    fleetpki_pki_dir: %s/pki' % directory,
             '    fleetpki_redis_password: bench-password', '  children:',
             '    redis_servers:', '      hosts:', '        redis1:',
             '    api_servers:', '      hosts:', '        api1:',
             '    pki_clients:', '      hosts:', '        pxe1:',
             '    workers:', '      hosts:'] + ['        %s:' % name for name in workers]
    path = pathlib.Path(directory) / 'hosts.yml'
    path.write_text('\n'.join(lines) + '\n')
    return path


def pki_scaling(sizes):
    base = '/dev/shm' if os.path.isdir('/dev/shm') else None
    print('PKI play (playbooks/pki.yml) on the control node, %s' % ('tmpfs' if base else 'disk'))
    print('%8s %12s %12s %14s' % ('hosts', 'first run s', 'rerun s', 'first ms/host'))
    rows = []
    for size in sizes:
        work = tempfile.mkdtemp(prefix='fleetpki-bench-', dir=base)
        try:
            inventory = fake_inventory(work, size)
            first, changed_first = playbook(inventory, ROOT / 'playbooks' / 'pki.yml')
            again, changed_again = playbook(inventory, ROOT / 'playbooks' / 'pki.yml')
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if changed_first == 0 or changed_again != 0:
            sys.exit('unexpected changes: %d on the first run, %d on the rerun' % (changed_first, changed_again))
        rows.append((size, first, again))
        print('%8d %12.2f %12.2f %14.2f' % (size, first, again, 1000.0 * first / size))
    return rows


def lab_rollout():
    """site.yml on a lab fleet of 5 hosts: benchmarks/bench_scale.py at N=5 (its floors and rotate included)."""
    if subprocess.run(['docker', 'info'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                      check=False).returncode != 0:
        print('site.yml on the lab: skipped (no Docker engine; run lab/ensure-docker.sh)')
        return
    subprocess.run([str(BIN / 'python'), str(ROOT / 'benchmarks' / 'bench_scale.py'), '5'], check=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--sizes', type=int, nargs='+', default=[100, 1000])
    parser.add_argument('--pki-only', action='store_true')
    args = parser.parse_args()
    pki_scaling(args.sizes)
    if not args.pki_only:
        lab_rollout()


if __name__ == '__main__':
    main()
