# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""cert_expiry backend: CertInspector on real certificates."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import os

import pytest

from cryptography.hazmat.primitives.asymmetric import ec

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.inspect import CertInspector, find_cert_files

DAY = datetime.timedelta(days=1)


@pytest.fixture
def env(tmp_path, pki):
    """A CA (made by CaManager) and a directory of hand-made leaves with known dates."""
    now = pki.now()
    ca_dir = str(tmp_path / 'ca')
    manager = pki.make_ca(ca_dir, common_name='Fleet CA')
    ca_key, ca_cert = manager.existing.key, manager.existing.cert
    leaves = str(tmp_path / 'leaves')
    pki.hand_leaf(leaves, 'ok', ca_key, ca_cert, now - DAY, now + 200 * DAY, dns=('ok.example.com', 'ok'))
    pki.hand_leaf(leaves, 'soon', ca_key, ca_cert, now - DAY, now + 10 * DAY)
    pki.hand_leaf(leaves, 'gone', ca_key, ca_cert, now - 100 * DAY, now - DAY)
    return {'now': now, 'ca_dir': ca_dir, 'ca_cert_path': manager.cert_path, 'ca_key': ca_key, 'ca_cert': ca_cert,
            'leaves': leaves}


def by_name(report):
    return dict((os.path.basename(entry['path']), entry) for entry in report['certs'])


def test_statuses_and_counts(env):
    report = CertInspector([env['leaves']], ca_path=env['ca_cert_path'], warn_days=30).inspect()
    certs = by_name(report)
    assert sorted(certs) == ['gone-cert.pem', 'ok-cert.pem', 'soon-cert.pem']
    assert certs['ok-cert.pem']['status'] == 'ok'
    assert certs['soon-cert.pem']['status'] == 'expiring'
    assert certs['gone-cert.pem']['status'] == 'expired'
    assert report['counts'] == {'ok': 1, 'expiring': 1, 'expired': 1, 'broken': 0}
    assert report['total'] == 3
    ok = certs['ok-cert.pem']
    assert ok['problems'] == []
    assert ok['chains_to_ca'] is True
    assert ok['key_matches'] is True
    assert ok['key_mode'] == '0600' and ok['key_mode_ok'] is True
    assert ok['key_path'] == os.path.join(env['leaves'], 'ok-key.pem')
    assert ok['dns'] == ['ok', 'ok.example.com'] and ok['ip'] == []
    assert ok['subject'] == 'CN=ok.example.com' and ok['issuer'] == 'CN=Fleet CA'
    assert ok['days_remaining'] in (199, 200)
    assert 199 * 86400 < ok['seconds_remaining'] <= 200 * 86400
    assert certs['gone-cert.pem']['days_remaining'] < 0
    assert certs['gone-cert.pem']['seconds_remaining'] < 0


def test_warn_days_and_now_move_the_status(env, pki):
    path = os.path.join(env['leaves'], 'ok-cert.pem')
    assert CertInspector([path], warn_days=250).inspect()['certs'][0]['status'] == 'expiring'
    later = CertInspector([path], now=env['now'] + 201 * DAY).inspect()['certs'][0]
    assert later['status'] == 'expired'
    assert CertInspector([path], warn_days=0).inspect()['certs'][0]['status'] == 'ok'


def test_without_ca_path_the_chain_is_not_checked(env):
    certs = by_name(CertInspector([env['leaves']]).inspect())
    assert all(entry['chains_to_ca'] is None for entry in certs.values())
    assert certs['ok-cert.pem']['status'] == 'ok'


def test_directory_reads_only_cert_files(env, pki):
    leaves = env['leaves']
    bundle = pki.read(os.path.join(leaves, 'ok-cert.pem')) + pki.read(env['ca_cert_path'])
    pki.write(os.path.join(leaves, 'ok-bundle.pem'), bundle)
    pki.write(os.path.join(leaves, 'ca.crl'), b'-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n')
    pki.write(os.path.join(leaves, 'crl.pem'), b'-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n')
    pki.write(os.path.join(leaves, 'README'), b'not a cert\n')
    os.mkdir(os.path.join(leaves, 'sub-cert.pem'))  # a directory that looks like a cert is not read
    report = CertInspector([leaves], ca_path=env['ca_cert_path']).inspect()
    assert sorted(by_name(report)) == ['gone-cert.pem', 'ok-cert.pem', 'soon-cert.pem']
    assert report['counts']['broken'] == 0


def test_named_files_are_read_whatever_their_name(env, pki, tmp_path):
    other = tmp_path / 'etc'
    ok_cert = os.path.join(env['leaves'], 'ok-cert.pem')
    other.mkdir()
    pki.write(other / 'server.crt', pki.read(ok_cert))
    pki.write(other / 'server.key', pki.read(os.path.join(env['leaves'], 'ok-key.pem')), 0o600)
    report = CertInspector([str(other / 'server.crt'), ok_cert, ok_cert]).inspect()
    assert report['total'] == 2, 'a path listed twice is read once'
    entry = report['certs'][0]
    assert entry['status'] == 'ok'
    assert entry['key_path'] == str(other / 'server.key') and entry['key_matches'] is True
    assert find_cert_files([str(other)]) == []


def test_ca_path_bundle_of_two_cas(env, pki, tmp_path):
    new_ca = pki.make_ca(str(tmp_path / 'new-ca'), common_name='Fleet CA 2')
    now = env['now']
    pki.hand_leaf(env['leaves'], 'rolled', new_ca.existing.key, new_ca.existing.cert, now - DAY, now + 300 * DAY)
    bundle = tmp_path / 'ca-bundle.pem'
    pki.write(bundle, pki.read(env['ca_cert_path']) + pki.read(new_ca.cert_path))
    certs = by_name(CertInspector([env['leaves']], ca_path=str(bundle)).inspect())
    assert certs['ok-cert.pem']['chains_to_ca'] is True and certs['ok-cert.pem']['status'] == 'ok'
    assert certs['rolled-cert.pem']['chains_to_ca'] is True and certs['rolled-cert.pem']['status'] == 'ok'

    only_old = by_name(CertInspector([env['leaves']], ca_path=env['ca_cert_path']).inspect())
    assert only_old['rolled-cert.pem']['status'] == 'broken'
    assert only_old['rolled-cert.pem']['chains_to_ca'] is False
    assert only_old['rolled-cert.pem']['problems'] == ['not signed by any CA in %s' % env['ca_cert_path']]


def test_cert_bearing_the_ca_name_but_signed_by_another_key_is_broken(env, pki, tmp_path):
    now = env['now']
    impostor_key, impostor = pki.hand_ca(tmp_path / 'impostor', now - DAY, now + 3000 * DAY, common_name='Fleet CA')
    assert impostor.subject == env['ca_cert'].subject
    pki.hand_leaf(env['leaves'], 'fake', impostor_key, impostor, now - DAY, now + 300 * DAY)
    certs = by_name(CertInspector([env['leaves']], ca_path=env['ca_cert_path']).inspect())
    assert certs['fake-cert.pem']['issuer'] == 'CN=Fleet CA'
    assert certs['fake-cert.pem']['chains_to_ca'] is False
    assert certs['fake-cert.pem']['status'] == 'broken'
    assert certs['ok-cert.pem']['status'] == 'ok'


@pytest.mark.parametrize('content', [b'', b'garbage\n', b'-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'])
def test_a_file_that_does_not_parse_is_broken(env, pki, content):
    pki.write(os.path.join(env['leaves'], 'bad-cert.pem'), content)
    report = CertInspector([env['leaves']], ca_path=env['ca_cert_path']).inspect()
    bad = by_name(report)['bad-cert.pem']
    assert bad['status'] == 'broken'
    assert bad['problems'] == ['not a valid PEM certificate']
    assert bad['subject'] is None
    assert report['counts'] == {'ok': 1, 'expiring': 1, 'expired': 1, 'broken': 1}


def test_key_mismatch_is_broken(env, pki):
    key_path = os.path.join(env['leaves'], 'ok-key.pem')
    pki.write(key_path, crypto.private_key_pem(ec.generate_private_key(ec.SECP256R1())), 0o600)
    entry = by_name(CertInspector([env['leaves']]).inspect())['ok-cert.pem']
    assert entry['status'] == 'broken'
    assert entry['key_matches'] is False
    assert entry['problems'] == ['key %s does not match the certificate' % key_path]


def test_unreadable_key_is_broken(env, pki):
    key_path = os.path.join(env['leaves'], 'ok-key.pem')
    pki.write(key_path, b'garbage\n', 0o600)
    entry = by_name(CertInspector([env['leaves']]).inspect())['ok-cert.pem']
    assert entry['status'] == 'broken' and entry['key_matches'] is False
    assert entry['problems'] == ['key %s unreadable' % key_path]


def test_readable_key_mode_is_reported_not_broken(env):
    key_path = os.path.join(env['leaves'], 'ok-key.pem')
    os.chmod(key_path, 0o644)
    entry = by_name(CertInspector([env['leaves']], ca_path=env['ca_cert_path']).inspect())['ok-cert.pem']
    assert entry['key_mode'] == '0644'
    assert entry['key_mode_ok'] is False
    assert entry['status'] == 'ok'
    assert entry['problems'] == ['key mode 0644, expected 0600']


def test_encrypted_key_is_not_broken(tmp_path, pki):
    """A CA made with a passphrase (or a leaf with an encrypted key) is fine; the key just cannot be compared."""
    ca_dir = str(tmp_path / 'ca')
    pki.make_ca(ca_dir, passphrase=pki.PASSPHRASE)
    entry = CertInspector([ca_dir], ca_path=os.path.join(ca_dir, 'ca-cert.pem')).inspect()['certs'][0]
    assert entry['status'] == 'ok', entry['problems']
    assert entry['problems'] == []
    assert entry['key_path'] == os.path.join(ca_dir, 'ca-key.pem')
    assert entry['key_matches'] is None
    assert entry['key_mode_ok'] is True


def test_cert_without_key_beside_it(env):
    os.unlink(os.path.join(env['leaves'], 'ok-key.pem'))
    entry = by_name(CertInspector([env['leaves']]).inspect())['ok-cert.pem']
    assert entry['status'] == 'ok'
    assert entry['key_path'] is None and entry['key_matches'] is None and entry['key_mode_ok'] is None


def test_not_yet_valid_is_broken(env, pki):
    now = env['now']
    pki.hand_leaf(env['leaves'], 'future', env['ca_key'], env['ca_cert'], now + 5 * DAY, now + 300 * DAY)
    entry = by_name(CertInspector([env['leaves']]).inspect())['future-cert.pem']
    assert entry['status'] == 'broken'
    assert entry['problems'][0].startswith('not valid before ')


def test_a_missing_path_is_reported_broken(env, tmp_path):
    missing = str(tmp_path / 'nope' / 'web-cert.pem')
    report = CertInspector([missing, env['leaves']]).inspect()
    entry = by_name(report)['web-cert.pem']
    assert entry['path'] == missing
    assert entry['status'] == 'broken'
    assert entry['problems'][0].startswith('cannot read')
    assert report['counts']['broken'] == 1 and report['total'] == 4


def test_issued_by_pki_leaf_and_the_ca_dir_itself(tmp_path, pki):
    ca_dir, out_dir = str(tmp_path / 'ca'), str(tmp_path / 'out')
    pki.make_ca(ca_dir)
    pki.issue(ca_dir, [{'name': 'web1', 'dns': ['web1.example.com'], 'ip': ['10.0.0.1']}], default_dir=out_dir)
    ca_path = os.path.join(ca_dir, 'ca-cert.pem')
    report = CertInspector([out_dir, ca_dir], ca_path=ca_path).inspect()
    certs = by_name(report)
    assert sorted(certs) == ['ca-cert.pem', 'web1-cert.pem']
    assert certs['web1-cert.pem']['ip'] == ['10.0.0.1']
    assert report['counts'] == {'ok': 2, 'expiring': 0, 'expired': 0, 'broken': 0}


def test_bad_ca_path(tmp_path, pki, env):
    missing = str(tmp_path / 'no-such-ca.pem')
    pki.expect_error(lambda: CertInspector([env['leaves']], ca_path=missing), tmp_path, missing, 'ca_path')
    pki.expect_error(lambda: CertInspector([env['leaves']], ca_path=env['ca_dir']), tmp_path, env['ca_dir'],
                     'not a file')
    no_pem = str(tmp_path / 'notes.pem')
    pki.write(no_pem, b'hello\n')
    pki.expect_error(lambda: CertInspector([env['leaves']], ca_path=no_pem), tmp_path, no_pem,
                     'no PEM certificate')
    corrupt = str(tmp_path / 'corrupt.pem')
    pki.write(corrupt, pki.read(env['ca_cert_path']) + b'-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')
    pki.expect_error(lambda: CertInspector([env['leaves']], ca_path=corrupt), tmp_path, corrupt,
                     'not a valid PEM certificate')


@pytest.mark.parametrize('kwargs, needles', [
    ({'paths': []}, ['paths is empty']),
    ({'warn_days': -1}, ['warn_days', '-1']),
])
def test_bad_arguments(env, pki, tmp_path, kwargs, needles):
    args = {'paths': [env['leaves']]}
    args.update(kwargs)
    pki.expect_error(lambda: CertInspector(**args), tmp_path, *needles)


# -- CRLs (issue 9: an expired CRL locks every client out of a CRL-checking service) -------------------------------
def hand_crl(path, ca_key, ca_cert, last, end, append=False):
    from cryptography.hazmat.primitives import hashes, serialization
    builder = (crypto.x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
               .last_update(last).next_update(end)
               .add_extension(crypto.x509.CRLNumber(7), critical=False))
    pem = builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    with open(str(path), 'ab' if append else 'wb') as handle:
        handle.write(pem)


def test_crls_report_next_update_and_status(tmp_path, pki):
    from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.metrics import render
    now = pki.now()
    ca_key, ca_cert = pki.hand_ca(tmp_path / 'ca', now - 10 * DAY, now + 400 * DAY, common_name='Fleet CA')
    other_key, other_cert = pki.hand_ca(tmp_path / 'other', now - 10 * DAY, now + 400 * DAY, common_name='Other CA')
    bundle = tmp_path / 'crl-bundle.pem'
    hand_crl(bundle, ca_key, ca_cert, now - DAY, now + 29 * DAY)                              # ok
    hand_crl(bundle, ca_key, ca_cert, now - 20 * DAY, now + 10 * DAY, append=True)            # past half: expiring
    hand_crl(tmp_path / 'expired.pem', ca_key, ca_cert, now - 31 * DAY, now - DAY)            # expired
    hand_crl(tmp_path / 'foreign.pem', other_key, other_cert, now - DAY, now + 29 * DAY)      # not by the bundle's CA
    (tmp_path / 'garbage.pem').write_text('not a crl\n')
    ca_file = tmp_path / 'ca' / 'ca-cert.pem'
    report = CertInspector([], str(ca_file), crl_paths=[str(bundle), str(tmp_path / 'expired.pem'),
                                                        str(tmp_path / 'foreign.pem'), str(tmp_path / 'garbage.pem')],
                           now=now).inspect()
    statuses = [(entry['path'].rsplit('/', 1)[1], entry['status']) for entry in report['crls']]
    assert statuses == [('crl-bundle.pem', 'ok'), ('crl-bundle.pem', 'expiring'), ('expired.pem', 'expired'),
                        ('foreign.pem', 'broken'), ('garbage.pem', 'broken')]
    assert report['crl_counts'] == {'ok': 1, 'expiring': 1, 'expired': 1, 'broken': 2}
    first = report['crls'][0]
    assert first['issuer'] == 'CN=Fleet CA' and first['crl_number'] == 7 and first['days_remaining'] in (28, 29)
    assert report['crls'][2]['days_remaining'] < 0
    text = render(report['certs'], {'host': 'ctl'}, report['crls'])
    assert '# TYPE fleetpki_crl_next_update_seconds gauge' in text
    assert text.count('fleetpki_crl_expired{') == 5
    assert 'fleetpki_crl_expired{host="ctl",issuer="CN=Fleet CA",path="%s"} 1' % (tmp_path / 'expired.pem') in text


def test_extra_ca_paths_are_anchors_of_this_host_for_certificates_and_crls(env, tmp_path):
    """An API host trusts its enrollment CA beside the bundle: that CA's certificate and CRL count as good there,
    and are broken against the bundle alone."""
    from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.ca import CaManager
    from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.crl import CrlManager
    manager = CaManager(str(tmp_path / 'enroll'), common_name='Enrollment CA', path_length=0, usage='client',
                        name_constraints_permitted_dns=['enroll.example'])
    manager.plan()
    manager.apply()
    crl = CrlManager(str(tmp_path / 'enroll'))
    crl.plan()
    crl.apply()
    cert, crl_path = str(tmp_path / 'enroll' / 'ca-cert.pem'), str(tmp_path / 'enroll' / 'crl.pem')
    alone = CertInspector([cert], ca_path=env['ca_cert_path'], crl_paths=[crl_path]).inspect()
    assert alone['certs'][0]['status'] == 'broken' and alone['crls'][0]['status'] == 'broken'
    trusted = CertInspector([cert], ca_path=env['ca_cert_path'], crl_paths=[crl_path],
                            extra_ca_paths=[cert, str(tmp_path / 'absent.pem')]).inspect()
    assert trusted['certs'][0]['status'] == 'ok' and trusted['crls'][0]['status'] == 'ok', trusted
