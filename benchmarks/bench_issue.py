"""Issuance speed of pki_leaf against Ansible's own overhead and a bare cryptography loop.

Prints figures; asserts nothing about time (it does check that the rerun changed nothing).

  (a) one pki_leaf task issuing N EC P-256 certs through ansible-playbook
  (b) the same playbook again (idempotent: every cert re-checked, none issued)
  (c) the fixed cost: the same playbook shape passing the same N-item list to ansible.builtin.ping as data
  (d) a bare Python loop with cryptography writing the same key, cert and bundle files
  (e) for reference, not a goal: a stand-in module with pki_leaf's argument spec, given (b)'s options and returning
      (b)'s result (report: changed, nothing changed) and doing no work, i.e. what Ansible costs for this task's
      arguments and result before pki_leaf does anything

  with --csr, also (issue 12: keys born on their hosts):
  (f) one pki_leaf task issuing the same N certs for N certificate requests (certs[].csr, made before timing)
  (g) the same run again
Goals (issue 11): a <= 1.2 x (c + d) and b <= 1.2 x c. Issue 12: f and g as fast as a and b (f / a, g / b).

Ratios are given from the medians and from the best of the rounds, on wall time (the goal) and on CPU time
(user + sys of ansible-playbook and its module: steadier than wall time on a shared machine); the load average
before and after is printed with them.

  python benchmarks/bench_issue.py [--count 1000] [--repeat 3] [--csr] [--json]
"""
import argparse
import datetime
import json
import os
import pathlib
import resource
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
GOAL = 1.2  # issue 11: a <= GOAL x (c + d), b <= GOAL x c

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
# The options roles/pki/tasks/issue.yml passes (there templated from the role's variables; no CA passphrase here).
LEAF_TASK = """      fleetpki.mtls.pki_leaf:
        ca_dir: %(ca_dir)s
        ca_planned: false
        renew_days: 30
        force: false
        issued_dir: %(out_dir)s
        report: changed
        certs: "{{ certs }}"
"""
PING_TASK = """      ansible.builtin.ping:
        data: "{{ certs | to_json }}"
"""
CA_TASK = """      fleetpki.mtls.pki_ca:
        dir: %(ca_dir)s
"""
SHAPE_TASK = LEAF_TASK.replace('fleetpki.mtls.pki_leaf', 'bench_leaf_shape')
# (e): pki_leaf's argument spec (written into the stand-in as a literal: importing pki_leaf there would import
# cryptography, which is pki_leaf's cost, not Ansible's), the same options as (b), and the result (b) returns: with
# report changed, no per-cert entry when nothing changed (one per cert with report all, details off).
SHAPE_MODULE = """from ansible.module_utils.basic import AnsibleModule


def run():
    module = AnsibleModule(argument_spec=%(spec)r, supports_check_mode=True)
    certs = [dict(name=cert['name'], changed=False, action='none', reason='up to date',
                  serial='7A3F0C2D9E8B1A4C5D6E7F8091A2B3C4D5E6F708', not_after='2027-11-30T04:00:00Z',
                  days_remaining=364) for cert in module.params['certs']]
    unchanged = len(certs)
    if module.params['report'] == 'changed':
        certs = []
    module.exit_json(changed=False, certs=certs, issued=0, updated=0, unchanged=unchanged,
                     metadata_path='/nowhere/metadata.json', ca_not_after='2036-01-01T00:00:00Z')


if __name__ == '__main__':
    run()
"""


def shape_module():
    """The stand-in's source, with pki_leaf's argument spec as it is in this checkout."""
    sys.path.insert(0, str(ROOT / 'collections'))
    from ansible_collections.fleetpki.mtls.plugins.modules.pki_leaf import argument_spec
    return SHAPE_MODULE % {'spec': argument_spec()}


def env(library=None):
    values = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    if library:
        values['ANSIBLE_LIBRARY'] = str(library)
    return values


def write_playbook(work, name, task, certs_file, **values):
    path = work / name
    path.write_text(PLAYBOOK % {'certs': certs_file, 'task': task % values})
    return path


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_playbook(path, library=None):
    """(wall seconds, CPU seconds of ansible-playbook and everything it ran, whether anything changed)."""
    cpu_before = children_cpu()
    started = time.monotonic()
    proc = subprocess.run([str(PLAYBOOK_BIN), str(path)], cwd=str(ROOT), env=env(library), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    elapsed = time.monotonic() - started
    cpu = children_cpu() - cpu_before
    if proc.returncode != 0:
        sys.exit('%s failed:\n%s' % (path.name, proc.stdout[-3000:]))
    changed = 'changed=0' not in proc.stdout[proc.stdout.rfind('PLAY RECAP'):]
    return elapsed, cpu, changed


def host_request(name):
    """A host's certificate request (its own key), as fleetpki.mtls.host_key makes it."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                                                                 name)]))
    builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


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


def bare_loop_timed(ca_dir, out_dir, count):
    """(wall, CPU) seconds of bare_loop (run in this process)."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    elapsed = bare_loop(ca_dir, out_dir, count)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return elapsed, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def summary(values):
    return {'median': statistics.median(values), 'min': min(values), 'max': max(values)}


def ratios(stats, pick):
    a, b, c, d, e = (stats[key][pick] for key in 'abcde')
    return a / (c + d), b / c, e / c


def verdict(ratio):
    return 'MET' if ratio <= GOAL else 'MISSED'


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--count', type=int, default=1000)
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--json', action='store_true')
    parser.add_argument('--csr', action='store_true', help='also issue for certificate requests (f, g)')
    args = parser.parse_args()

    base = '/dev/shm' if os.path.isdir('/dev/shm') else None
    work = pathlib.Path(tempfile.mkdtemp(prefix='fleetpki-bench-issue-', dir=base))
    load_before = os.getloadavg()
    keys = 'abcdefg' if args.csr else 'abcde'
    wall = dict((key, []) for key in keys)
    cpu = dict((key, []) for key in keys)

    def add(key, figures):
        wall[key].append(figures[0])
        cpu[key].append(figures[1])

    try:
        certs_file = work / 'certs.json'
        certs_file.write_text(json.dumps([
            {'name': 'host%04d' % i, 'dns': ['host%04d.bench.internal' % i], 'usage': 'both'}
            for i in range(args.count)]))
        csr_file = work / 'certs-csr.json'
        if args.csr:
            csr_file.write_text(json.dumps([
                {'name': 'host%04d' % i, 'dns': ['host%04d.bench.internal' % i], 'usage': 'both',
                 'csr': host_request('host%04d.bench.internal' % i)} for i in range(args.count)]))
        library = work / 'library'
        library.mkdir()
        (library / 'bench_leaf_shape.py').write_text(shape_module())
        ca_dir = work / 'ca'
        run_playbook(write_playbook(work, 'ca.yml', CA_TASK, certs_file, ca_dir=ca_dir))
        ping = write_playbook(work, 'ping.yml', PING_TASK, certs_file)
        shape = write_playbook(work, 'shape.yml', SHAPE_TASK, certs_file, ca_dir=ca_dir, out_dir=work / 'none')
        for round_number in range(args.repeat):
            out_dir = work / ('issued-%d' % round_number)
            leaf = write_playbook(work, 'leaf-%d.yml' % round_number, LEAF_TASK, certs_file, ca_dir=ca_dir,
                                  out_dir=out_dir)
            first = run_playbook(leaf)
            again = run_playbook(leaf)
            if not first[2] or again[2]:
                sys.exit('expected a changed first run and an unchanged rerun (got %s, %s)' % (first[2], again[2]))
            add('a', first)
            add('b', again)
            add('c', run_playbook(ping))
            add('d', bare_loop_timed(ca_dir, work / ('bare-%d' % round_number), args.count))
            add('e', run_playbook(shape, library))
            if args.csr:
                csr_dir = work / ('csr-%d' % round_number)
                from_csr = write_playbook(work, 'csr-%d.yml' % round_number, LEAF_TASK, csr_file, ca_dir=ca_dir,
                                          out_dir=csr_dir)
                add('f', run_playbook(from_csr))
                add('g', run_playbook(from_csr))
                shutil.rmtree(csr_dir)
            shutil.rmtree(out_dir)
            shutil.rmtree(work / ('bare-%d' % round_number))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()

    stats = dict((key, summary(values)) for key, values in wall.items())
    cpu_stats = dict((key, summary(values)) for key, values in cpu.items())
    labels = {
        'a': 'pki_leaf issuing %d EC P-256 certs (ansible-playbook)' % args.count,
        'b': 'the same run again (idempotent re-check)',
        'c': 'fixed cost: same list to ansible.builtin.ping',
        'd': 'bare cryptography loop writing the same files',
        'e': "pki_leaf's options and (b)'s result, no work (ref.)",
        'f': 'pki_leaf issuing them for hosts\' requests (csr)',
        'g': 'the same csr run again',
    }
    print('fleetpki issuance benchmark: %d certs, %d rounds, %s, cryptography in %s'
          % (args.count, args.repeat, 'tmpfs (/dev/shm)' if base else 'disk', sys.executable))
    print('load average (1, 5, 15 min): before %.2f %.2f %.2f, after %.2f %.2f %.2f; %d CPUs'
          % (load_before + load_after + (os.cpu_count(),)))
    print('%-3s %-55s %8s %8s %8s %8s %8s' % ('', 'measure', 'median', 'min', 'max', 'cpu med', 'cpu min'))
    for key in keys:
        line = (key, labels[key], stats[key]['median'], stats[key]['min'], stats[key]['max'],
                cpu_stats[key]['median'], cpu_stats[key]['min'])
        print('%-3s %-55s %7.2fs %7.2fs %7.2fs %7.2fs %7.2fs' % line)
    table = {
        'wall, medians': ratios(stats, 'median'),
        'wall, best of %d' % args.repeat: ratios(stats, 'min'),
        'cpu, medians': ratios(cpu_stats, 'median'),
        'cpu, best of %d' % args.repeat: ratios(cpu_stats, 'min'),
    }
    print('%-17s %-16s %-16s %s' % ('ratios', 'a / (c + d)', 'b / c', 'e / c (reference)'))
    for name, (ratio_a, ratio_b, ratio_e) in table.items():
        print('%-17s %5.2f %-10s %5.2f %-10s %5.2f' % (name, ratio_a, verdict(ratio_a), ratio_b, verdict(ratio_b),
                                                       ratio_e))
    print('goals (issue 11): a / (c + d) <= %.1f and b / c <= %.1f' % (GOAL, GOAL))
    if args.csr:
        for pick in ('median', 'min'):
            print('keys born on their hosts (%s): f / a %.2f (first run), g / b %.2f (rerun)'
                  % (pick, stats['f'][pick] / stats['a'][pick], stats['g'][pick] / stats['b'][pick]))
    a, b = stats['a']['median'], stats['b']['median']
    crypto_way = COMMUNITY_CRYPTO_SECONDS_PER_HOST * args.count
    print('community.crypto (privatekey + csr + ownca per host, ~%.1f s/host): ~%.0f s per run, first or rerun; '
          'pki_leaf is %.0fx faster issuing and %.0fx faster re-checking'
          % (COMMUNITY_CRYPTO_SECONDS_PER_HOST, crypto_way, crypto_way / a, crypto_way / b))
    if args.json:
        ratio_a, ratio_b, ratio_e = table['wall, medians']
        print(json.dumps({'count': args.count, 'repeat': args.repeat, 'seconds': stats, 'cpu_seconds': cpu_stats,
                          'load_before': load_before, 'load_after': load_after, 'goal': GOAL,
                          'ratio_a_over_c_plus_d': ratio_a, 'ratio_b_over_c': ratio_b, 'ratio_e_over_c': ratio_e,
                          'ratios': table}, indent=1))


if __name__ == '__main__':
    main()
