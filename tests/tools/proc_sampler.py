"""Sample every process's command line and environment on a host, for the secret tests of the molecule scenarios.

Usage: proc_sampler.py OUT [INTERVAL_S]
Every INTERVAL_S (default 0.02) it reads /proc/<pid>/cmdline and /proc/<pid>/environ of every process and appends
each distinct one to OUT as a line (NULs shown as spaces), until SIGTERM. The test then searches OUT for the
lab's secrets. Runs as root, so it reads every process's environment. The test shows first that it catches a
short-lived process with a secret in its environment (tests can fail).
"""
import os
import signal
import sys
import time

STOP = []


def read(path):
    try:
        with open(path, 'rb') as handle:
            return handle.read().replace(b'\0', b' ').decode('utf-8', 'replace').strip()
    except OSError:
        return ''


def main(out_path, interval=0.02):
    signal.signal(signal.SIGTERM, lambda *_: STOP.append(True))
    own, seen = str(os.getpid()), set()
    with open(out_path, 'a') as out:
        while not STOP:
            for pid in os.listdir('/proc'):
                if not pid.isdigit() or pid == own:
                    continue
                for kind in ('cmdline', 'environ'):
                    text = read('/proc/%s/%s' % (pid, kind))
                    if text and text not in seen:
                        seen.add(text)
                        out.write('%s %s\n' % (kind, text))
            out.flush()
            time.sleep(interval)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.02))
