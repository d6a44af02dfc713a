# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""CRL and revocation backend with real CAs, real files and openssl verify -crl_check."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import json
import os
import subprocess

import pytest

from cryptography import x509

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.crl import CrlManager, normalise_serial
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError

DAY = datetime.timedelta(days=1)


def crl_run(ca_dir, check_mode=False, **kwargs):
    manager = CrlManager(ca_dir, **kwargs)
    manager.plan()
    return manager.result() if check_mode else manager.apply()


def issue_two(pki, ca_dir, out_dir):
    dummy, results = pki.issue(ca_dir, [{'name': 'web1', 'dns': ['web1']}, {'name': 'web2', 'dns': ['web2']}],
                               default_dir=out_dir)
    return results['web1']['serial'], results['web2']['serial']


def openssl_verify(ca_dir, cert_path):
    return subprocess.run(['openssl', 'verify', '-crl_check', '-CRLfile', os.path.join(ca_dir, 'crl.pem'),
                           '-CAfile', os.path.join(ca_dir, 'ca-cert.pem'), cert_path],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False)


def test_first_crl_is_empty_signed_and_then_unchanged(ca_dir):
    check = crl_run(ca_dir, check_mode=True)
    assert check['changed'] is True and check['resign_reason'] == 'missing'
    assert not os.path.exists(os.path.join(ca_dir, 'crl.pem'))
    made = crl_run(ca_dir)
    assert made['changed'] is True and made['crl_number'] == 1 and made['revoked'] == []
    crl = x509.load_pem_x509_crl(open(made['crl_path'], 'rb').read())
    ca_cert = x509.load_pem_x509_certificate(open(os.path.join(ca_dir, 'ca-cert.pem'), 'rb').read())
    assert crl.is_signature_valid(ca_cert.public_key()) and len(list(crl)) == 0
    assert oct(os.stat(made['crl_path']).st_mode & 0o777) == '0o644'
    again = crl_run(ca_dir)
    assert again['changed'] is False and again['resign_reason'] is None and again['crl_number'] == 1


def test_revoke_by_name_and_serial_then_openssl_refuses_only_those(pki, ca_dir, out_dir):
    serial1, serial2 = issue_two(pki, ca_dir, out_dir)
    crl_run(ca_dir)
    check = crl_run(ca_dir, check_mode=True, revoke_names=['web1'])
    assert check['changed'] is True and check['revoked_now'] == [serial1]
    assert json.load(open(os.path.join(ca_dir, 'revoked.json')))['revoked'] == []
    result = crl_run(ca_dir, revoke_names=['web1'], reason='key_compromise')
    assert result['revoked_now'] == [serial1] and result['crl_number'] == 2
    assert 'certificate revoked' in openssl_verify(ca_dir, os.path.join(out_dir, 'web1-cert.pem')).stdout
    assert openssl_verify(ca_dir, os.path.join(out_dir, 'web2-cert.pem')).returncode == 0
    # The same serial again, in another spelling: nothing to do.
    spelled = ':'.join(serial1[i:i + 2] for i in range(0, len(serial1), 2)).lower()
    again = crl_run(ca_dir, revoke_serials=[spelled])
    assert again['changed'] is False and again['revoked_now'] == []
    second = crl_run(ca_dir, revoke_serials=[serial2])
    assert sorted(second['revoked_now']) == [serial2]
    assert sorted(entry['serial'] for entry in second['revoked']) == sorted([serial1, serial2])
    assert [entry['reason'] for entry in second['revoked']] == ['key_compromise', 'unspecified']


def test_revoked_leaf_is_reissued_by_pki_leaf(pki, ca_dir, out_dir):
    serial1 = issue_two(pki, ca_dir, out_dir)[0]
    crl_run(ca_dir, revoke_names=['web1'])
    dummy, results = pki.issue(ca_dir, [{'name': 'web1', 'dns': ['web1']}, {'name': 'web2', 'dns': ['web2']}],
                               default_dir=out_dir)
    assert results['web1']['changed'] is True and results['web1']['reason'] == 'revoked'
    assert results['web1']['serial'] != serial1
    assert results['web2']['changed'] is False


def test_resigned_at_half_validity_only(ca_dir):
    now = crypto.utcnow()
    crl_run(ca_dir, crl_days=10, now=now)
    early = crl_run(ca_dir, crl_days=10, now=now + 4 * DAY)
    assert early['changed'] is False
    half = crl_run(ca_dir, crl_days=10, now=now + 5 * DAY + datetime.timedelta(minutes=10))
    assert half['changed'] is True and half['resign_reason'] == 'half its validity passed'
    assert half['crl_number'] == 2


def test_crl_of_another_ca_is_replaced(pki, ca_dir, tmp_path):
    other = str(tmp_path / 'other')
    pki.make_ca(other)
    crl_run(other)
    os.rename(os.path.join(other, 'crl.pem'), os.path.join(ca_dir, 'crl.pem'))
    result = crl_run(ca_dir)
    assert result['changed'] is True and result['resign_reason'] == 'not signed by the current CA'


@pytest.mark.parametrize('kwargs, words', [
    ({'revoke_names': ['nobody']}, "no certificate named 'nobody'"),
    ({'revoke_serials': ['ABCDEF']}, 'serial ABCDEF was not issued'),
    ({'revoke_serials': ['xyz']}, 'not a hexadecimal serial'),
    ({'reason': 'bored'}, 'reason must be one of'),
    ({'crl_days': 1}, 'crl_days must be at least 2'),
])
def test_bad_input_is_refused_and_writes_nothing(pki, ca_dir, out_dir, kwargs, words):
    issue_two(pki, ca_dir, out_dir)
    before = pki.snapshot(ca_dir)
    with pytest.raises(PkiError) as caught:
        crl_run(ca_dir, **kwargs)
    assert words in str(caught.value)
    assert pki.snapshot(ca_dir) == before


def test_encrypted_ca_needs_its_passphrase_only_to_sign(pki, tmp_path):
    ca_dir = str(tmp_path / 'ca')
    pki.make_ca(ca_dir, passphrase=pki.PASSPHRASE)
    check = crl_run(ca_dir, check_mode=True)
    assert check['changed'] is True
    with pytest.raises(PkiError) as caught:
        crl_run(ca_dir, passphrase=pki.WRONG_PASSPHRASE)
    assert 'passphrase' in str(caught.value)
    assert not os.path.exists(os.path.join(ca_dir, 'crl.pem'))
    made = crl_run(ca_dir, passphrase=pki.PASSPHRASE)
    assert made['changed'] is True


def test_normalise_serial():
    assert normalise_serial('0x00ab:cd') == 'ABCD'
    assert normalise_serial(' 4f2A ') == '4F2A'


def test_revoking_a_name_revokes_every_unexpired_serial_of_its_history(pki, ca_dir, out_dir, tmp_path):
    """The cert a name had before its last re-issue may still be on a host: it is revoked too."""
    dummy, first = pki.issue(ca_dir, [{'name': 'web1', 'dns': ['web1']}], default_dir=out_dir)
    previous = str(tmp_path / 'previous-web1-cert.pem')
    pki.write(previous, pki.read(os.path.join(out_dir, 'web1-cert.pem')))
    dummy, second = pki.issue(ca_dir, [{'name': 'web1', 'dns': ['web1']}], default_dir=out_dir, force=True)
    assert first['web1']['serial'] != second['web1']['serial']
    # An expired serial in the history is left out of the CRL: no client accepts it anyway.
    metadata_path = os.path.join(ca_dir, 'metadata.json')
    data = json.load(open(metadata_path))
    data['certs']['web1']['history'].insert(0, {'serial': 'ABC123', 'not_after': '2001-01-01T00:00:00Z'})
    pki.write(metadata_path, json.dumps(data).encode())
    crl_run(ca_dir)

    result = crl_run(ca_dir, revoke_names=['web1'])
    assert sorted(result['revoked_now']) == sorted([first['web1']['serial'], second['web1']['serial']])
    assert set(entry['name'] for entry in result['revoked']) == set(['web1'])
    assert 'certificate revoked' in openssl_verify(ca_dir, previous).stdout
    assert 'certificate revoked' in openssl_verify(ca_dir, os.path.join(out_dir, 'web1-cert.pem')).stdout
    crl = x509.load_pem_x509_crl(pki.read(os.path.join(ca_dir, 'crl.pem')))
    assert crl.get_revoked_certificate_by_serial_number(int(first['web1']['serial'], 16)) is not None
    assert crl.get_revoked_certificate_by_serial_number(0xABC123) is None
    again = crl_run(ca_dir, revoke_names=['web1'])
    assert again['changed'] is False and again['revoked_now'] == []
