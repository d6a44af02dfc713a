# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pki_leaf main() run in-process the way Ansible runs it."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import json
import os
import subprocess
import sys

from ansible_collections.fleetpki.mtls.plugins.modules import pki_leaf

CERTS = [
    {'name': 'redis1', 'dns': ['redis1', 'redis1.example.com'], 'ip': ['10.0.0.10'], 'usage': 'both'},
    {'name': 'worker1', 'common_name': 'worker1', 'usage': 'client'},
]


def test_check_mode_then_issue_then_unchanged(ca_dir, out_dir, pki, tmp_path, run_module):
    args = {'ca_dir': ca_dir, 'issued_dir': out_dir, 'certs': CERTS}
    before = pki.snapshot(tmp_path)
    check = run_module(pki_leaf, args, check_mode=True, diff=True)
    assert check.rc == 0
    assert check.result['changed'] is True
    assert (check.result['issued'], check.result['updated'], check.result['unchanged']) == (2, 0, 0)
    assert [c['action'] for c in check.result['certs']] == ['issue', 'issue']
    assert check.result['diff']['after']['redis1']['state'] == 'to be issued'
    assert pki.snapshot(tmp_path) == before

    issued = run_module(pki_leaf, dict(args, details=True), diff=True)
    assert issued.rc == 0 and issued.result['changed'] is True and issued.result['issued'] == 2
    assert issued.result['metadata_path'] == os.path.join(ca_dir, 'metadata.json')
    redis1 = issued.result['certs'][0]
    assert redis1['dns'] == ['redis1', 'redis1.example.com'] and redis1['ip'] == ['10.0.0.10']
    assert redis1['usage'] == 'both' and redis1['key_type'] == 'ec-p256'
    assert issued.result['diff']['after']['redis1']['serial'] == redis1['serial']
    assert issued.result['diff']['before']['redis1'] == {'state': 'absent'}
    assert 'dns' not in check.result['certs'][0], 'without details the per-cert result stays small'
    for name in ('redis1', 'worker1'):
        rc, output = pki.openssl_verify(os.path.join(ca_dir, 'ca-cert.pem'), os.path.join(out_dir, name + '-cert.pem'))
        assert rc == 0, output

    again = run_module(pki_leaf, args)
    assert again.rc == 0 and again.result['changed'] is False
    assert (again.result['issued'], again.result['updated'], again.result['unchanged']) == (0, 0, 2)
    assert [c['reason'] for c in again.result['certs']] == ['up to date', 'up to date']


def test_update_is_counted(ca_dir, out_dir, run_module):
    args = {'ca_dir': ca_dir, 'issued_dir': out_dir, 'certs': CERTS}
    run_module(pki_leaf, args)
    os.unlink(os.path.join(out_dir, 'worker1-bundle.pem'))
    updated = run_module(pki_leaf, args)
    assert updated.result['changed'] is True
    assert (updated.result['issued'], updated.result['updated'], updated.result['unchanged']) == (0, 1, 1)


def test_clamp_warning_reaches_the_output(tmp_path, pki, run_module):
    ca_dir, out_dir = str(tmp_path / 'ca'), str(tmp_path / 'out')
    now = pki.now()
    pki.hand_ca(ca_dir, now - datetime.timedelta(days=300), now + datetime.timedelta(days=10))
    first = run_module(pki_leaf, {'ca_dir': ca_dir, 'issued_dir': out_dir, 'certs': CERTS[:1]})
    assert first.result['changed'] is True
    assert any('validity clamped' in w for w in first.warnings)
    second = run_module(pki_leaf, {'ca_dir': ca_dir, 'issued_dir': out_dir, 'certs': CERTS[:1]})
    assert second.result['changed'] is False
    assert len(second.warnings) == 1 and 'renew or roll over the CA' in second.warnings[0]


def test_failures_name_the_entry_and_change_nothing(ca_dir, out_dir, pki, tmp_path, run_module):
    run_module(pki_leaf, {'ca_dir': ca_dir, 'issued_dir': out_dir, 'certs': CERTS})
    before = pki.snapshot(tmp_path)
    duplicate = run_module(pki_leaf, {'ca_dir': ca_dir, 'issued_dir': out_dir, 'certs': CERTS + [CERTS[0]]})
    assert duplicate.rc == 1 and duplicate.result['failed'] is True
    assert 'certs[2] (name redis1)' in duplicate.result['msg'] and 'certs[0]' in duplicate.result['msg']

    ip_as_dns = run_module(pki_leaf, {'ca_dir': ca_dir, 'issued_dir': out_dir,
                                      'certs': [{'name': 'db1', 'dns': ['db1', '10.0.0.30']}]})
    assert ip_as_dns.rc == 1 and 'certs[0] (name db1)' in ip_as_dns.result['msg']
    assert "'10.0.0.30' is an IP address" in ip_as_dns.result['msg']

    too_short = run_module(pki_leaf, {'ca_dir': ca_dir, 'issued_dir': out_dir, 'renew_days': 30,
                                      'certs': [dict(CERTS[0], valid_days=20)]})
    assert too_short.rc == 1 and 'valid_days (20) must be greater than renew_days (30)' in too_short.result['msg']

    bad_usage = run_module(pki_leaf, {'ca_dir': ca_dir, 'issued_dir': out_dir, 'certs': [dict(CERTS[0], usage='web')]})
    assert bad_usage.rc == 1 and 'usage' in bad_usage.result['msg']

    no_ca = run_module(pki_leaf, {'ca_dir': str(tmp_path / 'nothing'), 'issued_dir': out_dir, 'certs': CERTS})
    assert no_ca.rc == 1 and 'no CA in %s' % (tmp_path / 'nothing') in no_ca.result['msg']
    assert pki.snapshot(tmp_path) == before


def test_encrypted_ca_passphrase_never_in_the_output(tmp_path, pki, run_module):
    ca_dir, out_dir = str(tmp_path / 'ca'), str(tmp_path / 'out')
    pki.make_ca(ca_dir, passphrase=pki.PASSPHRASE)
    ok = run_module(pki_leaf, {'ca_dir': ca_dir, 'issued_dir': out_dir, 'ca_passphrase': pki.PASSPHRASE, 'certs': CERTS},
                    diff=True)
    assert ok.rc == 0 and ok.result['issued'] == 2
    assert pki.PASSPHRASE not in ok.stdout
    before = pki.snapshot(tmp_path)
    wrong = run_module(pki_leaf, {'ca_dir': ca_dir, 'issued_dir': out_dir, 'ca_passphrase': pki.WRONG_PASSPHRASE,
                                  'certs': CERTS, 'force': True})
    assert wrong.rc == 1 and 'ca_passphrase is wrong' in wrong.result['msg']
    assert os.path.join(ca_dir, 'ca-key.pem') in wrong.result['msg']
    assert pki.WRONG_PASSPHRASE not in wrong.stdout and pki.PASSPHRASE not in wrong.stdout
    missing = run_module(pki_leaf, {'ca_dir': ca_dir, 'issued_dir': out_dir, 'certs': CERTS}, check_mode=True)
    assert missing.rc == 1 and 'give its passphrase in ca_passphrase' in missing.result['msg']
    assert pki.snapshot(tmp_path) == before


def test_check_mode_without_a_ca_yet_reports_every_certificate_to_issue(tmp_path, run_module):
    """pki.yml --check on a new fleet: pki_ca only said it would make the CA; every certificate would be issued."""
    ca_dir, out_dir = str(tmp_path / 'ca'), str(tmp_path / 'out')
    check = run_module(pki_leaf, {'ca_dir': ca_dir, 'issued_dir': out_dir, 'certs': CERTS, 'ca_planned': True},
                       check_mode=True, diff=True)
    assert check.rc == 0, check.result
    assert check.result['changed'] is True and check.result['issued'] == len(CERTS)
    assert all(cert['action'] == 'issue' and 'no CA in %s yet' % ca_dir in cert['reason']
               for cert in check.result['certs'])
    assert check.result['ca_not_after'] is None
    assert any('fleetpki.mtls.pki_ca' in warning for warning in check.warnings), check.warnings
    assert not os.path.exists(ca_dir) and not os.path.exists(out_dir)
    real = run_module(pki_leaf, {'ca_dir': ca_dir, 'issued_dir': out_dir, 'certs': CERTS})
    assert real.rc == 1 and 'no CA in %s' % ca_dir in real.result['msg']
    assert not os.path.exists(out_dir)


def test_check_mode_without_a_ca_not_planned_fails_like_a_real_run(tmp_path, run_module):
    """A mistyped ca_dir must not pass --check with only a warning."""
    ca_dir, out_dir = str(tmp_path / 'mistyped'), str(tmp_path / 'out')
    check = run_module(pki_leaf, {'ca_dir': ca_dir, 'issued_dir': out_dir, 'certs': CERTS}, check_mode=True)
    assert check.rc == 1, check.result
    assert 'no CA in %s' % ca_dir in check.result['msg'] and 'ca_dir' in check.result['msg']
    assert not os.path.exists(out_dir)


def test_report_changed_returns_only_the_changed_entries_and_every_count(ca_dir, out_dir, run_module):
    """report=changed (what the pki role passes): a 1000-host rerun returns counts, not 1000 unchanged entries."""
    args = {'ca_dir': ca_dir, 'issued_dir': out_dir, 'certs': CERTS, 'report': 'changed'}
    first = run_module(pki_leaf, args)
    assert first.rc == 0, first.result
    assert [cert['name'] for cert in first.result['certs']] == ['redis1', 'worker1']
    assert (first.result['issued'], first.result['updated'], first.result['unchanged']) == (2, 0, 0)

    again = run_module(pki_leaf, args)
    assert again.result['changed'] is False and again.result['certs'] == []
    assert (again.result['issued'], again.result['updated'], again.result['unchanged']) == (0, 0, 2)

    os.unlink(os.path.join(out_dir, 'worker1-bundle.pem'))
    os.unlink(os.path.join(out_dir, 'redis1-cert.pem'))
    fixed = run_module(pki_leaf, dict(args, certs=CERTS + [{'name': 'api1', 'dns': ['api1']}]), check_mode=True)
    assert [(c['name'], c['action']) for c in fixed.result['certs']] == [
        ('redis1', 'issue'), ('worker1', 'update'), ('api1', 'issue')]
    assert (fixed.result['issued'], fixed.result['updated'], fixed.result['unchanged']) == (2, 1, 0)

    everything = run_module(pki_leaf, dict(args, report='all'), check_mode=True)
    assert [c['name'] for c in everything.result['certs']] == ['redis1', 'worker1']
    default = run_module(pki_leaf, {'ca_dir': ca_dir, 'issued_dir': out_dir, 'certs': CERTS}, check_mode=True)
    assert default.result['certs'] == everything.result['certs'], 'report defaults to all'


# A module run in a fresh interpreter, as Ansible runs it: prints the module's JSON result on stdout and, on stderr,
# the cryptography modules it imported.
_DRIVER = """
import json, runpy, sys
sys.argv = ['pki_leaf', sys.argv[1]]
try:
    runpy.run_module('ansible_collections.fleetpki.mtls.plugins.modules.pki_leaf', run_name='__main__')
except SystemExit:
    pass
sys.stderr.write(json.dumps(sorted(name for name in sys.modules if name.split('.')[0] == 'cryptography')))
"""


def run_in_a_fresh_process(tmp_path, args):
    """(module result, names of the cryptography modules the run imported)."""
    args_path = tmp_path / 'args.json'
    args_path.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': args}))
    proc = subprocess.run([sys.executable, '-c', _DRIVER, str(args_path)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    return json.loads(proc.stdout), json.loads(proc.stderr.strip().splitlines()[-1])


def test_an_unchanged_rerun_does_not_import_cryptography(ca_dir, out_dir, tmp_path, run_module):
    """Every file matches its recorded digest: no certificate or CA is parsed, so cryptography is not even loaded
    (a twentieth of a 1000-cert rerun); anything to check or issue loads it."""
    args = {'ca_dir': ca_dir, 'issued_dir': out_dir, 'certs': CERTS, 'report': 'changed'}
    first, imported = run_in_a_fresh_process(tmp_path, args)
    assert first['changed'] is True and first['issued'] == 2, first
    assert 'cryptography.x509' in imported
    again, imported = run_in_a_fresh_process(tmp_path, args)
    assert again['changed'] is False and again['unchanged'] == 2, again
    assert imported == [], 'an unchanged rerun parses nothing'
    assert again['ca_not_after'] == first['ca_not_after'] and again['ca_not_after'].endswith('Z')
    checked, imported = run_in_a_fresh_process(tmp_path, dict(args, report='all'))
    assert [cert['reason'] for cert in checked['certs']] == ['up to date', 'up to date'] and imported == []

    os.unlink(os.path.join(out_dir, 'worker1-bundle.pem'))
    fixed, imported = run_in_a_fresh_process(tmp_path, args)
    assert [(cert['name'], cert['action']) for cert in fixed['certs']] == [('worker1', 'update')]
    assert 'cryptography.x509' in imported


def test_an_unchanged_rerun_still_refuses_a_wrong_or_missing_passphrase(tmp_path, pki, run_module):
    """The fast path parses no certificate, but a wrong CA passphrase still fails every run, not only the next
    one that issues (months later, when certificates are due)."""
    ca_dir, out_dir = str(tmp_path / 'ca'), str(tmp_path / 'out')
    pki.make_ca(ca_dir, passphrase=pki.PASSPHRASE)
    args = {'ca_dir': ca_dir, 'issued_dir': out_dir, 'certs': CERTS, 'ca_passphrase': pki.PASSPHRASE}
    assert run_module(pki_leaf, args).result['issued'] == 2
    assert run_module(pki_leaf, args).result['changed'] is False
    wrong = run_module(pki_leaf, dict(args, ca_passphrase=pki.WRONG_PASSPHRASE))
    assert wrong.rc == 1 and 'ca_passphrase is wrong' in wrong.result['msg']
    missing = run_module(pki_leaf, dict(args, ca_passphrase=None))
    assert missing.rc == 1 and 'give its passphrase in ca_passphrase' in missing.result['msg']


def test_an_unchanged_rerun_still_refuses_a_missing_ca_key(ca_dir, out_dir, run_module):
    args = {'ca_dir': ca_dir, 'issued_dir': out_dir, 'certs': CERTS}
    assert run_module(pki_leaf, args).result['issued'] == 2
    os.unlink(os.path.join(ca_dir, 'ca-key.pem'))
    missing = run_module(pki_leaf, args)
    assert missing.rc == 1 and 'ca-key.pem is missing' in missing.result['msg'], missing.result
