# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pki_ca backend: CaManager and load_ca with real keys, real files and openssl."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import os
import subprocess

import pytest

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.ca import CaManager, check_ca_usable, load_ca

DAY = datetime.timedelta(days=1)


def ca_files(directory):
    return os.path.join(str(directory), 'ca-key.pem'), os.path.join(str(directory), 'ca-cert.pem')


def plan_and_apply(directory, **kwargs):
    manager = CaManager(str(directory), **kwargs)
    action = manager.plan()
    return action, manager.apply(), manager


# -- create ---------------------------------------------------------------------------------------------------------

def test_create_writes_key_and_cert_with_modes_and_ca_extensions(tmp_path, pki):
    directory = tmp_path / 'pki' / 'ca'
    manager = CaManager(str(directory), common_name='Acme Fleet Root CA',
                        subject_fields={'organization': 'Acme', 'country': 'DE', 'locality': None})
    assert manager.plan() == 'create'
    assert not (tmp_path / 'pki').exists(), 'plan() must not write'
    result = manager.apply()

    key_path, cert_path = ca_files(directory)
    assert sorted(os.listdir(str(directory))) == ['ca-cert.pem', 'ca-key.pem']
    assert pki.mode_of(directory) == 0o700
    assert pki.mode_of(key_path) == 0o600
    assert pki.mode_of(cert_path) == 0o644
    assert result['changed'] is True
    assert result['action'] == 'create'
    assert result['key_path'] == key_path and result['cert_path'] == cert_path

    cert = pki.load_cert(cert_path)
    key = pki.load_key(key_path)
    assert crypto.key_matches_cert(key, cert)
    assert b'BEGIN PRIVATE KEY' in pki.read(key_path)

    constraints = pki.ext(cert, x509.BasicConstraints)
    assert constraints.critical is True
    assert constraints.value.ca is True
    assert constraints.value.path_length is None
    usage = pki.ext(cert, x509.KeyUsage)
    assert usage.critical is True
    assert usage.value.key_cert_sign is True
    assert usage.value.crl_sign is True
    assert usage.value.digital_signature is False
    ski = pki.ext(cert, x509.SubjectKeyIdentifier)
    assert ski.value.digest == x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest

    assert cert.subject == cert.issuer
    assert cert.subject.rfc4514_string() == 'CN=Acme Fleet Root CA,O=Acme,C=DE'
    assert cert.serial_number.bit_length() >= 64
    assert crypto.signed_by(cert, cert)
    span = crypto.not_after(cert) - crypto.not_before(cert)
    assert datetime.timedelta(days=3650) <= span <= datetime.timedelta(days=3650, minutes=6)
    assert crypto.not_before(cert) <= pki.now()

    assert result['subject'] == 'CN=Acme Fleet Root CA,O=Acme,C=DE'
    assert result['key_type'] == 'ec-p256'
    assert result['encrypted'] is False
    assert result['days_remaining'] in (3649, 3650)
    assert result['serial'] == '%X' % cert.serial_number
    rc, output = pki.openssl_verify(cert_path, cert_path)
    assert rc == 0, output


def test_path_length_is_written(tmp_path, pki):
    plan_and_apply(tmp_path / 'ca', path_length=0)
    cert = pki.load_cert(ca_files(tmp_path / 'ca')[1])
    assert pki.ext(cert, x509.BasicConstraints).value.path_length == 0


@pytest.mark.parametrize('key_type, key_class, hash_name', [
    ('ec-p256', ec.EllipticCurvePrivateKey, 'sha256'),
    ('ec-p384', ec.EllipticCurvePrivateKey, 'sha384'),
    ('rsa2048', rsa.RSAPrivateKey, 'sha256'),
    ('rsa3072', rsa.RSAPrivateKey, 'sha256'),
    ('rsa4096', rsa.RSAPrivateKey, 'sha256'),  # slow: the only rsa4096 key of the suite
    ('ed25519', ed25519.Ed25519PrivateKey, None),
])
def test_create_every_key_type(tmp_path, pki, key_type, key_class, hash_name):
    action, result, dummy = plan_and_apply(tmp_path / 'ca', key_type=key_type)
    assert action == 'create'
    key_path, cert_path = ca_files(tmp_path / 'ca')
    key = pki.load_key(key_path)
    cert = pki.load_cert(cert_path)
    assert isinstance(key, key_class)
    assert crypto.key_type_of(key) == key_type
    assert crypto.key_type_of(cert.public_key()) == key_type
    assert result['key_type'] == key_type
    algorithm = cert.signature_hash_algorithm
    assert (algorithm.name if algorithm is not None else None) == hash_name
    assert crypto.signed_by(cert, cert)
    loaded = load_ca(str(tmp_path / 'ca'))
    assert crypto.key_matches_cert(loaded.key, loaded.cert)
    rc, output = pki.openssl_verify(cert_path, cert_path)
    assert rc == 0, output


# -- idempotence and adoption ---------------------------------------------------------------------------------------

def test_second_plan_does_nothing(tmp_path, pki):
    directory = tmp_path / 'ca'
    dummy, first, dummy2 = plan_and_apply(directory)
    before = pki.snapshot(directory)
    action, second, manager = plan_and_apply(directory)
    assert action is None
    assert second['changed'] is False
    assert second['action'] == 'none'
    assert second['serial'] == first['serial']
    assert second['fingerprint_sha256'] == first['fingerprint_sha256']
    assert manager.warnings == []
    assert pki.snapshot(directory) == before


def test_existing_ca_differing_from_request_is_kept_with_a_warning(tmp_path, pki):
    directory = tmp_path / 'ca'
    dummy, first, dummy2 = plan_and_apply(directory)
    before = pki.snapshot(directory)
    action, second, manager = plan_and_apply(directory, common_name='Another Name', key_type='rsa2048')
    assert action is None
    assert second['serial'] == first['serial']
    assert len(manager.warnings) == 1
    assert 'kept as it is' in manager.warnings[0]
    assert "common_name 'Internal Root CA'" in manager.warnings[0]
    assert 'key_type ec-p256' in manager.warnings[0]
    assert pki.snapshot(directory) == before


def _openssl(argv, cwd):
    proc = subprocess.run(argv, cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    assert proc.returncode == 0, proc.stdout.decode('utf-8', 'replace')


def make_openssl_ca(directory, variant, passphrase):
    """A CA the way the old shell scripts made it: openssl req -x509 (optionally an encrypted key)."""
    directory.mkdir()
    subject = ['-subj', '/O=Old Scripts/CN=Old Scripts CA', '-days', '3650']
    if variant == 'plain':
        _openssl(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca-key.pem',
                  '-out', 'ca-cert.pem'] + subject, directory)
    elif variant == 'pkcs8-encrypted':
        _openssl(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
                  '-passout', 'pass:' + passphrase, '-keyout', 'ca-key.pem', '-out', 'ca-cert.pem'] + subject,
                 directory)
    else:  # traditional "BEGIN RSA PRIVATE KEY" with Proc-Type: 4,ENCRYPTED
        _openssl(['openssl', 'genrsa', '-traditional', '-aes256', '-passout', 'pass:' + passphrase,
                  '-out', 'ca-key.pem', '2048'], directory)
        _openssl(['openssl', 'req', '-x509', '-new', '-key', 'ca-key.pem', '-passin', 'pass:' + passphrase,
                  '-out', 'ca-cert.pem'] + subject, directory)


@pytest.mark.parametrize('variant', ['plain', 'pkcs8-encrypted', 'traditional-encrypted'])
def test_adopts_a_ca_made_by_openssl_req_as_it_is(tmp_path, pki, variant):
    directory = tmp_path / 'ca'
    make_openssl_ca(directory, variant, pki.PASSPHRASE)
    before = pki.snapshot(directory)
    passphrase = None if variant == 'plain' else pki.PASSPHRASE
    action, result, manager = plan_and_apply(directory, passphrase=passphrase)
    assert action is None
    assert result['changed'] is False
    assert result['subject'] == 'CN=Old Scripts CA,O=Old Scripts'
    assert result['key_type'] == ('ec-p256' if variant == 'pkcs8-encrypted' else 'rsa2048')
    assert result['encrypted'] is (variant != 'plain')
    assert pki.snapshot(directory) == before, 'an adopted CA must be used as it is'
    assert any('kept as it is' in warning for warning in manager.warnings)
    assert all(pki.PASSPHRASE not in warning for warning in manager.warnings)
    if variant != 'plain':
        message = pki.expect_error(lambda: CaManager(str(directory), passphrase=pki.WRONG_PASSPHRASE).plan(),
                                   directory, ca_files(directory)[0], 'passphrase is wrong')
        assert 'cannot decrypt' in message


# -- passphrases ----------------------------------------------------------------------------------------------------

def test_passphrase_encrypts_the_key_and_loads_it(tmp_path, pki):
    directory = tmp_path / 'ca'
    dummy, result, dummy2 = plan_and_apply(directory, passphrase=pki.PASSPHRASE)
    key_path, cert_path = ca_files(directory)
    data = pki.read(key_path)
    assert b'BEGIN ENCRYPTED PRIVATE KEY' in data
    assert pki.PASSPHRASE.encode() not in data
    assert result['encrypted'] is True
    assert pki.PASSPHRASE not in repr(result)
    loaded = load_ca(str(directory), pki.PASSPHRASE)
    assert loaded.encrypted is True
    assert crypto.key_matches_cert(loaded.key, loaded.cert)
    assert crypto.key_matches_cert(pki.load_key(key_path, pki.PASSPHRASE), pki.load_cert(cert_path))
    action, again, dummy2 = plan_and_apply(directory, passphrase=pki.PASSPHRASE)
    assert action is None and again['serial'] == result['serial']


def test_wrong_passphrase(tmp_path, pki):
    directory = tmp_path / 'ca'
    plan_and_apply(directory, passphrase=pki.PASSPHRASE)
    key_path = ca_files(directory)[0]
    message = pki.expect_error(lambda: CaManager(str(directory), passphrase=pki.WRONG_PASSPHRASE).plan(),
                               directory, key_path, 'passphrase is wrong')
    assert 'cannot decrypt' in message


def test_missing_passphrase_for_encrypted_key(tmp_path, pki):
    directory = tmp_path / 'ca'
    plan_and_apply(directory, passphrase=pki.PASSPHRASE)
    message = pki.expect_error(lambda: CaManager(str(directory)).plan(), directory, ca_files(directory)[0],
                               'is encrypted', 'passphrase')
    assert 'give its passphrase' in message


def test_passphrase_given_for_unencrypted_key(tmp_path, pki):
    directory = tmp_path / 'ca'
    plan_and_apply(directory)
    pki.expect_error(lambda: CaManager(str(directory), passphrase=pki.PASSPHRASE).plan(), directory,
                     ca_files(directory)[0], 'is not encrypted but ca_passphrase was given')


def test_passphrase_for_unencrypted_key_names_encrypt_existing_key(tmp_path, pki):
    directory = tmp_path / 'ca'
    plan_and_apply(directory)
    message = pki.expect_error(lambda: CaManager(str(directory), passphrase=pki.PASSPHRASE).plan(), directory,
                               'omit ca_passphrase', 'encrypt_existing_key')
    assert pki.PASSPHRASE not in message


def test_encrypt_existing_key_encrypts_in_place_once(tmp_path, pki):
    """The way out of a CA key written unencrypted while a passphrase was meant: same key, same certificate."""
    directory = tmp_path / 'ca'
    _action, made, _manager = plan_and_apply(directory)
    key_path, cert_path = ca_files(directory)
    cert_before = pki.read(cert_path)
    before = pki.snapshot(tmp_path)
    check = CaManager(str(directory), passphrase=pki.PASSPHRASE, encrypt_existing_key=True)
    assert check.plan() == 'encrypt_key' and check.result()['changed'] is True
    assert pki.snapshot(tmp_path) == before, 'planning wrote'
    action, result, _manager = plan_and_apply(directory, passphrase=pki.PASSPHRASE, encrypt_existing_key=True)
    assert action == 'encrypt_key' and result['changed'] is True and result['encrypted'] is True
    assert b'ENCRYPTED' in pki.read(key_path) and pki.read(cert_path) == cert_before
    assert oct(os.stat(key_path).st_mode & 0o777) == '0o600'
    assert result['fingerprint_sha256'] == made['fingerprint_sha256']
    again = CaManager(str(directory), passphrase=pki.PASSPHRASE, encrypt_existing_key=True)
    assert again.plan() is None
    # Still the same key: it opens with the passphrase and matches the certificate.
    assert load_ca(str(directory), pki.PASSPHRASE).encrypted is True


def test_encrypt_existing_key_needs_a_strong_passphrase(tmp_path, pki):
    directory = tmp_path / 'ca'
    plan_and_apply(directory)
    before = pki.snapshot(tmp_path)
    pki.expect_error(lambda: CaManager(str(directory), passphrase='short', encrypt_existing_key=True).plan(),
                     directory, 'ca_passphrase')
    assert pki.snapshot(tmp_path) == before


def test_load_ca_names_the_option_of_the_caller(tmp_path, pki):
    directory = tmp_path / 'ca'
    plan_and_apply(directory, passphrase=pki.PASSPHRASE)
    pki.expect_error(lambda: load_ca(str(directory), passphrase_option='ca_passphrase'), directory,
                     'give its passphrase in ca_passphrase')


# -- broken CA directories --------------------------------------------------------------------------------------------

def test_key_not_matching_cert(tmp_path, pki):
    directory = tmp_path / 'ca'
    plan_and_apply(directory, passphrase=pki.PASSPHRASE)
    key_path, cert_path = ca_files(directory)
    other = ec.generate_private_key(ec.SECP256R1())
    pki.write(key_path, crypto.private_key_pem(other, pki.PASSPHRASE), 0o600)
    message = pki.expect_error(lambda: CaManager(str(directory), passphrase=pki.PASSPHRASE).plan(), directory,
                               key_path, cert_path, 'does not match')
    assert 'restore the matching pair' in message


@pytest.mark.parametrize('which', ['cert', 'key'])
@pytest.mark.parametrize('damage', ['garbage', 'truncated'])
def test_corrupt_pem(tmp_path, pki, which, damage):
    directory = tmp_path / 'ca'
    plan_and_apply(directory)
    key_path, cert_path = ca_files(directory)
    path = cert_path if which == 'cert' else key_path
    data = pki.read(path)
    if damage == 'garbage':
        damaged = b'this is not PEM at all\n'
    else:  # a whole PEM block (header, first body line, footer) around a cut body
        lines = data.splitlines(True)
        damaged = b''.join(lines[:2] + lines[-1:])
    pki.write(path, damaged, pki.mode_of(path))
    message = pki.expect_error(lambda: CaManager(str(directory)).plan(), directory, path)
    assert 'corrupt or truncated' in message


@pytest.mark.parametrize('missing', ['ca-key.pem', 'ca-cert.pem'])
def test_only_one_of_the_two_files(tmp_path, pki, missing):
    directory = tmp_path / 'ca'
    plan_and_apply(directory)
    os.unlink(str(directory / missing))
    present = 'ca-cert.pem' if missing == 'ca-key.pem' else 'ca-key.pem'
    message = pki.expect_error(lambda: CaManager(str(directory)).plan(), directory,
                               str(directory / present), str(directory / missing), 'is missing')
    assert 'force: true' in message


def test_expired_ca_is_refused(tmp_path, pki):
    directory = tmp_path / 'ca'
    now = pki.now()
    pki.hand_ca(directory, now - 400 * DAY, now - 10 * DAY)
    cert_path = ca_files(directory)[1]
    message = pki.expect_error(lambda: CaManager(str(directory), common_name='Hand Made CA').plan(), directory,
                               cert_path, 'expired on')
    assert 'force: true' in message
    loaded = load_ca(str(directory))
    pki.expect_error(lambda: check_ca_usable(loaded), directory, cert_path, 'expired on')


def test_not_a_ca_certificate(tmp_path, pki):
    directory = tmp_path / 'ca'
    now = pki.now()
    ca_key, ca_cert = pki.hand_ca(tmp_path / 'real', now - DAY, now + 100 * DAY)
    cert_path, key_path = pki.hand_leaf(directory, 'ca', ca_key, ca_cert, now - DAY, now + 50 * DAY)
    pki.expect_error(lambda: load_ca(str(directory)), directory, cert_path, 'not a CA certificate')


def test_load_ca_without_cert_names_the_directory(tmp_path, pki):
    directory = tmp_path / 'empty'
    directory.mkdir()
    pki.expect_error(lambda: load_ca(str(directory), dir_option='ca_dir'), tmp_path, str(directory),
                     'ca-cert.pem is missing', 'ca_dir')


# -- force, modes, unwritable -----------------------------------------------------------------------------------------

def test_force_replaces_and_retires_the_old_files(tmp_path, pki):
    directory = tmp_path / 'ca'
    dummy, first, dummy2 = plan_and_apply(directory)
    key_path, cert_path = ca_files(directory)
    old_key, old_cert = pki.read(key_path), pki.read(cert_path)
    now = pki.now()
    action, second, dummy2 = plan_and_apply(directory, force=True, now=now)
    assert action == 'replace'
    assert second['changed'] is True and second['action'] == 'replace'
    assert second['serial'] != first['serial']
    assert pki.read(key_path) != old_key and pki.read(cert_path) != old_cert
    assert pki.mode_of(key_path) == 0o600 and pki.mode_of(cert_path) == 0o644
    retired = directory / 'retired'
    assert pki.mode_of(retired) == 0o700
    stamp = now.strftime('%Y%m%dT%H%M%SZ')
    assert sorted(os.listdir(str(retired))) == ['%s-ca-cert.pem' % stamp, '%s-ca-key.pem' % stamp]
    assert pki.read(retired / ('%s-ca-key.pem' % stamp)) == old_key
    assert pki.read(retired / ('%s-ca-cert.pem' % stamp)) == old_cert
    assert crypto.key_matches_cert(pki.load_key(key_path), pki.load_cert(cert_path))


def test_force_twice_in_the_same_second_keeps_both_retired_cas(tmp_path, pki):
    directory = tmp_path / 'ca'
    plan_and_apply(directory)
    key_path, cert_path = ca_files(directory)
    now = pki.now()
    olds = [pki.read(cert_path)]
    plan_and_apply(directory, force=True, now=now)
    olds.append(pki.read(cert_path))
    plan_and_apply(directory, force=True, now=now)
    retired = directory / 'retired'
    names = sorted(os.listdir(str(retired)))
    assert len(names) == 4, names
    kept = set(pki.read(retired / name) for name in names if name.endswith('ca-cert.pem'))
    assert kept == set(olds), 'a retired CA was overwritten (never delete a CA)'


def test_force_replaces_an_expired_ca(tmp_path, pki):
    directory = tmp_path / 'ca'
    now = pki.now()
    pki.hand_ca(directory, now - 400 * DAY, now - 10 * DAY)
    action, result, dummy = plan_and_apply(directory, force=True)
    assert action == 'replace'
    assert result['days_remaining'] >= 3649
    assert len(os.listdir(str(directory / 'retired'))) == 2


def test_force_replaces_a_half_present_ca(tmp_path, pki):
    directory = tmp_path / 'ca'
    plan_and_apply(directory)
    os.unlink(ca_files(directory)[0])
    action, dummy, dummy2 = plan_and_apply(directory, force=True)
    assert action == 'replace'
    loaded = load_ca(str(directory))
    assert crypto.key_matches_cert(loaded.key, loaded.cert)
    assert [name[-len('ca-cert.pem'):] for name in os.listdir(str(directory / 'retired'))] == ['ca-cert.pem']


def test_readable_key_mode_is_fixed(tmp_path, pki):
    directory = tmp_path / 'ca'
    dummy, first, dummy2 = plan_and_apply(directory)
    key_path, cert_path = ca_files(directory)
    os.chmod(key_path, 0o644)
    data = pki.read(key_path), pki.read(cert_path)

    check = CaManager(str(directory))
    before = pki.snapshot(directory)
    assert check.plan() == 'fix_mode'
    assert check.result()['changed'] is True  # what check mode reports
    assert pki.snapshot(directory) == before

    action, result, dummy2 = plan_and_apply(directory)
    assert action == 'fix_mode'
    assert result['changed'] is True and result['action'] == 'fix_mode'
    assert result['serial'] == first['serial']
    assert pki.mode_of(key_path) == 0o600
    assert (pki.read(key_path), pki.read(cert_path)) == data
    assert plan_and_apply(directory)[0] is None


def test_plan_writes_nothing_for_a_new_ca(tmp_path, pki):
    before = pki.snapshot(tmp_path)
    manager = CaManager(str(tmp_path / 'new' / 'ca'))
    assert manager.plan() == 'create'
    result = manager.result()
    assert result['changed'] is True and result['action'] == 'create'
    assert 'serial' not in result
    assert pki.snapshot(tmp_path) == before


def test_unwritable_dir_under_a_regular_file(tmp_path, pki):
    blocker = tmp_path / 'blocker'
    pki.write(blocker, b'a regular file\n')
    directory = str(blocker / 'ca')
    message = pki.expect_error(lambda: plan_and_apply(directory, passphrase=pki.PASSPHRASE), tmp_path,
                               directory, str(blocker), 'not a directory')
    assert 'writable directory' in message


@pytest.mark.parametrize('country', ['DEU', 'D'])
def test_bad_country_code(tmp_path, pki, country):
    pki.expect_error(lambda: plan_and_apply(tmp_path / 'ca', subject_fields={'country': country}), tmp_path,
                     'country', repr(country))


@pytest.mark.parametrize('valid_days', [0, -1, None])
def test_valid_days_must_be_positive(tmp_path, pki, valid_days):
    pki.expect_error(lambda: plan_and_apply(tmp_path / 'ca', valid_days=valid_days), tmp_path,
                     'valid_days', repr(valid_days))


@pytest.mark.parametrize('kwargs, needles', [
    ({'key_type': 'dsa1024'}, ['key_type', "'dsa1024'"]),
    ({'path_length': -1}, ['path_length', '-1']),
    ({'common_name': ''}, ['common_name']),
])
def test_other_bad_requests(tmp_path, pki, kwargs, needles):
    pki.expect_error(lambda: plan_and_apply(tmp_path / 'ca', **kwargs), tmp_path, *needles)


def test_bad_request_on_an_existing_ca_changes_nothing(tmp_path, pki):
    directory = tmp_path / 'ca'
    plan_and_apply(directory)
    pki.expect_error(lambda: plan_and_apply(directory, force=True, valid_days=0), tmp_path, 'valid_days')


# -- renewing the CA certificate with the same key ----------------------------------------------------------------

def test_renew_keeps_key_and_subject_and_old_leaves_validate(tmp_path, pki):
    from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.leaf import LeafIssuer
    directory = str(tmp_path / 'ca')
    pki.make_ca(directory, passphrase=pki.PASSPHRASE, valid_days=100)
    old = load_ca(directory, pki.PASSPHRASE)
    out = str(tmp_path / 'issued')
    issuer = LeafIssuer(directory, [{'name': 'web1', 'dns': ['web1'], 'valid_days': 60}], ca_passphrase=pki.PASSPHRASE,
                        default_dir=out, renew_days=30)
    issuer.run()
    manager = CaManager(directory, passphrase=pki.PASSPHRASE, renew_days=10)
    assert manager.plan() is None  # 100 days left: not within 10
    manager = CaManager(directory, passphrase=pki.PASSPHRASE, renew_days=365, valid_days=3650)
    assert manager.plan() == 'renew'
    result = manager.apply()
    new = load_ca(directory, pki.PASSPHRASE)
    assert result['action'] == 'renew' and result['days_remaining'] >= 3649
    assert new.cert.subject == old.cert.subject and new.cert.serial_number != old.cert.serial_number
    assert crypto.public_key_der(new.key) == crypto.public_key_der(old.key)
    assert os.path.exists(result['previous_cert_path'])
    leaf = crypto.load_cert(open(os.path.join(out, 'web1-cert.pem'), 'rb').read(), 'web1')
    assert crypto.signed_by(leaf, new.cert)
    verify = subprocess.run(['openssl', 'verify', '-x509_strict', '-CAfile', os.path.join(directory, 'ca-cert.pem'),
                             os.path.join(out, 'web1-cert.pem')], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, check=False)
    assert verify.returncode == 0, verify.stdout
    again = CaManager(directory, passphrase=pki.PASSPHRASE, renew_days=365)
    assert again.plan() is None


def test_an_expired_ca_whose_key_is_sound_is_renewed_with_the_same_key(tmp_path, pki):
    """A fleet back from a long shutdown: renew_days renews even an expired CA certificate (with a warning), and
    the leaves it signed validate against the new one."""
    from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.leaf import LeafIssuer
    directory = tmp_path / 'ca'
    now = pki.now()
    ca_key, ca_cert = pki.hand_ca(directory, now - 400 * DAY, now - 10 * DAY)
    leaf_cert, dummy = pki.hand_leaf(tmp_path / 'issued', 'web1', ca_key, ca_cert, now - 300 * DAY, now - 20 * DAY)
    pki.expect_error(lambda: CaManager(str(directory), common_name='Hand Made CA').plan(), directory,
                     ca_files(directory)[1], 'expired on', 'renew_days')
    manager = CaManager(str(directory), common_name='Hand Made CA', renew_days=365, valid_days=3650)
    assert manager.plan() == 'renew'
    assert any('expired on' in warning for warning in manager.warnings)
    result = manager.apply()
    assert result['action'] == 'renew' and result['days_remaining'] >= 3649
    renewed = load_ca(str(directory))
    assert crypto.public_key_der(renewed.key) == crypto.public_key_der(ca_key)
    leaf = crypto.load_cert(open(str(leaf_cert), 'rb').read(), 'web1')
    assert crypto.signed_by(leaf, renewed.cert)
    check_ca_usable(renewed)
    LeafIssuer(str(directory), [{'name': 'web2', 'dns': ['web2'], 'valid_days': 90}],
               default_dir=str(tmp_path / 'new')).run()


def test_renew_with_a_wrong_passphrase_changes_nothing(tmp_path, pki):
    directory = str(tmp_path / 'ca')
    pki.make_ca(directory, passphrase=pki.PASSPHRASE, valid_days=100)
    before = pki.snapshot(directory)
    with pytest.raises(Exception) as caught:
        CaManager(directory, passphrase=pki.WRONG_PASSPHRASE, renew_days=365).plan()
    assert 'passphrase' in str(caught.value)
    assert pki.snapshot(directory) == before


# -- passphrase strength -------------------------------------------------------------------------------------------
# The PKCS#8 wrapping of the CA key is PBKDF2 with 2048 rounds: only a long passphrase makes a stolen key file safe.

SHORT_PASSPHRASE = 'Sh0rt-pass-15ch'  # 15 characters


@pytest.mark.parametrize('force', [False, True])
def test_a_new_ca_needs_a_passphrase_of_16_characters(tmp_path, pki, force):
    directory = tmp_path / 'ca'
    if force:
        pki.make_ca(directory)
    message = pki.expect_error(lambda: plan_and_apply(directory, passphrase=SHORT_PASSPHRASE, force=force), tmp_path,
                               'passphrase', '15 characters', 'at least 16')
    assert SHORT_PASSPHRASE not in message


def test_a_passphrase_of_16_characters_makes_a_ca(tmp_path, pki):
    action, result, dummy = plan_and_apply(tmp_path / 'ca', passphrase='Sixteen-chars-16')
    assert action == 'create' and result['encrypted'] is True


def test_an_existing_ca_with_a_short_passphrase_loads_with_a_warning(tmp_path, pki):
    directory = tmp_path / 'ca'
    key, dummy = pki.hand_ca(directory, crypto.utcnow() - DAY, crypto.utcnow() + 3650 * DAY)
    pki.write(ca_files(directory)[0], crypto.private_key_pem(key, SHORT_PASSPHRASE), 0o600)
    action, result, manager = plan_and_apply(directory, passphrase=SHORT_PASSPHRASE, common_name='Hand Made CA')
    assert action is None and result['changed'] is False and result['encrypted'] is True
    assert len(manager.warnings) == 1
    assert 'shorter than 16 characters' in manager.warnings[0] and SHORT_PASSPHRASE not in manager.warnings[0]
