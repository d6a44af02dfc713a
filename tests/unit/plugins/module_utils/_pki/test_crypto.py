# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""crypto.py helpers that must behave the same on cryptography 38 and the pinned release."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime

import pytest

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto

DAY = datetime.timedelta(days=1)


@pytest.mark.parametrize('value, expected', [
    ('web1', True), ('web1.example.com', True), ('*.example.com', True), ('example.com.', True),
    ('xn--bcher-kva.example', True), ('a' * 63 + '.example', True),
    ('', False), ('bad host', False), ('-web.example', False), ('web-.example', False), ('a' * 64, False),
    ('under_score', False), ('web.*.example', False), ('*', False),
    ('10.0.0.1', False), ('::1', False), ('fd00::1', False),
])
def test_is_hostname(value, expected):
    assert crypto.is_hostname(value) is expected


def test_ip_helpers():
    assert crypto.is_ip('10.0.0.1') and crypto.is_ip('fd00::0:1')
    assert not crypto.is_ip('10.0.0') and not crypto.is_ip('host')
    assert crypto.normalise_ip('FD00:0::1') == 'fd00::1'


def test_dates_work_without_not_valid_after_utc(tmp_path, pki):
    now = pki.now().replace(microsecond=0)
    key, cert = pki.hand_ca(tmp_path / 'ca', now - DAY, now + 10 * DAY)
    assert crypto.not_before(cert) == now - DAY
    assert crypto.not_after(cert) == now + 10 * DAY
    assert crypto.not_after(cert).tzinfo is not None
    assert crypto.days_remaining(cert, now) == 10
    assert crypto.days_remaining(cert, now + datetime.timedelta(seconds=1)) == 9
    assert crypto.days_remaining(cert, now + 11 * DAY) == -1
    assert crypto.iso8601(now) == now.strftime('%Y-%m-%dT%H:%M:%SZ')


@pytest.mark.parametrize('key_type', ['ec-p256', 'ec-p384', 'rsa2048', 'ed25519'])
def test_signed_by_checks_the_key_not_only_the_name(tmp_path, pki, key_type):
    now = pki.now()
    real = pki.make_ca(str(tmp_path / 'real'), common_name='Same Name', key_type=key_type).existing
    twin = pki.make_ca(str(tmp_path / 'twin'), common_name='Same Name', key_type=key_type).existing
    other = pki.make_ca(str(tmp_path / 'other'), common_name='Other Name', key_type=key_type).existing
    cert_path, dummy = pki.hand_leaf(tmp_path / 'leaf', 'web', real.key, real.cert, now - DAY, now + DAY)
    leaf = pki.load_cert(cert_path)
    assert crypto.signed_by(leaf, real.cert)
    assert not crypto.signed_by(leaf, twin.cert)
    assert not crypto.signed_by(leaf, other.cert)


def test_load_cert_bundle(tmp_path, pki):
    one = pki.make_ca(str(tmp_path / 'one')).existing
    two = pki.make_ca(str(tmp_path / 'two')).existing
    data = b'# trust bundle\r\n' + one.cert_pem.replace(b'\n', b'\r\n') + b'\n' + two.cert_pem
    certs = crypto.load_cert_bundle(data, 'bundle.pem')
    assert [c.serial_number for c in certs] == [one.cert.serial_number, two.cert.serial_number]


def test_private_key_round_trip_and_passphrase_errors(pki):
    key = crypto.generate_key('ec-p256')
    plain = crypto.private_key_pem(key)
    encrypted = crypto.private_key_pem(key, pki.PASSPHRASE)
    assert crypto.key_matches_cert(crypto.load_private_key(plain, 'k.pem'), _self_signed(key))
    assert crypto.key_matches_cert(crypto.load_private_key(encrypted, 'k.pem', pki.PASSPHRASE), _self_signed(key))
    for data, passphrase, needle in [
        (encrypted, None, 'k.pem is encrypted; give its passphrase in passphrase'),
        (encrypted, pki.WRONG_PASSPHRASE, 'cannot decrypt k.pem: passphrase is wrong'),
        (plain, pki.PASSPHRASE, 'k.pem is not encrypted but passphrase was given'),
        (b'junk', None, 'k.pem is not a valid PEM private key'),
    ]:
        with pytest.raises(crypto.PkiError) as caught:
            crypto.load_private_key(data, 'k.pem', passphrase)
        assert needle in str(caught.value)
        assert pki.PASSPHRASE not in str(caught.value) and pki.WRONG_PASSPHRASE not in str(caught.value)


def _self_signed(key):
    now = crypto.utcnow()
    name = crypto.build_name('x')
    builder = (crypto.x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(crypto.random_serial()).not_valid_before(now).not_valid_after(now + DAY))
    return crypto.sign(builder, key)
