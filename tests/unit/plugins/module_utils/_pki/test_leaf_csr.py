# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pki_leaf with keys born on their hosts (certs[].csr): real requests made with cryptography, real files, openssl.

The control node signs the host's public key, never holds the key, and refuses a request that asks for anything
but the host's own subject and names, before any file is written."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import ipaddress
import json
import os

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError


def host_key():
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(key, common_name='web1.example.com', dns=('web1.example.com', 'web1'), ips=(), signer=None):
    names = [x509.DNSName(name) for name in dns] + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signer or key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def tampered(csr_pem):
    """The same request with one bit of its signature flipped."""
    der = bytearray(x509.load_pem_x509_csr(csr_pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01
    body = __import__('base64').encodebytes(bytes(der)).decode()
    return '-----BEGIN CERTIFICATE REQUEST-----\n%s-----END CERTIFICATE REQUEST-----\n' % body


def entry(csr, name='web1', **kwargs):
    value = {'name': name, 'dns': ['%s.example.com' % name, name], 'csr': csr}
    value.update(kwargs)
    return value


def issued_key_der(out_dir, name='web1'):
    with open(os.path.join(out_dir, '%s-cert.pem' % name), 'rb') as handle:
        cert = x509.load_pem_x509_certificate(handle.read())
    return crypto.public_key_der(cert.public_key())


def metadata(ca_dir):
    with open(os.path.join(ca_dir, 'metadata.json')) as handle:
        return json.load(handle)


def test_the_certificate_is_issued_for_the_hosts_key_and_no_key_is_written(ca_dir, out_dir, pki):
    key = host_key()
    issuer, results = pki.issue(ca_dir, [entry(make_csr(key))], default_dir=out_dir)
    assert results['web1']['action'] == 'issue'
    assert issued_key_der(out_dir) == crypto.public_key_der(key)
    assert sorted(os.listdir(out_dir)) == ['web1-bundle.pem', 'web1-cert.pem']
    assert metadata(ca_dir)['certs']['web1']['key_path'] is None
    assert pki.openssl_verify(os.path.join(ca_dir, 'ca-cert.pem'), os.path.join(out_dir, 'web1-cert.pem'),
                              'sslserver')[0] == 0


def test_a_rerun_keeps_it_with_the_same_request_or_a_new_one_for_the_same_key(ca_dir, out_dir, pki):
    key = host_key()
    csr = make_csr(key)
    dummy, first = pki.issue(ca_dir, [entry(csr)], default_dir=out_dir)
    before = pki.snapshot(out_dir)
    dummy, again = pki.issue(ca_dir, [entry(csr)], default_dir=out_dir)
    assert again['web1']['action'] == 'none' and again['web1']['serial'] == first['web1']['serial']
    # ECDSA signs with a random nonce: the same key makes other request bytes. Checked in full, still kept.
    dummy, other_bytes = pki.issue(ca_dir, [entry(make_csr(key))], default_dir=out_dir)
    assert other_bytes['web1']['action'] == 'none' and other_bytes['web1']['serial'] == first['web1']['serial']
    assert pki.snapshot(out_dir) == before


def test_a_new_key_from_the_host_is_certified_at_once(ca_dir, out_dir, pki):
    pki.issue(ca_dir, [entry(make_csr(host_key()))], default_dir=out_dir)
    new_key = host_key()
    dummy, results = pki.issue(ca_dir, [entry(make_csr(new_key))], default_dir=out_dir)
    assert results['web1']['action'] == 'issue' and results['web1']['reason'] == 'new key from the host'
    assert issued_key_der(out_dir) == crypto.public_key_der(new_key)


def test_renewal_and_force_keep_the_hosts_key(ca_dir, out_dir, pki):
    key = host_key()
    csr = make_csr(key)
    dummy, first = pki.issue(ca_dir, [entry(csr, valid_hours=24)], default_dir=out_dir)
    due = crypto.parse_iso8601(first['web1']['renew_at']) + datetime.timedelta(minutes=1)
    dummy, renewed = pki.issue(ca_dir, [entry(csr, valid_hours=24)], default_dir=out_dir, now=due)
    assert renewed['web1']['action'] == 'issue' and renewed['web1']['reason'].startswith('due for renewal')
    assert issued_key_der(out_dir) == crypto.public_key_der(key)
    dummy, forced = pki.issue(ca_dir, [entry(csr, valid_hours=24)], default_dir=out_dir, force=True)
    assert forced['web1']['action'] == 'issue' and forced['web1']['serial'] != renewed['web1']['serial']
    assert issued_key_der(out_dir) == crypto.public_key_der(key)


def test_moving_a_central_key_to_its_host_removes_it_from_the_control_node(ca_dir, out_dir, pki):
    dummy, central = pki.issue(ca_dir, [{'name': 'web1', 'dns': ['web1.example.com', 'web1']}], default_dir=out_dir)
    key_path = os.path.join(out_dir, 'web1-key.pem')
    with open(key_path, 'rb') as handle:
        shipped = serialization.load_pem_private_key(handle.read(), None)
    # The host keeps the key it was shipped (a fleet switching on host keys): same certificate, key file removed.
    dummy, moved = pki.issue(ca_dir, [entry(make_csr(shipped))], default_dir=out_dir)
    assert moved['web1']['action'] == 'update' and moved['web1']['serial'] == central['web1']['serial']
    assert 'removed from the control node' in moved['web1']['reason']
    assert not os.path.lexists(key_path)
    dummy, again = pki.issue(ca_dir, [entry(make_csr(shipped))], default_dir=out_dir)
    assert again['web1']['action'] == 'none'
    # A key file put back by hand beside a host-key certificate is removed again; a new host key re-issues.
    pki.issue(ca_dir, [{'name': 'web2', 'dns': ['web2.example.com', 'web2']}], default_dir=out_dir)
    dummy, rotated = pki.issue(ca_dir, [entry(make_csr(host_key(), 'web2.example.com', ('web2.example.com', 'web2')),
                                              name='web2')], default_dir=out_dir)
    assert rotated['web2']['action'] == 'issue' and not os.path.lexists(os.path.join(out_dir, 'web2-key.pem'))


@pytest.mark.parametrize('make, needles', [
    (lambda key: make_csr(key, dns=('web1.example.com', 'web1', 'redis1')), ['asks for redis1, not given to it']),
    (lambda key: make_csr(key, dns=('web1.example.com', 'web1', '*.example.com')), ['asks for *.example.com']),
    (lambda key: make_csr(key, dns=('web1.example.com', 'web1'), ips=('10.0.0.9',)), ['asks for 10.0.0.9']),
    (lambda key: make_csr(key, dns=('web1.example.com',)), ['leaves out web1']),
    (lambda key: make_csr(key, common_name='redis1.example.com'),
     ["subject 'CN=redis1.example.com'", "'CN=web1.example.com'"]),
    (lambda key: make_csr(rsa.generate_private_key(65537, 2048)), ['carries a rsa2048 key', 'ec-p256']),
    (lambda key: make_csr(ec.generate_private_key(ec.SECP521R1())), ['carries a EC secp521r1 key']),
    (lambda key: tampered(make_csr(key)), ['signature does not verify']),
    (lambda key: '-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n',
     ['not a PEM certificate request']),
    (lambda key: 'a key, not a request', ['csr must be a PEM certificate request']),
])
def test_a_request_for_anything_else_is_refused_before_any_write(ca_dir, out_dir, pki, tmp_path, make, needles):
    good = make_csr(host_key(), 'good.example.com', ('good.example.com',))
    certs = [{'name': 'good', 'dns': ['good.example.com'], 'csr': good}, entry(make(host_key()))]
    before = pki.snapshot(tmp_path)
    with pytest.raises(PkiError) as caught:
        pki.issue(ca_dir, certs, default_dir=out_dir)
    message = str(caught.value)
    assert 'web1' in message, message
    for needle in needles:
        assert needle in message, message
    if 'csr must be' not in message:
        assert 'refused: a host may ask only for the subject and names the inventory gives it' in message
    assert pki.snapshot(tmp_path) == before


def test_a_refused_request_on_a_rerun_changes_nothing(ca_dir, out_dir, pki, tmp_path):
    key = host_key()
    pki.issue(ca_dir, [entry(make_csr(key))], default_dir=out_dir)
    before = pki.snapshot(tmp_path)
    with pytest.raises(PkiError, match='asks for redis1'):
        pki.issue(ca_dir, [entry(make_csr(key, dns=('web1.example.com', 'web1', 'redis1')))], default_dir=out_dir)
    assert pki.snapshot(tmp_path) == before


def test_check_mode_checks_the_request_and_writes_nothing(ca_dir, out_dir, pki, tmp_path):
    before = pki.snapshot(tmp_path)
    dummy, results = pki.issue(ca_dir, [entry(make_csr(host_key()))], default_dir=out_dir, check_mode=True)
    assert results['web1']['action'] == 'issue' and pki.snapshot(tmp_path) == before
    with pytest.raises(PkiError, match='asks for redis1'):
        pki.issue(ca_dir, [entry(make_csr(host_key(), dns=('web1.example.com', 'web1', 'redis1')))],
                  default_dir=out_dir, check_mode=True)


def test_with_skip_a_refused_request_is_left_out_and_the_others_issued(ca_dir, out_dir, pki, tmp_path):
    good = make_csr(host_key(), 'good.example.com', ('good.example.com',))
    bad = make_csr(host_key(), dns=('web1.example.com', 'web1', 'redis1\n\x1b[2Jrevoke worker7'))
    certs = [{'name': 'good', 'dns': ['good.example.com'], 'csr': good}, entry(bad)]
    issuer, results = pki.issue(ca_dir, certs, default_dir=out_dir, skip_refused=True)
    assert results['good']['action'] == 'issue'
    assert results['web1']['action'] == 'refused' and results['web1']['changed'] is False
    # What the host asked for is printed escaped: no newline or escape sequence of its own reaches the log.
    reason = results['web1']['reason']
    assert 'asks for redis1\\n\\x1b[2jrevoke worker7, not given to it' in reason and '\n' not in reason
    assert not os.path.exists(os.path.join(out_dir, 'web1-cert.pem'))


def test_a_key_on_a_revoked_serial_is_never_certified_again(ca_dir, out_dir, pki, tmp_path):
    """Revoking an older serial revokes the key it was issued for: a host's key outlives its certificates. (Which
    hosts must then make a new key: tests/unit/plugins/filter, fleet_revoked_key_names.)"""
    from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.crl import CrlManager
    key = host_key()
    csr = make_csr(key)
    dummy, first = pki.issue(ca_dir, [entry(csr)], default_dir=out_dir)
    dummy, second = pki.issue(ca_dir, [entry(csr)], default_dir=out_dir, force=True)  # same key, new serial
    old = first['web1']['serial']
    manager = CrlManager(ca_dir, revoke_serials=[old])
    manager.plan()
    manager.apply()
    record = metadata(ca_dir)['certs']['web1']
    assert [item['public_key_sha256'] for item in record['history']] == [record['public_key_sha256']] * 2
    before = pki.snapshot(tmp_path)
    with pytest.raises(PkiError, match='carries the key of revoked serial %s' % old):
        pki.issue(ca_dir, [entry(make_csr(key))], default_dir=out_dir, force=True)
    assert pki.snapshot(tmp_path) == before
    # A new key from the host: certified.
    dummy, third = pki.issue(ca_dir, [entry(make_csr(host_key()))], default_dir=out_dir)
    assert third['web1']['action'] == 'issue'
    assert metadata(ca_dir)['certs']['web1']['public_key_sha256'] != record['public_key_sha256']
