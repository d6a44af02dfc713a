# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Two tiers: a root (its key a file or in a SoftHSM2 token) signs issuing CAs (pathLen 0, name constraints), which
sign the leaves; openssl verifies the chains, and every refusal comes before a write."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import json
import os
import subprocess

import pytest

from cryptography import x509

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.ca import CaManager, load_ca
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.crl import CrlManager
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError

from ansible_collections.fleetpki.mtls.tests.unit.conftest import PASSPHRASE, TOKEN_PIN, WRONG_PASSPHRASE


def made(directory, **kwargs):
    manager = CaManager(str(directory), **kwargs)
    manager.plan()
    return manager.apply(), manager


def verify(*argv):
    proc = subprocess.run(['openssl', 'verify', '-x509_strict'] + [str(arg) for arg in argv], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    return proc.returncode, proc.stdout


def site_a(root, directory, **kwargs):
    kwargs.setdefault('common_name', 'Site A Issuing CA')
    kwargs.setdefault('name_constraints_permitted_dns', ['site-a.example.com'])
    kwargs.setdefault('name_constraints_permitted_ip', ['10.20.0.0/16'])
    return made(directory, issuer_dir=str(root), **kwargs)


def test_a_root_signs_an_issuing_ca_with_path_length_0_and_the_site_names_and_it_signs_leaves(tmp_path, pki):
    root, issuing, out = tmp_path / 'root', tmp_path / 'site-a', tmp_path / 'issued'
    made(root, common_name='Fleet Root CA')
    result, dummy = site_a(root, issuing)
    assert result['action'] == 'create' and result['self_signed'] is False
    assert result['path_length'] == 0 and result['issuer'] == 'CN=Fleet Root CA'
    assert result['name_constraints'] == {'permitted_dns': ['site-a.example.com'], 'permitted_ip': ['10.20.0.0/16'],
                                          'excluded_dns': [], 'excluded_ip': []}
    root_cert, cert = pki.load_cert(root / 'ca-cert.pem'), pki.load_cert(issuing / 'ca-cert.pem')
    assert crypto.signed_by(cert, root_cert)
    assert pki.ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == \
        pki.ext(root_cert, x509.SubjectKeyIdentifier).value.digest
    assert verify('-CAfile', root / 'ca-cert.pem', issuing / 'ca-cert.pem')[0] == 0
    # A leaf of the site chains to the root through its issuing CA.
    pki.issue(str(issuing), [{'name': 'web1', 'dns': ['web1.site-a.example.com'], 'ip': ['10.20.0.7']}],
              default_dir=str(out))
    rc, output = verify('-CAfile', root / 'ca-cert.pem', '-untrusted', issuing / 'ca-cert.pem', out / 'web1-cert.pem')
    assert rc == 0, output
    # A name of another site: pki_leaf refuses it before any write, and a certificate made past it anyway (by the
    # issuing CA's key, by hand) is refused by every client (openssl here).
    pki.expect_error(lambda: pki.issue(str(issuing), [{'name': 'stray', 'dns': ['web1.site-b.example.com']}],
                                       default_dir=str(out)), tmp_path, 'outside the CA\'s permitted DNS suffixes')
    stray_key = crypto.generate_key('ec-p256')
    stray = crypto.sign(x509.CertificateBuilder().subject_name(pki.load_cert(out / 'web1-cert.pem').subject)
                        .issuer_name(cert.subject).public_key(stray_key.public_key())
                        .serial_number(x509.random_serial_number()).not_valid_before(crypto.not_before(cert))
                        .not_valid_after(crypto.not_after(cert))
                        .add_extension(x509.SubjectAlternativeName([x509.DNSName('web1.site-b.example.com')]), False),
                        load_ca(str(issuing)).key)
    (tmp_path / 'stray.pem').write_bytes(crypto.cert_pem(stray))
    rc, output = verify('-CAfile', root / 'ca-cert.pem', '-untrusted', issuing / 'ca-cert.pem', tmp_path / 'stray.pem')
    assert rc != 0 and 'permitted subtree violation' in output, output
    # The same request again changes nothing.
    assert site_a(root, issuing)[0]['action'] == 'none'


def test_a_root_in_a_token_signs_issuing_cas_and_its_crl_and_its_key_never_reaches_the_disk(tmp_path, pki, softhsm):
    token = softhsm['new_token']()
    root, issuing = tmp_path / 'root', tmp_path / 'site-a'
    pkcs11 = {'module': softhsm['module'], 'token_label': token, 'key_label': 'fleet-root'}
    result, dummy = made(root, common_name='Fleet Root CA', pkcs11=pkcs11, passphrase=TOKEN_PIN)
    assert result['action'] == 'create' and result['pkcs11'] == pkcs11
    assert sorted(os.listdir(str(root))) == ['ca-cert.pem', 'ca-key.pkcs11.json']
    assert json.loads((root / 'ca-key.pkcs11.json').read_text()) == pkcs11
    assert pki.mode_of(root / 'ca-key.pkcs11.json') == 0o600
    for path in root.rglob('*'):
        assert b'PRIVATE KEY' not in path.read_bytes(), path
    assert verify('-check_ss_sig', '-CAfile', root / 'ca-cert.pem', root / 'ca-cert.pem')[0] == 0
    # The issuing CA's own key in the same token, under its own label: one login serves both.
    result, dummy = site_a(root, issuing, issuer_passphrase=TOKEN_PIN, passphrase=TOKEN_PIN,
                           pkcs11=dict(pkcs11, key_label='site-a'))
    assert result['action'] == 'create'
    assert verify('-CAfile', root / 'ca-cert.pem', issuing / 'ca-cert.pem')[0] == 0
    # The root's CRL, signed through the token.
    crl = CrlManager(str(root), passphrase=TOKEN_PIN)
    crl.plan()
    crl.apply()
    check = subprocess.run(['openssl', 'crl', '-noout', '-CAfile', str(root / 'ca-cert.pem'), '-in',
                            str(root / 'crl.pem')], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, check=False)
    assert check.returncode == 0 and 'verify OK' in check.stdout, check.stdout
    # Loading the root needs the PIN, named as the CA's secret, never shown.
    with pytest.raises(PkiError, match="the CA key of .* is in PKCS#11 token '%s' .*give the token's user PIN in "
                                       "ca_passphrase" % token):
        load_ca(str(root))
    with pytest.raises(PkiError) as caught:
        load_ca(str(root), WRONG_PASSPHRASE + '-other')
    assert 'another PIN' in str(caught.value) or 'PIN is wrong' in str(caught.value)
    assert WRONG_PASSPHRASE not in str(caught.value) and TOKEN_PIN not in str(caught.value)


def test_an_issuing_ca_is_renewed_by_its_root_with_the_same_key(tmp_path, pki):
    root, issuing = tmp_path / 'root', tmp_path / 'site-a'
    made(root, common_name='Fleet Root CA')
    site_a(root, issuing, valid_days=30)
    before = pki.load_cert(issuing / 'ca-cert.pem')
    result, dummy = site_a(root, issuing, valid_days=365, renew_days=60)
    assert result['action'] == 'renew'
    after = pki.load_cert(issuing / 'ca-cert.pem')
    assert after.serial_number != before.serial_number
    assert crypto.public_key_der(after.public_key()) == crypto.public_key_der(before.public_key())
    assert after.issuer == before.issuer and crypto.signed_by(after, pki.load_cert(root / 'ca-cert.pem'))
    assert pki.ext(after, x509.BasicConstraints).value.path_length == 0
    # Without its root, the renewal is refused before anything is written.
    pki.expect_error(lambda: made(issuing, common_name='Site A Issuing CA', renew_days=400), tmp_path,
                     'is issued by CN=Fleet Root CA', 'issuer_dir')


def test_an_issuing_ca_ends_with_its_root_and_says_so(tmp_path, pki):
    root, issuing = tmp_path / 'root', tmp_path / 'site-a'
    made(root, common_name='Fleet Root CA', valid_days=100)
    result, manager = site_a(root, issuing, valid_days=3650)
    assert result['not_after'] == load_ca(str(root), need_key=False).info()['not_after']
    assert any('ends with its root' in warning for warning in manager.warnings), manager.warnings


def test_refusals_come_before_any_write(tmp_path, pki):
    root, issuing = tmp_path / 'root', tmp_path / 'site-a'
    made(root, common_name='Fleet Root CA', passphrase=PASSPHRASE)
    pki.expect_error(lambda: site_a(root, issuing, issuer_passphrase=WRONG_PASSPHRASE), tmp_path, 'issuer_passphrase')
    pki.expect_error(lambda: site_a(root, issuing), tmp_path, 'give its passphrase in issuer_passphrase')
    pki.expect_error(lambda: site_a(root, root, issuer_passphrase=PASSPHRASE), tmp_path, 'is ca_dir itself')
    pki.expect_error(lambda: site_a(tmp_path / 'nowhere', issuing), tmp_path, 'no CA in', 'issuer_dir')
    leaves_only = tmp_path / 'leaves-only'
    made(leaves_only, common_name='Leaves Only', path_length=0)
    pki.expect_error(lambda: site_a(leaves_only, issuing), tmp_path, 'has path length 0', 'may sign leaves only')
    pki.expect_error(lambda: made(issuing, pkcs11={'module': '/usr/lib/softhsm/libsofthsm2.so', 'token_label': 't',
                                                   'key_label': 'k'}, passphrase=TOKEN_PIN, key_type='ed25519'),
                     tmp_path, 'key_type ed25519 cannot be made in a PKCS#11 token')


def test_an_existing_root_asked_to_be_issued_is_refused(tmp_path, pki):
    """A self-signed CA is never turned into (or renewed as) an issuing CA: its leaves would be refused by hosts
    that trust the root alone."""
    root, other = tmp_path / 'root', tmp_path / 'other'
    made(root, common_name='Fleet Root CA')
    made(other, common_name='Site A Issuing CA')
    for extra in ({}, {'renew_days': 4000}):
        pki.expect_error(lambda: site_a(root, other, **extra), tmp_path, 'is a self-signed root, not an issuing CA',
                         'Omit issuer_dir')


def test_the_issuing_ca_dates_stay_within_the_root(tmp_path, pki):
    root, issuing = tmp_path / 'root', tmp_path / 'site-a'
    made(root, common_name='Fleet Root CA')
    site_a(root, issuing)
    root_cert, cert = pki.load_cert(root / 'ca-cert.pem'), pki.load_cert(issuing / 'ca-cert.pem')
    assert crypto.not_after(cert) <= crypto.not_after(root_cert)
    assert crypto.not_after(cert) - crypto.not_before(cert) > datetime.timedelta(days=3000)


def test_an_issuing_ca_checked_against_another_root_of_the_same_name_is_refused(tmp_path, pki):
    root, issuing, impostor = tmp_path / 'root', tmp_path / 'site-a', tmp_path / 'impostor'
    made(root, common_name='Fleet Root CA')
    site_a(root, issuing)
    made(impostor, common_name='Fleet Root CA')
    pki.expect_error(lambda: site_a(impostor, issuing), tmp_path, 'was not signed by the CA in issuer_dir %s' % impostor)


def test_the_root_key_is_opened_only_to_sign(tmp_path, pki):
    """The root stays offline: a run with nothing to sign checks the issuing CA against the root's certificate and
    never opens the root's key; a run that signs needs its secret, and a wrong one is refused before any write."""
    root, issuing = tmp_path / 'root', tmp_path / 'site-a'
    made(root, common_name='Fleet Root CA', passphrase=PASSPHRASE)
    site_a(root, issuing, issuer_passphrase=PASSPHRASE, valid_days=30)
    assert site_a(root, issuing)[0]['action'] == 'none'
    assert site_a(root, issuing, issuer_passphrase=WRONG_PASSPHRASE)[0]['action'] == 'none'
    pki.expect_error(lambda: site_a(root, issuing, issuer_passphrase=WRONG_PASSPHRASE, renew_days=60), tmp_path,
                     'issuer_passphrase')


def test_an_issuing_ca_needs_path_length_0_the_names_of_its_site_and_a_name_of_its_own(tmp_path, pki):
    root, issuing = tmp_path / 'root', tmp_path / 'site-a'
    made(root, common_name='Fleet Root CA')
    pki.expect_error(lambda: site_a(root, issuing, path_length=1), tmp_path, 'path_length 1', 'path length 0')
    pki.expect_error(lambda: site_a(root, issuing, name_constraints_permitted_dns=[], name_constraints_permitted_ip=[]),
                     tmp_path, 'needs the names of its site')
    pki.expect_error(lambda: site_a(root, issuing, common_name='Fleet Root CA'), tmp_path, "is the root's own subject")


def test_a_renewal_that_would_not_outlast_the_current_certificate_is_refused(tmp_path, pki):
    """Capped at the root's end: each renewal would make a new certificate with the same end (a new CA in every
    trust store for nothing); the root must be renewed first."""
    root, issuing = tmp_path / 'root', tmp_path / 'site-a'
    made(root, common_name='Fleet Root CA', valid_days=200)
    site_a(root, issuing, valid_days=3650)
    pki.expect_error(lambda: site_a(root, issuing, renew_days=365), tmp_path, 'already ends with its root',
                     'Renew the root')


def test_a_token_key_of_the_root_or_of_the_replaced_ca_is_refused(tmp_path, pki, softhsm):
    token = softhsm['new_token']()
    root, issuing = tmp_path / 'root', tmp_path / 'site-a'
    pkcs11 = {'module': softhsm['module'], 'token_label': token, 'key_label': 'fleet-root'}
    made(root, common_name='Fleet Root CA', pkcs11=pkcs11, passphrase=TOKEN_PIN)
    pki.expect_error(lambda: site_a(root, issuing, issuer_passphrase=TOKEN_PIN, passphrase=TOKEN_PIN, pkcs11=pkcs11),
                     tmp_path, 'is the key of the root in issuer_dir')
    site_a(root, issuing, issuer_passphrase=TOKEN_PIN, passphrase=TOKEN_PIN, pkcs11=dict(pkcs11, key_label='site-a'))
    pki.expect_error(lambda: site_a(root, issuing, issuer_passphrase=TOKEN_PIN, passphrase=TOKEN_PIN, force=True,
                                    pkcs11=dict(pkcs11, key_label='site-a')), tmp_path,
                     'is the key of the CA force replaces')
    # Without pkcs11 the token CA is used where it is, with no warning to replace it.
    result, manager = site_a(root, issuing, passphrase=TOKEN_PIN)
    assert result['action'] == 'none' and manager.warnings == [], manager.warnings


def test_cert_expiry_follows_the_chain_in_the_file_and_checks_the_issuing_cas_crl(tmp_path, pki):
    """What cert_expiry does on a host of a two-tier fleet: its bundle holds the root alone; a certificate chains
    through the issuing CA after it in its file, and the issuing CA's CRL verifies with that CA."""
    from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.inspect import CertInspector
    root, issuing, out = tmp_path / 'root', tmp_path / 'site-a', tmp_path / 'issued'
    made(root, common_name='Fleet Root CA')
    site_a(root, issuing)
    pki.issue(str(issuing), [{'name': 'web1', 'dns': ['web1.site-a.example.com']}], default_dir=str(out))
    for directory in (root, issuing):
        crl = CrlManager(str(directory))
        crl.plan()
        crl.apply()
    (tmp_path / 'crl-bundle.pem').write_bytes((issuing / 'crl.pem').read_bytes() + (root / 'crl.pem').read_bytes())
    (tmp_path / 'leaf-only.pem').write_bytes(crypto.cert_pem(pki.load_cert(out / 'web1-cert.pem')))
    report = CertInspector([str(out / 'web1-cert.pem'), str(tmp_path / 'leaf-only.pem')],
                           ca_path=str(root / 'ca-cert.pem'), crl_paths=[str(tmp_path / 'crl-bundle.pem')]).inspect()
    by_path = dict((entry['path'], entry) for entry in report['certs'])
    assert by_path[str(out / 'web1-cert.pem')]['chains_to_ca'] is True
    assert by_path[str(out / 'web1-cert.pem')]['status'] == 'ok', by_path[str(out / 'web1-cert.pem')]['problems']
    assert by_path[str(tmp_path / 'leaf-only.pem')]['chains_to_ca'] is False
    assert [entry['status'] for entry in report['crls']] == ['ok', 'ok'], report['crls']

    # Another site's CRL: no certificate here leads to its issuing CA, so it is checked with the issuing CAs of
    # crl_issuer_paths (the pki role's crl-issuers.pem); a CA there that the root did not sign does not count.
    made(tmp_path / 'site-b', issuer_dir=str(root), common_name='Site B Issuing CA',
         name_constraints_permitted_dns=['site-b.example.com'])
    crl = CrlManager(str(tmp_path / 'site-b'))
    crl.plan()
    crl.apply()
    made(tmp_path / 'stranger', common_name='Site B Issuing CA')
    (tmp_path / 'crl-bundle.pem').write_bytes((tmp_path / 'crl-bundle.pem').read_bytes()
                                              + (tmp_path / 'site-b' / 'crl.pem').read_bytes())
    (tmp_path / 'issuers.pem').write_bytes(b''.join((directory / 'ca-cert.pem').read_bytes() for directory in
                                                    (root, issuing, tmp_path / 'site-b')))
    (tmp_path / 'strangers.pem').write_bytes((tmp_path / 'stranger' / 'ca-cert.pem').read_bytes())

    def crl_statuses(*issuer_paths):
        return [entry['status'] for entry in CertInspector(
            [str(out / 'web1-cert.pem')], ca_path=str(root / 'ca-cert.pem'),
            crl_paths=[str(tmp_path / 'crl-bundle.pem')], crl_issuer_paths=[str(path) for path in issuer_paths]
        ).inspect()['crls']]

    assert crl_statuses() == ['ok', 'ok', 'broken']
    assert crl_statuses(tmp_path / 'strangers.pem', tmp_path / 'missing.pem') == ['ok', 'ok', 'broken']
    assert crl_statuses(tmp_path / 'issuers.pem') == ['ok', 'ok', 'ok']


def crl_of(directory, **kwargs):
    manager = CrlManager(str(directory), **kwargs)
    manager.plan()
    return manager.apply()


def test_revoking_a_sites_issuing_ca_cuts_off_its_leaves_and_nothing_else(tmp_path, pki):
    """A compromised site: the root revokes its issuing CA (the current certificate and the renewed ones, same key);
    with the root's CRL checked along the chain, every leaf of that site is refused and the other site's pass."""
    root, out = tmp_path / 'root', tmp_path / 'issued'
    made(root, common_name='Fleet Root CA')
    site_a(root, tmp_path / 'site-a')
    made(tmp_path / 'site-b', issuer_dir=str(root), common_name='Site B Issuing CA', valid_days=30,
         name_constraints_permitted_dns=['site-b.example.com'])
    first_b = pki.load_cert(tmp_path / 'site-b' / 'ca-cert.pem')
    made(tmp_path / 'site-b', issuer_dir=str(root), common_name='Site B Issuing CA', valid_days=365, renew_days=60,
         name_constraints_permitted_dns=['site-b.example.com'])
    pki.issue(str(tmp_path / 'site-a'), [{'name': 'web-a', 'dns': ['web.site-a.example.com']}], default_dir=str(out))
    pki.issue(str(tmp_path / 'site-b'), [{'name': 'web-b', 'dns': ['web.site-b.example.com']}], default_dir=str(out))
    for directory in (root, tmp_path / 'site-a', tmp_path / 'site-b'):
        crl_of(directory)

    result = crl_of(root, revoke_ca_dirs=[str(tmp_path / 'site-b')], reason='ca_compromise')
    current_b = pki.load_cert(tmp_path / 'site-b' / 'ca-cert.pem')
    assert sorted(result['revoked_now']) == sorted([crypto.serial_hex(first_b), crypto.serial_hex(current_b)])
    assert set(entry['name'] for entry in result['revoked']) == {'ca:Site B Issuing CA'}
    crls = tmp_path / 'crl-bundle.pem'
    crls.write_bytes(b''.join((directory / 'crl.pem').read_bytes()
                              for directory in (root, tmp_path / 'site-a', tmp_path / 'site-b')))
    for site, leaf, wanted in (('site-a', 'web-a', 0), ('site-b', 'web-b', 2)):
        rc, output = verify('-crl_check_all', '-CRLfile', crls, '-CAfile', root / 'ca-cert.pem',
                            '-untrusted', tmp_path / site / 'ca-cert.pem', out / ('%s-cert.pem' % leaf))
        assert (rc == 0) == (wanted == 0), output
        if wanted:
            assert 'certificate revoked' in output, output
    # Again: nothing new to revoke, the CRL stays.
    assert crl_of(root, revoke_ca_dirs=[str(tmp_path / 'site-b')])['changed'] is False
    # The revoked CA is not used on: pki_ca refuses it before any write, and force makes the site a new one.
    pki.expect_error(lambda: made(tmp_path / 'site-b', issuer_dir=str(root), common_name='Site B Issuing CA',
                                  name_constraints_permitted_dns=['site-b.example.com']),
                     tmp_path, 'was revoked by its root', 'force')
    result, manager = made(tmp_path / 'site-b', issuer_dir=str(root), common_name='Site B Issuing CA',
                           replace_revoked=True, name_constraints_permitted_dns=['site-b.example.com'])
    assert result['action'] == 'replace' and 'was revoked by its root' in ' '.join(manager.warnings)
    replaced = pki.load_cert(tmp_path / 'site-b' / 'ca-cert.pem')
    assert crypto.public_key_der(replaced.public_key()) != crypto.public_key_der(current_b.public_key())
    assert crypto.signed_by(replaced, pki.load_cert(root / 'ca-cert.pem'))
    assert len(list((tmp_path / 'site-b' / 'retired').glob('*-ca-cert.pem'))) == 2
    # The new one is not revoked: replace_revoked keeps it.
    assert made(tmp_path / 'site-b', issuer_dir=str(root), common_name='Site B Issuing CA', replace_revoked=True,
                name_constraints_permitted_dns=['site-b.example.com'])[0]['action'] == 'none'


def test_revoke_ca_dirs_refuses_a_ca_its_root_did_not_sign_before_any_write(tmp_path, pki):
    root, other = tmp_path / 'root', tmp_path / 'other-root'
    made(root, common_name='Fleet Root CA')
    made(other, common_name='Other Root CA')
    made(tmp_path / 'site-x', issuer_dir=str(other), common_name='Site X Issuing CA',
         name_constraints_permitted_dns=['site-x.example.com'])
    crl_of(root)
    for directory in (root, other, tmp_path / 'site-x'):
        pki.expect_error(lambda: crl_of(root, revoke_ca_dirs=[str(directory)]), tmp_path,
                         'revoke_ca_dirs: the CA in %s' % directory, 'was not issued by the CA in ca_dir')
    pki.expect_error(lambda: crl_of(root, revoke_ca_dirs=[str(tmp_path / 'nowhere')]), tmp_path, 'revoke_ca_dirs')
