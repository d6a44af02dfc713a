# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A CA key in a PKCS#11 token (SoftHSM2, real): made and found by label, signing certificates and CRLs that
cryptography builds and openssl verifies, never readable, every failure named without the PIN."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import subprocess

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto, hsm
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.ca import build_ca_cert
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def spec(softhsm, token, key_label='root-ca'):
    return hsm.TokenSpec(softhsm['module'], token, key_label)


def name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def pem(obj):
    return obj.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def token(softhsm):
    return softhsm['new_token']()


@pytest.mark.parametrize('key_type', ['ec-p256', 'ec-p384', 'rsa3072'])
def test_a_key_made_in_the_token_signs_a_ca_and_a_crl_openssl_verifies(softhsm, token, tmp_path, key_type):
    key = hsm.open_key(spec(softhsm, token), softhsm['pin'], 'unit', create_key_type=key_type)
    assert key.key_type == key_type
    cert = build_ca_cert(key, name('Token Root'), 365, None, NOW)
    assert crypto.key_type_of(cert.public_key()) == key_type
    assert cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
        == crypto.public_key_der(key)
    (tmp_path / 'root.pem').write_bytes(pem(cert))
    check = subprocess.run(['openssl', 'verify', '-x509_strict', '-check_ss_sig', '-CAfile', str(tmp_path / 'root.pem'),
                            str(tmp_path / 'root.pem')], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, check=False)
    assert check.returncode == 0, check.stdout
    crl = crypto.sign(x509.CertificateRevocationListBuilder().issuer_name(cert.subject).last_update(NOW)
                      .next_update(NOW + datetime.timedelta(days=1)), key)
    assert crl.is_signature_valid(cert.public_key())
    (tmp_path / 'crl.pem').write_bytes(pem(crl))
    check = subprocess.run(['openssl', 'crl', '-noout', '-CAfile', str(tmp_path / 'root.pem'), '-in',
                            str(tmp_path / 'crl.pem')], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, check=False)
    assert check.returncode == 0 and 'verify OK' in check.stdout, check.stdout
    assert crypto.key_signs_for(key, cert.public_key())
    key.close()


def test_the_key_is_found_again_by_label_and_its_private_part_cannot_be_read(softhsm, token):
    made = hsm.open_key(spec(softhsm, token), softhsm['pin'], 'unit', create_key_type='ec-p256')
    public = crypto.public_key_der(made)
    made.close()
    found = hsm.open_key(spec(softhsm, token), softhsm['pin'], 'unit')
    assert crypto.public_key_der(found) == public
    import pkcs11
    from pkcs11 import Attribute
    with pytest.raises(pkcs11.exceptions.AttributeSensitive):
        found._private[Attribute.VALUE]  # pylint: disable=protected-access,pointless-statement
    assert found._private[Attribute.EXTRACTABLE] is False  # pylint: disable=protected-access
    assert found._private[Attribute.NEVER_EXTRACTABLE] is True  # pylint: disable=protected-access
    found.close()


def test_a_key_label_the_token_lacks_is_refused_unless_it_is_to_be_made(softhsm, token):
    with pytest.raises(PkiError, match=r"the token '%s' has no key pair labelled 'missing'; correct "
                                       r"pkcs11.key_label" % token):
        hsm.open_key(spec(softhsm, token, 'missing'), softhsm['pin'], 'unit')


def test_a_key_of_another_type_under_the_label_is_refused(softhsm, token):
    hsm.open_key(spec(softhsm, token), softhsm['pin'], 'unit', create_key_type='ec-p256').close()
    with pytest.raises(PkiError, match='already holds a ec-p256 key labelled .root-ca., not rsa3072'):
        hsm.open_key(spec(softhsm, token), softhsm['pin'], 'unit', create_key_type='rsa3072')


def test_a_wrong_pin_is_named_and_never_shown(softhsm, token):
    with pytest.raises(PkiError) as caught:
        hsm.open_key(spec(softhsm, token), 'not-the-pin-Q7x', 'unit', create_key_type='ec-p256')
    assert 'the PIN is wrong (PinIncorrect)' in str(caught.value)
    assert 'not-the-pin-Q7x' not in str(caught.value) and softhsm['pin'] not in str(caught.value)


def test_an_unknown_token_label_lists_the_tokens_there(softhsm, token):
    with pytest.raises(PkiError, match=r"no PKCS#11 token labelled 'no-such-token' .*tokens there: .*'%s'" % token):
        hsm.open_key(spec(softhsm, 'no-such-token'), softhsm['pin'], 'unit')


@pytest.mark.parametrize('module, token_label, key_label, pin, message', [
    ('/nonexistent/libpkcs11.so', 't', 'k', 'pin', 'pkcs11.module /nonexistent/libpkcs11.so is not a file'),
    ('libsofthsm2.so', 't', 'k', 'pin', 'pkcs11.module libsofthsm2.so is not a file; give the absolute path'),
    (None, 't', 'k', 'pin', 'pkcs11.module is empty'),
    ('/usr/lib/softhsm/libsofthsm2.so', 't' * 33, 'k', 'pin', 'longer than the 32 bytes PKCS#11 allows'),
    ('/usr/lib/softhsm/libsofthsm2.so', 't', '', 'pin', 'pkcs11.key_label is empty'),
    ('/usr/lib/softhsm/libsofthsm2.so', 't', 'k', '', 'ca_passphrase is empty'),
])
def test_an_incomplete_request_is_refused_before_the_token_is_opened(module, token_label, key_label, pin, message):
    with pytest.raises(PkiError, match=message):
        hsm.open_key(hsm.TokenSpec(module, token_label, key_label), pin, 'unit')


def test_ed25519_cannot_be_made_in_a_token(softhsm, token):
    with pytest.raises(PkiError, match='key_type ed25519 cannot be made in a PKCS#11 token'):
        hsm.open_key(spec(softhsm, token), softhsm['pin'], 'unit', create_key_type='ed25519')


def test_a_signature_that_does_not_verify_is_refused(softhsm, token):
    """The token key of another label signs: the assembled certificate does not verify with the public key the
    builder trusts, and sign() refuses it rather than hand out a broken CA."""
    key = hsm.open_key(spec(softhsm, token), softhsm['pin'], 'unit', create_key_type='ec-p256')
    other = hsm.open_key(spec(softhsm, token, 'other'), softhsm['pin'], 'unit', create_key_type='ec-p256')
    key._private = other._private  # pylint: disable=protected-access
    with pytest.raises(PkiError, match='does not verify with its public key'):
        build_ca_cert(key, name('Token Root'), 365, None, NOW)
    assert not crypto.key_signs_for(key, key.public_key())


def test_a_crl_longer_than_64_kib_is_assembled_and_verifies(softhsm, token):
    """DER lengths of three octets: a CRL of 3000 revoked serials (over 100 KB) signed through the token."""
    key = hsm.open_key(spec(softhsm, token), softhsm['pin'], 'unit', create_key_type='ec-p256')
    builder = x509.CertificateRevocationListBuilder().issuer_name(name('Token Root')).last_update(NOW) \
        .next_update(NOW + datetime.timedelta(days=1))
    for serial in range(1, 3001):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial << 100).revocation_date(NOW).build())
    crl = crypto.sign(builder, key)
    der = crl.public_bytes(serialization.Encoding.DER)
    assert len(der) > 65536 and der[1] == 0x83
    assert crl.is_signature_valid(key.public_key()) and len(crl) == 3000
    tbs, algorithm, signature = crypto.split_signed(der)
    assert crypto.join_signed(tbs, algorithm, signature[3:] if signature[1] < 0x80 else signature[4:]) == der


@pytest.mark.parametrize('der', [b'', b'\x30', b'\x30\x05\x30\x00', b'\x31\x00', b'\x30\x84\xff\xff\xff\xff',
                                 b'\x30\x06\x30\x00\x30\x00\x04\x00'])
def test_a_signed_structure_that_is_not_one_is_refused(der):
    with pytest.raises(ValueError):
        crypto.split_signed(der)
