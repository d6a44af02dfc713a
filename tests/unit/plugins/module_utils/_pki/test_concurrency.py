# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs at once on one CA directory: every run plans under the lock, so none loses another's work.

Real processes, real files in tmp_path. Each child plans first (as the module does before it applies), waits at a
barrier until every child has planned, then applies: the widest window between reading the state and writing it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import json
import multiprocessing
import os
import subprocess
import traceback

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto, files
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.ca import CaManager
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.crl import CrlManager

CONTEXT = multiprocessing.get_context('fork')


def _child(queue, barrier, make_manager):
    try:
        manager = make_manager()
        manager.plan()
        barrier.wait(30)
        result = manager.apply()
        queue.put(('ok', result))
    except BaseException:  # reported to the parent, which fails the test
        queue.put(('error', traceback.format_exc()))
    finally:
        queue.close()
        queue.join_thread()  # flush the result before the hard exit
        os._exit(0)


def run_at_once(makers):
    """Run ``make_manager().plan(); <barrier>; .apply()`` in one process per maker; the apply() results."""
    queue = CONTEXT.Queue()
    barrier = CONTEXT.Barrier(len(makers))
    workers = [CONTEXT.Process(target=_child, args=(queue, barrier, maker)) for maker in makers]
    for worker in workers:
        worker.start()
    outcomes = [queue.get(timeout=60) for dummy in workers]
    for worker in workers:
        worker.join(30)
    errors = [detail for status, detail in outcomes if status != 'ok']
    assert errors == [], '\n'.join(errors)
    return [detail for dummy, detail in outcomes]


def openssl_crl_check(ca_dir, cert_path):
    return subprocess.run(['openssl', 'verify', '-crl_check', '-CRLfile', os.path.join(ca_dir, 'crl.pem'),
                           '-CAfile', os.path.join(ca_dir, 'ca-cert.pem'), cert_path],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)


def test_concurrent_revocations_are_all_recorded_and_in_the_crl(pki, ca_dir, out_dir):
    names = ['x%d' % index for index in range(6)]
    dummy, issued = pki.issue(ca_dir, [{'name': name, 'dns': [name]} for name in names], default_dir=out_dir)
    first = CrlManager(ca_dir)
    first.plan()
    first.apply()

    makers = [lambda name=name: CrlManager(ca_dir, revoke_names=[name]) for name in names]
    # The scheduled re-sign of the CRL racing the revocations must not drop them either.
    makers.append(lambda: CrlManager(ca_dir, force=True))
    results = run_at_once(makers)

    wanted = sorted(issued[name]['serial'] for name in names)
    with open(os.path.join(ca_dir, 'revoked.json')) as handle:
        record = json.load(handle)
    assert sorted(entry['serial'] for entry in record['revoked']) == wanted, 'a concurrent revocation was lost'
    crl = crypto.x509.load_pem_x509_crl(pki.read(os.path.join(ca_dir, 'crl.pem')))
    assert sorted('%X' % item.serial_number for item in crl) == wanted
    # Each run signed its own CRL with its own number: 1 (the first) + one per run.
    assert record['crl_number'] == 1 + len(makers)
    assert sorted(result['crl_number'] for result in results) == list(range(2, 2 + len(makers)))
    revoked_now = sorted(serial for result in results for serial in result['revoked_now'])
    assert revoked_now == wanted, 'every serial is reported as revoked by exactly one run'
    for name in names:
        check = openssl_crl_check(ca_dir, os.path.join(out_dir, '%s-cert.pem' % name))
        assert 'certificate revoked' in check.stdout, (name, check.stdout)
    # Nothing left to do afterwards.
    again = CrlManager(ca_dir, revoke_names=names)
    again.plan()
    assert again.changed is False


def test_concurrent_revocations_of_one_name_revoke_it_once(pki, ca_dir, out_dir):
    dummy, issued = pki.issue(ca_dir, [{'name': 'x1', 'dns': ['x1']}], default_dir=out_dir)
    results = run_at_once([lambda: CrlManager(ca_dir, revoke_names=['x1']) for dummy in range(4)])
    with open(os.path.join(ca_dir, 'revoked.json')) as handle:
        record = json.load(handle)
    assert [entry['serial'] for entry in record['revoked']] == [issued['x1']['serial']]
    assert sum(len(result['revoked_now']) for result in results) == 1


def test_concurrent_ca_creates_report_create_once(tmp_path):
    directory = str(tmp_path / 'ca')
    results = run_at_once([lambda: CaManager(directory) for dummy in range(6)])
    actions = sorted(result['action'] for result in results)
    assert actions == ['create'] + ['none'] * 5, actions
    assert [result['changed'] for result in results].count(True) == 1
    on_disk = crypto.fingerprint_sha256(crypto.load_cert(files.read_bytes(os.path.join(directory, 'ca-cert.pem')),
                                                         'ca-cert.pem'))
    assert set(result['fingerprint_sha256'] for result in results) == set([on_disk])
    assert not os.path.exists(os.path.join(directory, 'retired')), 'a CA made by a concurrent run was replaced'


def test_concurrent_ca_renewals_renew_once(pki, ca_dir):
    # 100 days on, the CA has 3550 days left (< 3600: renew); a renewed one has 3650 (nothing to do).
    now = crypto.utcnow() + datetime.timedelta(days=100)
    results = run_at_once([lambda: CaManager(ca_dir, renew_days=3600, now=now) for dummy in range(4)])
    assert sorted(result['action'] for result in results) == ['none', 'none', 'none', 'renew']
    assert len(os.listdir(os.path.join(ca_dir, 'retired'))) == 1


def test_pki_leaf_sees_a_revocation_made_while_it_waited_for_the_lock(pki, ca_dir, out_dir, monkeypatch):
    """A revocation that lands between pki_leaf's first read and its lock is seen: the cert is re-issued."""
    dummy, first = pki.issue(ca_dir, [{'name': 'web1', 'dns': ['web1']}], default_dir=out_dir)
    real_enter = files.DirectoryLock.__enter__
    state = {'done': False}

    def revoke_then_lock(lock):
        if not state['done']:
            state['done'] = True  # the revoking run below takes the lock itself
            manager = CrlManager(ca_dir, revoke_names=['web1'])
            manager.plan()
            manager.apply()
        return real_enter(lock)

    monkeypatch.setattr(files.DirectoryLock, '__enter__', revoke_then_lock)
    dummy, second = pki.issue(ca_dir, [{'name': 'web1', 'dns': ['web1']}], default_dir=out_dir)
    assert state['done'] is True
    assert second['web1']['reason'] == 'revoked' and second['web1']['serial'] != first['web1']['serial']
