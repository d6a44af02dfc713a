"""Issuance speed of pki_leaf against Ansible's own overhead and a bare cryptography loop.

Prints figures; asserts nothing about time (it does check that the rerun changed nothing).

  (a) one pki_leaf task issuing N EC P-256 certs through ansible-playbook
  (b) the same playbook again (idempotent: every cert re-checked, none issued)
  (c) the fixed cost: the same playbook shape passing the same N-item list to ansible.builtin.ping as data
  (d) a bare Python loop with cryptography writing the same key, cert and bundle files

Goals: a <= 1.5 x (c + d) and b <= 1.5 x c.

  python benchmarks/bench_issue.py [--count 1000] [--repeat 3] [--json]
"""
import argparse
import datetime
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = pathlib.Path(__file__).resolve().parents[1]
PLAYBOOK_BIN = pathlib.Path(sys.executable).parent / 'ansible-playbook'
COMMUNITY_CRYPTO_SECONDS_PER_HOST = 0.6  # measured here, see ../shared/REFERENCE.md

PLAYBOOK = """---
- name: Benchmark
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    certs: "{{ lookup('ansible.builtin.file', '%(certs)s') | from_json }}"
  tasks:
    - name: Work
%(task)s
"""
LEAF_TASK = """      fleetpki.mtls.pki_leaf:
        ca_dir: %(ca_dir)s
        dir: %(out_dir)s
        certs: "{{ certs }}"
"""
PING_TASK = """      ansible.builtin.ping:
        data: "{{ certs | to_json }}"
"""
CA_TASK = """      fleetpki.mtls.pki_ca:
        dir: %(ca_dir)s
"""


def env():
    return dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1')


def write_playbook(work, name, task, certs_file, **values):
    path = work / name
    path.write_text(PLAYBOOK % {'certs': certs_file, 'task': task % values})
    return path


def run_playbook(path):
    started = time.monotonic()
    proc = subprocess.run([str(PLAYBOOK_BIN), str(path)], cwd=str(ROOT), env=env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.exit('%s failed:\n%s' % (path.name, proc.stdout[-3000:]))
    changed = 'changed=0' not in proc.stdout[proc.stdout.rfind('PLAY RECAP'):]
    return elapsed, changed


def load_ca(ca_dir):
    key = serialization.load_pem_private_key((ca_dir / 'ca-key.pem').read_bytes(), None)
    cert_pem = (ca_dir / 'ca-cert.pem').read_bytes()
    return key, x509.load_pem_x509_certificate(cert_pem), cert_pem


def bare_loop(ca_dir, out_dir, count):
    """What the module does per cert, with no Ansible, no checks, no atomic renames."""
    ca_key, ca_cert, ca_pem = load_ca(ca_dir)
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_cert.public_key()).digest
    now = datetime.datetime.now(datetime.timezone.utc)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    for index in range(count):
        name = 'host%04d' % index
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, '%s.bench.internal' % name)]))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName('%s.bench.internal' % name)]),
                               critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier(ca_ski, None, None), critical=False)
                .sign(ca_key, hashes.SHA256()))
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_path = out_dir / ('%s-key.pem' % name)
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        key_path.chmod(0o600)
        (out_dir / ('%s-cert.pem' % name)).write_bytes(cert_pem)
        (out_dir / ('%s-bundle.pem' % name)).write_bytes(cert_pem + ca_pem)
    return time.monotonic() - started


def summary(values):
    return {'median': statistics.median(values), 'min': min(values), 'max': max(values)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--count', type=int, default=1000)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()

    base = '/dev/shm' if os.path.isdir('/dev/shm') else None
    work = pathlib.Path(tempfile.mkdtemp(prefix='fleetpki-bench-issue-', dir=base))
    try:
        certs_file = work / 'certs.json'
        certs_file.write_text(json.dumps([
            {'name': 'host%04d' % i, 'dns': ['host%04d.bench.internal' % i], 'usage': 'both'}
            for i in range(args.count)]))
        ca_dir = work / 'ca'
        run_playbook(write_playbook(work, 'ca.yml', CA_TASK, certs_file, ca_dir=ca_dir))
        ping = write_playbook(work, 'ping.yml', PING_TASK, certs_file)
        figures = {'a': [], 'b': [], 'c': [], 'd': []}
        for round_number in range(args.repeat):
            out_dir = work / ('issued-%d' % round_number)
            leaf = write_playbook(work, 'leaf-%d.yml' % round_number, LEAF_TASK, certs_file, ca_dir=ca_dir,
                                  out_dir=out_dir)
            first, changed = run_playbook(leaf)
            again, changed_again = run_playbook(leaf)
            if not changed or changed_again:
                sys.exit('expected a changed first run and an unchanged rerun (got %s, %s)'
                         % (changed, changed_again))
            figures['a'].append(first)
            figures['b'].append(again)
            figures['c'].append(run_playbook(ping)[0])
            figures['d'].append(bare_loop(ca_dir, work / ('bare-%d' % round_number), args.count))
            shutil.rmtree(out_dir)
            shutil.rmtree(work / ('bare-%d' % round_number))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    stats = dict((key, summary(values)) for key, values in figures.items())
    a, b, c, d = (stats[key]['median'] for key in 'abcd')
    ratio_a, ratio_b = a / (c + d), b / c
    labels = {
        'a': 'pki_leaf issuing %d EC P-256 certs (ansible-playbook)' % args.count,
        'b': 'the same run again (idempotent re-check)',
        'c': 'fixed cost: same list to ansible.builtin.ping',
        'd': 'bare cryptography loop writing the same files',
    }
    print('fleetpki issuance benchmark: %d certs, %d rounds, %s, cryptography in %s'
          % (args.count, args.repeat, 'tmpfs (/dev/shm)' if base else 'disk', sys.executable))
    print('%-3s %-55s %8s %8s %8s' % ('', 'measure', 'median', 'min', 'max'))
    for key in 'abcd':
        line = (key, labels[key], stats[key]['median'], stats[key]['min'], stats[key]['max'])
        print('%-3s %-55s %7.2fs %7.2fs %7.2fs' % line)
    print('a / (c + d) = %.2f   goal <= 1.5   %s' % (ratio_a, 'MET' if ratio_a <= 1.5 else 'MISSED'))
    print('b / c       = %.2f   goal <= 1.5   %s' % (ratio_b, 'MET' if ratio_b <= 1.5 else 'MISSED'))
    crypto_way = COMMUNITY_CRYPTO_SECONDS_PER_HOST * args.count
    print('community.crypto (privatekey + csr + ownca per host, ~%.1f s/host): ~%.0f s per run, first or rerun; '
          'pki_leaf is %.0fx faster issuing and %.0fx faster re-checking'
          % (COMMUNITY_CRYPTO_SECONDS_PER_HOST, crypto_way, crypto_way / a, crypto_way / b))
    if args.json:
        print(json.dumps({'count': args.count, 'repeat': args.repeat, 'seconds': stats,
                          'ratio_a_over_c_plus_d': ratio_a, 'ratio_b_over_c': ratio_b}, indent=1))


if __name__ == '__main__':
    main()
