# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pki_leaf backend: LeafIssuer and parse_requests with real keys, real files and openssl."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import hashlib
import ipaddress
import json
import multiprocessing
import os
import subprocess

import pytest

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto, files, store
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.ca import CaManager, load_ca
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.leaf import (
    LeafIssuer, _parse_recorded_time, build_leaf_cert, parse_requests)

DAY = datetime.timedelta(days=1)
SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH


def entry(name='web1', **kwargs):
    value = {'name': name, 'dns': ['%s.example.com' % name, name]}
    value.update(kwargs)
    return value


def paths(out_dir, name='web1'):
    return tuple(os.path.join(out_dir, '%s-%s.pem' % (name, kind)) for kind in ('key', 'cert', 'bundle'))


def metadata(ca_dir):
    with open(os.path.join(ca_dir, 'metadata.json')) as handle:
        return json.load(handle)


def ca_cert_path(ca_dir):
    return os.path.join(ca_dir, 'ca-cert.pem')


# -- issuing -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('usage, ekus, good, bad', [
    ('server', [SERVER], ['sslserver'], ['sslclient']),
    ('client', [CLIENT], ['sslclient'], ['sslserver']),
    ('both', [SERVER, CLIENT], ['sslserver', 'sslclient'], []),
])
def test_issue_per_usage(ca_dir, out_dir, pki, usage, ekus, good, bad):
    issuer, results = pki.issue(ca_dir, [entry(usage=usage, ip=['10.0.0.7'])], default_dir=out_dir)
    result = results['web1']
    assert issuer.changed is True
    assert result['changed'] is True and result['action'] == 'issue'
    assert result['reason'] == 'missing: web1-cert.pem, web1-key.pem'
    key_path, cert_path, bundle_path = paths(out_dir)
    assert pki.mode_of(key_path) == 0o600
    assert pki.mode_of(cert_path) == 0o644
    assert pki.mode_of(bundle_path) == 0o644

    cert = pki.load_cert(cert_path)
    ca = pki.load_cert(ca_cert_path(ca_dir))
    assert crypto.key_matches_cert(pki.load_key(key_path), cert)
    assert crypto.signed_by(cert, ca)
    assert cert.issuer == ca.subject
    assert crypto.common_name(cert) == 'web1.example.com'

    constraints = pki.ext(cert, x509.BasicConstraints)
    assert constraints.critical is True and constraints.value.ca is False
    key_usage = pki.ext(cert, x509.KeyUsage)
    assert key_usage.critical is True
    assert key_usage.value.digital_signature is True
    assert key_usage.value.key_encipherment is False  # EC key
    assert key_usage.value.key_cert_sign is False
    assert list(pki.ext(cert, x509.ExtendedKeyUsage).value) == ekus
    san = pki.ext(cert, x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == ['web1', 'web1.example.com']
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address('10.0.0.7')]
    assert crypto.common_name(cert) in san.get_values_for_type(x509.DNSName)
    ski = pki.ext(cert, x509.SubjectKeyIdentifier).value
    assert ski.digest == x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
    aki = pki.ext(cert, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == pki.ext(ca, x509.SubjectKeyIdentifier).value.digest
    assert aki.authority_cert_issuer is None
    assert aki.authority_cert_serial_number is None
    assert cert.serial_number.bit_length() >= 64
    assert cert.serial_number != ca.serial_number

    assert pki.read(bundle_path) == pki.read(cert_path) + pki.read(ca_cert_path(ca_dir))
    assert result['serial'] == '%X' % cert.serial_number
    assert result['days_remaining'] in (364, 365)

    for purpose in good:
        rc, output = pki.openssl_verify(ca_cert_path(ca_dir), cert_path, purpose)
        assert rc == 0, output
    for purpose in bad:
        rc, output = pki.openssl_verify(ca_cert_path(ca_dir), cert_path, purpose)
        assert rc != 0, 'openssl accepted a %s certificate for %s' % (usage, purpose)
        assert 'purpose' in output


@pytest.mark.parametrize('ca_key_type, leaf_key_type', [
    ('ec-p256', 'rsa2048'),
    ('ec-p256', 'ed25519'),
    ('ec-p384', 'ec-p384'),
    ('ed25519', 'ec-p256'),
    ('rsa2048', 'ec-p256'),
])
def test_key_types_of_ca_and_leaf(tmp_path, pki, ca_key_type, leaf_key_type):
    ca_dir = str(tmp_path / 'ca')
    out_dir = str(tmp_path / 'out')
    pki.make_ca(ca_dir, key_type=ca_key_type)
    dummy, results = pki.issue(ca_dir, [entry(key_type=leaf_key_type, usage='both')], default_dir=out_dir)
    assert results['web1']['key_type'] == leaf_key_type
    cert_path = paths(out_dir)[1]
    cert = pki.load_cert(cert_path)
    assert crypto.key_type_of(cert.public_key()) == leaf_key_type
    assert crypto.key_type_of(pki.load_key(paths(out_dir)[0])) == leaf_key_type
    assert pki.ext(cert, x509.KeyUsage).value.key_encipherment is leaf_key_type.startswith('rsa')
    assert crypto.signed_by(cert, pki.load_cert(ca_cert_path(ca_dir)))
    for purpose in ('sslserver', 'sslclient'):
        rc, output = pki.openssl_verify(ca_cert_path(ca_dir), cert_path, purpose)
        assert rc == 0, output


def test_leaves_from_a_ca_made_by_openssl(tmp_path, pki):
    ca_dir = tmp_path / 'ca'
    ca_dir.mkdir()
    proc = subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
                           '-nodes', '-keyout', 'ca-key.pem', '-out', 'ca-cert.pem', '-days', '3650',
                           '-subj', '/CN=Old Scripts CA', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
                          cwd=str(ca_dir), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    assert proc.returncode == 0, proc.stdout
    ca_before = pki.snapshot(ca_dir)
    out_dir = str(tmp_path / 'out')
    dummy, results = pki.issue(str(ca_dir), [entry(usage='server')], default_dir=out_dir)
    assert results['web1']['action'] == 'issue'
    rc, output = pki.openssl_verify(ca_dir / 'ca-cert.pem', paths(out_dir)[1], 'sslserver')
    assert rc == 0, output
    after = pki.snapshot(ca_dir)
    assert sorted(after) == sorted(list(ca_before) + ['metadata.json'])
    assert all(after[name] == ca_before[name] for name in ca_before)


def test_metadata_keyed_by_name_with_history(ca_dir, out_dir, pki):
    dummy, first = pki.issue(ca_dir, [entry('web1'), entry('db1', usage='client')], default_dir=out_dir)
    data = metadata(ca_dir)
    assert sorted(data['certs']) == ['db1', 'web1']
    ca = pki.load_cert(ca_cert_path(ca_dir))
    assert data['ca']['fingerprint_sha256'] == crypto.fingerprint_sha256(ca)
    web1 = data['certs']['web1']
    assert web1['serial'] == first['web1']['serial']
    assert web1['dns'] == ['web1', 'web1.example.com']
    assert web1['usage'] == 'server' and data['certs']['db1']['usage'] == 'client'
    assert web1['cert_path'] == paths(out_dir)[1]
    assert [item['serial'] for item in web1['history']] == [first['web1']['serial']]
    assert web1['history'][0]['reason'] == 'missing: web1-cert.pem, web1-key.pem'
    assert web1['history'][0]['ca_fingerprint_sha256'] == crypto.fingerprint_sha256(ca)
    assert pki.mode_of(os.path.join(ca_dir, 'metadata.json')) == 0o644

    dummy, second = pki.issue(ca_dir, [entry('web1')], default_dir=out_dir, force=True)
    assert second['web1']['reason'] == 'force'
    assert second['web1']['serial'] != first['web1']['serial']
    data = metadata(ca_dir)
    history = data['certs']['web1']['history']
    assert [item['serial'] for item in history] == [first['web1']['serial'], second['web1']['serial']]
    assert [item['reason'] for item in history] == ['missing: web1-cert.pem, web1-key.pem', 'force']
    assert data['certs']['web1']['serial'] == second['web1']['serial']
    assert data['certs']['db1']['serial'] == first['db1']['serial'], 'an entry not in the request is kept'


def test_common_name_defaults_to_the_first_dns_name(ca_dir, out_dir, pki):
    dummy, results = pki.issue(ca_dir, [{'name': 'svc', 'dns': ['Zeta.Example.com', 'alpha.example.com']}],
                               default_dir=out_dir)
    cert = pki.load_cert(paths(out_dir, 'svc')[1])
    assert crypto.common_name(cert) == 'zeta.example.com'
    assert results['svc']['common_name'] == 'zeta.example.com'


def test_common_name_is_added_to_the_sans(ca_dir, out_dir, pki):
    certs = [
        {'name': 'named', 'common_name': 'svc.example.com', 'dns': ['other.example.com']},
        {'name': 'ipcn', 'common_name': '10.1.2.3'},
        {'name': 'iponly', 'ip': ['fd00::0:1']},
    ]
    dummy, results = pki.issue(ca_dir, certs, default_dir=out_dir)
    named = pki.load_cert(paths(out_dir, 'named')[1])
    assert crypto.common_name(named) == 'svc.example.com'
    assert crypto.sans(named) == (['other.example.com', 'svc.example.com'], [])
    ipcn = pki.load_cert(paths(out_dir, 'ipcn')[1])
    assert crypto.sans(ipcn) == ([], ['10.1.2.3'])
    iponly = pki.load_cert(paths(out_dir, 'iponly')[1])
    assert crypto.common_name(iponly) == 'fd00::1'
    assert crypto.sans(iponly) == ([], ['fd00::1'])
    dummy, again = pki.issue(ca_dir, certs, default_dir=out_dir)
    assert [again[name]['reason'] for name in ('named', 'ipcn', 'iponly')] == ['up to date'] * 3


def test_parse_requests_defaults_and_per_entry_dir(tmp_path):
    requests = parse_requests(
        [{'name': 'a', 'dns': ['a.example']}, {'name': 'b', 'ip': ['10.0.0.1'], 'dir': str(tmp_path / 'b')}],
        default_dir=str(tmp_path / 'default'), renew_days=30,
        defaults={'usage': 'client', 'key_type': 'ed25519', 'valid_days': 90})
    assert [(r.name, r.usage, r.key_type, r.valid_days) for r in requests] == [
        ('a', 'client', 'ed25519', 90), ('b', 'client', 'ed25519', 90)]
    assert requests[0].cert_path == str(tmp_path / 'default' / 'a-cert.pem')
    assert requests[1].key_path == str(tmp_path / 'b' / 'b-key.pem')


# -- when a certificate is re-issued ------------------------------------------------------------------------------------

def issue_one(pki, ca_dir, out_dir, **kwargs):
    certs = kwargs.pop('certs', [entry()])
    dummy, results = pki.issue(ca_dir, certs, default_dir=out_dir, **kwargs)
    return results['web1']


def test_up_to_date_second_run(ca_dir, out_dir, pki, tmp_path):
    first = issue_one(pki, ca_dir, out_dir, certs=[entry(ip=['10.0.0.7'])])
    before = pki.snapshot(tmp_path)
    issuer, results = pki.issue(ca_dir, [entry(ip=['10.0.0.7'])], default_dir=out_dir)
    second = results['web1']
    assert issuer.changed is False
    assert second['changed'] is False and second['action'] == 'none' and second['reason'] == 'up to date'
    assert second['serial'] == first['serial']
    assert issuer.warnings == []
    assert pki.snapshot(tmp_path) == before, 'an up-to-date run must not touch any file (metadata included)'


@pytest.mark.parametrize('remove, reason', [
    (('cert',), 'missing: web1-cert.pem'),
    (('key',), 'missing: web1-key.pem'),
    (('cert', 'key'), 'missing: web1-cert.pem, web1-key.pem'),
])
def test_reissue_when_files_are_missing(ca_dir, out_dir, pki, remove, reason):
    first = issue_one(pki, ca_dir, out_dir)
    key_path, cert_path, dummy = paths(out_dir)
    old_key = pki.read(key_path)
    for kind in remove:
        os.unlink(key_path if kind == 'key' else cert_path)
    second = issue_one(pki, ca_dir, out_dir)
    assert second['action'] == 'issue' and second['reason'] == reason
    assert second['serial'] != first['serial']
    assert pki.read(key_path) != old_key, 'a re-issue makes a new key'
    assert crypto.key_matches_cert(pki.load_key(key_path), pki.load_cert(cert_path))


def test_reissue_when_expiring_within_renew_days(ca_dir, out_dir, pki):
    first = issue_one(pki, ca_dir, out_dir, certs=[entry(valid_days=60)])
    later = pki.now() + 40 * DAY
    # Not yet within renew_days 10 at that date.
    dummy, kept = pki.issue(ca_dir, [entry(valid_days=60)], default_dir=out_dir, renew_days=10, now=later)
    assert kept['web1']['reason'] == 'up to date'
    second = issue_one(pki, ca_dir, out_dir, certs=[entry(valid_days=60)], renew_days=30, now=later)
    assert second['action'] == 'issue'
    assert second['reason'] in ('expires in 19 days (renew_days 30)', 'expires in 20 days (renew_days 30)')
    assert second['serial'] != first['serial']
    cert = pki.load_cert(paths(out_dir)[1])
    assert abs(crypto.not_after(cert) - (later + 60 * DAY)) < datetime.timedelta(seconds=5)


def test_reissue_when_expired(ca_dir, out_dir, pki):
    first = issue_one(pki, ca_dir, out_dir, certs=[entry(valid_days=60)])
    second = issue_one(pki, ca_dir, out_dir, certs=[entry(valid_days=60)], now=pki.now() + 100 * DAY)
    assert second['reason'].startswith('expired on ')
    assert second['serial'] != first['serial']


@pytest.mark.parametrize('change, reason', [
    ({'dns': ['web1.example.com', 'web1', 'www.example.com']}, 'request changed: dns'),
    ({'ip': ['10.0.0.8']}, 'request changed: ip'),
    ({'usage': 'client'}, 'request changed: usage'),
    ({'key_type': 'ed25519'}, 'request changed: key_type'),
    ({'common_name': 'web1'}, 'request changed: common_name'),
    ({'dns': ['web2.example.com'], 'usage': 'both'}, 'request changed: common_name, dns, usage'),
])
def test_reissue_when_the_request_changed(ca_dir, out_dir, pki, change, reason):
    first = issue_one(pki, ca_dir, out_dir)
    second = issue_one(pki, ca_dir, out_dir, certs=[entry(**change)])
    assert second['action'] == 'issue' and second['reason'] == reason
    assert second['serial'] != first['serial']
    third = issue_one(pki, ca_dir, out_dir, certs=[entry(**change)])
    assert third['reason'] == 'up to date'


def test_reissue_when_the_ca_was_replaced(ca_dir, out_dir, pki):
    first = issue_one(pki, ca_dir, out_dir)
    manager = CaManager(ca_dir, force=True)
    assert manager.plan() == 'replace'
    manager.apply()
    second = issue_one(pki, ca_dir, out_dir)
    assert second['action'] == 'issue' and second['reason'] == 'not signed by the current CA'
    assert second['serial'] != first['serial']
    rc, output = pki.openssl_verify(ca_cert_path(ca_dir), paths(out_dir)[1], 'sslserver')
    assert rc == 0, output
    history = metadata(ca_dir)['certs']['web1']['history']
    assert history[0]['ca_fingerprint_sha256'] != history[1]['ca_fingerprint_sha256']


def test_ca_cert_reissued_with_the_same_key_keeps_the_leaves(ca_dir, out_dir, pki):
    """The AKI holds the key identifier only: a renewed CA cert (same key, same name) still validates leaves."""
    first = issue_one(pki, ca_dir, out_dir)
    ca = load_ca(ca_dir)
    now = pki.now()
    builder = (
        x509.CertificateBuilder().subject_name(ca.cert.subject).issuer_name(ca.cert.subject)
        .public_key(ca.key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - DAY).not_valid_after(now + 5000 * DAY)
    )
    for extension in ca.cert.extensions:
        builder = builder.add_extension(extension.value, critical=extension.critical)
    pki.write(ca_cert_path(ca_dir), crypto.cert_pem(crypto.sign(builder, ca.key)), 0o644)
    key_path, cert_path, bundle_path = paths(out_dir)
    old_key, old_cert = pki.read(key_path), pki.read(cert_path)
    second = issue_one(pki, ca_dir, out_dir)
    assert second['action'] == 'update', second['reason']
    assert second['reason'] == 'bundle missing or out of date'
    assert second['serial'] == first['serial']
    assert (pki.read(key_path), pki.read(cert_path)) == (old_key, old_cert)
    assert pki.read(bundle_path) == old_cert + pki.read(ca_cert_path(ca_dir))
    rc, output = pki.openssl_verify(ca_cert_path(ca_dir), cert_path, 'sslserver')
    assert rc == 0, output


def test_reissue_when_key_does_not_match(ca_dir, out_dir, pki):
    pki.issue(ca_dir, [entry('web1'), entry('web2')], default_dir=out_dir)
    key1, key2 = paths(out_dir, 'web1')[0], paths(out_dir, 'web2')[0]
    data1, data2 = pki.read(key1), pki.read(key2)
    pki.write(key1, data2, 0o600)
    pki.write(key2, data1, 0o600)
    dummy, results = pki.issue(ca_dir, [entry('web1'), entry('web2')], default_dir=out_dir)
    for name in ('web1', 'web2'):
        assert results[name]['action'] == 'issue'
        assert results[name]['reason'] == 'key does not match certificate'
        key_path, cert_path, dummy = paths(out_dir, name)
        assert crypto.key_matches_cert(pki.load_key(key_path), pki.load_cert(cert_path))


@pytest.mark.parametrize('which, reason', [('cert', 'certificate unreadable'), ('key', 'key unreadable')])
def test_reissue_when_a_file_does_not_parse(ca_dir, out_dir, pki, which, reason):
    issue_one(pki, ca_dir, out_dir)
    key_path, cert_path, dummy = paths(out_dir)
    pki.write(cert_path if which == 'cert' else key_path, b'-----BEGIN CERTIFICATE-----\nnope\n', 0o600)
    second = issue_one(pki, ca_dir, out_dir)
    assert second['action'] == 'issue' and second['reason'] == reason
    assert crypto.key_matches_cert(pki.load_key(key_path), pki.load_cert(cert_path))


def test_force_reissues_every_certificate(ca_dir, out_dir, pki):
    dummy, first = pki.issue(ca_dir, [entry('web1'), entry('web2')], default_dir=out_dir)
    issuer, second = pki.issue(ca_dir, [entry('web1'), entry('web2')], default_dir=out_dir, force=True)
    assert issuer.changed
    for name in ('web1', 'web2'):
        assert second[name]['reason'] == 'force' and second[name]['serial'] != first[name]['serial']


# -- updating a valid certificate in place ------------------------------------------------------------------------------

def test_deleted_bundle_is_rewritten_without_reissue(ca_dir, out_dir, pki):
    first = issue_one(pki, ca_dir, out_dir)
    key_path, cert_path, bundle_path = paths(out_dir)
    old_key, old_cert = pki.read(key_path), pki.read(cert_path)
    os.unlink(bundle_path)
    second = issue_one(pki, ca_dir, out_dir)
    assert second['changed'] is True and second['action'] == 'update'
    assert second['reason'] == 'bundle missing or out of date'
    assert second['serial'] == first['serial']
    assert (pki.read(key_path), pki.read(cert_path)) == (old_key, old_cert)
    assert pki.read(bundle_path) == old_cert + pki.read(ca_cert_path(ca_dir))
    assert pki.mode_of(bundle_path) == 0o644
    assert len(metadata(ca_dir)['certs']['web1']['history']) == 1
    assert issue_one(pki, ca_dir, out_dir)['reason'] == 'up to date'


def test_file_modes_are_fixed_without_reissue(ca_dir, out_dir, pki):
    first = issue_one(pki, ca_dir, out_dir)
    key_path, cert_path, dummy = paths(out_dir)
    old_key = pki.read(key_path)
    os.chmod(key_path, 0o644)
    os.chmod(cert_path, 0o600)
    second = issue_one(pki, ca_dir, out_dir)
    assert second['action'] == 'update' and second['reason'] == 'file modes (key 0600, cert 0644)'
    assert second['serial'] == first['serial']
    assert pki.mode_of(key_path) == 0o600 and pki.mode_of(cert_path) == 0o644
    assert pki.read(key_path) == old_key
    assert issue_one(pki, ca_dir, out_dir)['reason'] == 'up to date'


@pytest.mark.parametrize('how', ['entry removed', 'file removed'])
def test_missing_metadata_record_is_recorded(ca_dir, out_dir, pki, how):
    first = issue_one(pki, ca_dir, out_dir, certs=[entry('web1'), entry('web2')])
    metadata_path = os.path.join(ca_dir, 'metadata.json')
    if how == 'entry removed':
        data = metadata(ca_dir)
        del data['certs']['web1']
        pki.write(metadata_path, json.dumps(data).encode())
    else:
        os.unlink(metadata_path)
    key_path, cert_path, bundle_path = paths(out_dir)
    files_before = [pki.read(path) for path in (key_path, cert_path, bundle_path)]
    dummy, results = pki.issue(ca_dir, [entry('web1'), entry('web2')], default_dir=out_dir)
    assert results['web1']['action'] == 'update'
    assert results['web1']['reason'] == 'not recorded in metadata.json'
    assert results['web2']['action'] == ('none' if how == 'entry removed' else 'update')
    assert [pki.read(path) for path in (key_path, cert_path, bundle_path)] == files_before
    data = metadata(ca_dir)
    assert data['certs']['web1']['serial'] == first['serial']
    assert data['certs']['web1']['history'][-1]['reason'] == 'recorded from disk'


def test_corrupt_metadata_stops_with_a_message(ca_dir, out_dir, pki, tmp_path):
    issue_one(pki, ca_dir, out_dir)
    metadata_path = os.path.join(ca_dir, 'metadata.json')
    pki.write(metadata_path, b'{"certs": ')
    pki.expect_error(lambda: pki.issue(ca_dir, [entry(), entry('web2')], default_dir=out_dir), tmp_path,
                     metadata_path, 'not valid JSON')


# -- validity clamped to the CA -------------------------------------------------------------------------------------------

def test_validity_is_clamped_to_the_ca_end(tmp_path, pki):
    ca_dir, out_dir = str(tmp_path / 'ca'), str(tmp_path / 'out')
    pki.make_ca(ca_dir, valid_days=100)
    ca_end = crypto.not_after(pki.load_cert(ca_cert_path(ca_dir)))
    # renew_days 30: the CA (100 days) is not within the margin, so only the clamp is worth a warning.
    issuer, results = pki.issue(ca_dir, [entry(valid_days=365)], default_dir=out_dir, renew_days=30)
    assert crypto.not_after(pki.load_cert(paths(out_dir)[1])) == ca_end
    assert len(issuer.warnings) == 1
    assert 'web1: validity clamped to the CA end' in issuer.warnings[0]
    assert 'within renew_days' not in issuer.warnings[0]
    issuer, again = pki.issue(ca_dir, [entry(valid_days=365)], default_dir=out_dir, renew_days=30)
    assert again['web1']['reason'] == 'up to date'
    assert issuer.warnings == []


def test_ca_ending_within_renew_days_issues_once_then_only_warns(tmp_path, pki):
    ca_dir, out_dir = str(tmp_path / 'ca'), str(tmp_path / 'out')
    now = pki.now()
    dummy, ca = pki.hand_ca(ca_dir, now - 355 * DAY, now + 10 * DAY)
    certs = [entry('web1'), entry('web2')]
    issuer, first = pki.issue(ca_dir, certs, default_dir=out_dir, renew_days=30)
    assert [first[name]['action'] for name in ('web1', 'web2')] == ['issue', 'issue']
    for name in ('web1', 'web2'):
        cert = pki.load_cert(paths(out_dir, name)[1])
        assert crypto.not_after(cert) == crypto.not_after(ca)
        assert crypto.not_before(cert) >= crypto.not_before(ca)
    assert sum('validity clamped' in warning for warning in issuer.warnings) == 2
    assert sum('within renew_days (30)' in warning for warning in issuer.warnings) == 1

    before = pki.snapshot(tmp_path)
    issuer, second = pki.issue(ca_dir, certs, default_dir=out_dir, renew_days=30)
    assert issuer.changed is False
    assert [second[name]['reason'] for name in ('web1', 'web2')] == ['up to date', 'up to date']
    assert [second[name]['serial'] for name in ('web1', 'web2')] == [first[n]['serial'] for n in ('web1', 'web2')]
    assert len(issuer.warnings) == 1 and 'renew or roll over the CA' in issuer.warnings[0]
    assert pki.snapshot(tmp_path) == before


# -- check mode -------------------------------------------------------------------------------------------------------

def test_check_mode_reports_and_writes_nothing(ca_dir, out_dir, pki, tmp_path):
    before = pki.snapshot(tmp_path)
    issuer, results = pki.issue(ca_dir, [entry('web1'), entry('web2')], default_dir=out_dir, check_mode=True)
    assert issuer.changed is True
    for name in ('web1', 'web2'):
        assert results[name]['changed'] is True and results[name]['action'] == 'issue'
        assert results[name]['serial'] is None
    assert issuer.diff()['after']['web1']['state'] == 'to be issued'
    assert pki.snapshot(tmp_path) == before
    assert not os.path.exists(out_dir)
    assert sorted(os.listdir(ca_dir)) == ['ca-cert.pem', 'ca-key.pem'], 'no lock file, no metadata'


def test_check_mode_on_existing_certificates(ca_dir, out_dir, pki, tmp_path):
    dummy, first = pki.issue(ca_dir, [entry('web1'), entry('web2'), entry('web3')], default_dir=out_dir)
    os.unlink(paths(out_dir, 'web2')[2])
    os.unlink(paths(out_dir, 'web3')[1])
    before = pki.snapshot(tmp_path)
    issuer, results = pki.issue(ca_dir, [entry('web1'), entry('web2'), entry('web3')], default_dir=out_dir,
                                check_mode=True)
    assert [results[n]['action'] for n in ('web1', 'web2', 'web3')] == ['none', 'update', 'issue']
    assert results['web2']['serial'] == first['web2']['serial']
    assert pki.snapshot(tmp_path) == before


# -- bad input: a clear message naming the entry, and no file changed ---------------------------------------------------

GOOD = {'name': 'good', 'dns': ['good.example.com']}


@pytest.mark.parametrize('certs, kwargs, needles', [
    ([GOOD, {'name': 'web1', 'dns': ['web1'], 'key_type': 'dsa1024'}], {}, ['certs[1] (name web1)', "'dsa1024'"]),
    ([GOOD, {'name': 'web1', 'dns': ['bad host!']}], {}, ['certs[1] (name web1)', "'bad host!'", 'neither']),
    ([GOOD, {'name': 'web1', 'dns': ['under_score.example']}], {}, ['certs[1] (name web1)', 'under_score']),
    ([GOOD, {'name': 'web1', 'dns': ['10.0.0.1']}], {}, ['certs[1] (name web1)', "'10.0.0.1'", 'under ip']),
    ([GOOD, {'name': 'web1', 'ip': ['web1.example.com']}], {}, ['certs[1] (name web1)', 'not an IP address']),
    ([GOOD, {'name': 'web1', 'common_name': 'Web Server One'}], {}, ['certs[1] (name web1)', 'common_name']),
    ([GOOD, {'name': 'web1'}], {}, ['certs[1] (name web1)', 'no name to certify']),
    ([], {}, ['certs is empty']),
    ([GOOD, dict(GOOD, dns=['other.example.com'])], {}, ['certs[1] (name good)', 'certs[0]']),
    ([GOOD, {'name': '../etc/passwd', 'dns': ['x.example']}], {}, ['certs[1]', "'../etc/passwd'"]),
    ([GOOD, {'name': '', 'dns': ['x.example']}], {}, ['certs[1]', 'name']),
    ([GOOD, dict(entry(), valid_days=0)], {}, ['certs[1] (name web1)', 'valid_days', 'not 0']),
    ([GOOD, dict(entry(), valid_days=-5)], {}, ['certs[1] (name web1)', 'valid_days', 'not -5']),
    ([GOOD, dict(entry(), valid_days=30)], {'renew_days': 30}, ['certs[1] (name web1)', 'valid_days (30)',
                                                                'renew_days (30)']),
    ([GOOD, dict(entry(), valid_hours=240)], {'renew_days': 10},
     ['certs[1] (name web1)', 'valid_hours (240)', 'renew_days (10)']),
    ([GOOD, dict(entry(), valid_days=10, valid_hours=24)], {}, ['certs[1] (name web1)', 'both valid_days',
                                                                'valid_hours', 'set one']),
    ([GOOD, dict(entry(), valid_hours=0)], {}, ['certs[1] (name web1)', 'valid_hours', 'not 0']),
    ([GOOD, dict(entry(), valid_hours=87601)], {}, ['certs[1] (name web1)', 'valid_hours', '87600']),
    ([GOOD, dict(entry(), valid_hours=0.05)], {}, ['certs[1] (name web1)', 'valid_hours', '0.1 (6 minutes)',
                                                   'not 0.05']),
    ([GOOD, dict(entry(), valid_hours=True)], {}, ['certs[1] (name web1)', 'valid_hours', 'not True']),
    ([GOOD, dict(entry(), valid_hours='1e3')], {}, ['certs[1] (name web1)', 'valid_hours', "not '1e3'"]),
    ([GOOD, dict(entry(), valid_hours='1_0')], {}, ['certs[1] (name web1)', 'valid_hours', "not '1_0'"]),
    ([GOOD], {'renew_fraction': 0}, ['renew_fraction', 'above 0', '0.9']),
    ([GOOD], {'renew_fraction': 0.95}, ['renew_fraction', '0.95']),
    ([GOOD], {'renew_splay': -0.1}, ['renew_splay', '-0.1']),
    ([GOOD], {'renew_splay': 1.0}, ['renew_splay', '0.9']),
    ([GOOD, dict(entry(), usage='serverAuth')], {}, ['certs[1] (name web1)', "'serverAuth'"]),
    ([GOOD], {'renew_days': -1}, ['renew_days', '-1']),
])
def test_bad_requests(ca_dir, out_dir, pki, tmp_path, certs, kwargs, needles):
    pki.issue(ca_dir, [entry('existing')], default_dir=out_dir)  # something on disk that must stay as it is
    pki.expect_error(lambda: pki.issue(ca_dir, certs, default_dir=out_dir, **kwargs), tmp_path, *needles)


def test_entry_without_dir(ca_dir, pki, tmp_path):
    pki.expect_error(lambda: pki.issue(ca_dir, [GOOD]), tmp_path, 'certs[0] (name good)', 'no dir')


def _break_ca(tmp_path, pki, problem):
    """A CA directory with ``problem``; returns (ca_dir, passphrase to use, needles for the message)."""
    ca_dir = str(tmp_path / 'ca')
    key_path, cert_path = os.path.join(ca_dir, 'ca-key.pem'), os.path.join(ca_dir, 'ca-cert.pem')
    if problem == 'missing CA':
        os.makedirs(ca_dir)
        return ca_dir, None, [ca_dir, 'no CA in', 'ca_dir']
    if problem == 'expired':
        now = pki.now()
        pki.hand_ca(ca_dir, now - 400 * DAY, now - DAY)
        return ca_dir, None, [cert_path, 'expired on']
    encrypted = problem in ('wrong passphrase', 'missing passphrase', 'key not matching')
    pki.make_ca(ca_dir, passphrase=pki.PASSPHRASE if encrypted else None)
    if problem == 'wrong passphrase':
        return ca_dir, pki.WRONG_PASSPHRASE, [key_path, 'ca_passphrase is wrong']
    if problem == 'missing passphrase':
        return ca_dir, None, [key_path, 'is encrypted', 'ca_passphrase']
    if problem == 'passphrase not needed':
        return ca_dir, pki.PASSPHRASE, [key_path, 'is not encrypted but ca_passphrase was given']
    if problem == 'key not matching':
        other = pki.make_ca(str(tmp_path / 'other'), passphrase=pki.PASSPHRASE)
        pki.write(key_path, pki.read(other.key_path), 0o600)
        return ca_dir, pki.PASSPHRASE, [key_path, cert_path, 'does not match']
    if problem == 'corrupt cert':
        pki.write(cert_path, pki.read(cert_path)[:200], 0o644)
        return ca_dir, None, [cert_path, 'not a valid PEM certificate']
    if problem == 'corrupt key':
        pki.write(key_path, b'garbage\n', 0o600)
        return ca_dir, None, [key_path, 'not a valid PEM private key']
    if problem == 'key missing':
        os.unlink(key_path)
        return ca_dir, None, [key_path, 'is missing']
    if problem == 'cert missing':
        os.unlink(cert_path)
        return ca_dir, None, [ca_dir, 'no CA in', 'ca_dir']
    raise AssertionError(problem)


@pytest.mark.parametrize('problem', ['missing CA', 'expired', 'wrong passphrase', 'missing passphrase',
                                     'passphrase not needed', 'key not matching', 'corrupt cert', 'corrupt key',
                                     'key missing', 'cert missing'])
@pytest.mark.parametrize('check_mode', [False, True])
def test_bad_ca(tmp_path, pki, problem, check_mode):
    # A missing CA fails in check mode too unless the caller says pki_ca will make it (ca_planned): a mistyped
    # ca_dir must not pass --check.
    ca_dir, passphrase, needles = _break_ca(tmp_path, pki, problem)
    out_dir = str(tmp_path / 'out')
    pki.expect_error(lambda: pki.issue(ca_dir, [entry()], default_dir=out_dir, ca_passphrase=passphrase,
                                       check_mode=check_mode), tmp_path, *needles)


def test_check_mode_before_the_ca_is_made(tmp_path, pki):
    """A CA directory with neither key nor cert (pki_ca in check mode only said it would make it): every certificate
    is planned for issue, with a warning, and nothing is written; half a CA (cert missing) still fails above."""
    ca_dir, out_dir = str(tmp_path / 'ca'), str(tmp_path / 'out')
    os.makedirs(ca_dir)
    before = pki.snapshot(tmp_path)
    issuer, results = pki.issue(ca_dir, [entry(), entry('web2')], default_dir=out_dir, check_mode=True,
                                ca_planned=True)
    assert [results[name]['action'] for name in ('web1', 'web2')] == ['issue', 'issue']
    assert all('no CA in %s yet' % ca_dir in result['reason'] for result in results.values())
    assert issuer.changed and len(issuer.warnings) == 1 and 'ca_planned' in issuer.warnings[0]
    assert pki.snapshot(tmp_path) == before


def test_encrypted_ca_with_the_right_passphrase(tmp_path, pki):
    ca_dir, out_dir = str(tmp_path / 'ca'), str(tmp_path / 'out')
    pki.make_ca(ca_dir, passphrase=pki.PASSPHRASE)
    issuer, results = pki.issue(ca_dir, [entry()], default_dir=out_dir, ca_passphrase=pki.PASSPHRASE)
    assert results['web1']['action'] == 'issue'
    assert pki.PASSPHRASE not in json.dumps(issuer.results()) + json.dumps(issuer.diff())
    for name in os.listdir(out_dir) + ['metadata.json']:
        path = os.path.join(out_dir if name != 'metadata.json' else ca_dir, name)
        assert pki.PASSPHRASE.encode() not in pki.read(path)
    assert b'ENCRYPTED' not in pki.read(paths(out_dir)[0]), 'leaf keys are not encrypted'


@pytest.mark.parametrize('check_mode', [False, True])
def test_unwritable_dir_under_a_regular_file(ca_dir, out_dir, pki, tmp_path, check_mode):
    pki.issue(ca_dir, [entry('existing')], default_dir=out_dir)
    blocker = tmp_path / 'blocker'
    pki.write(blocker, b'not a directory\n')
    bad_dir = str(blocker / 'certs')
    certs = [entry('web1'), entry('web2', dir=bad_dir)]
    message = pki.expect_error(lambda: pki.issue(ca_dir, certs, default_dir=out_dir, check_mode=check_mode),
                               tmp_path, 'certs entry web2', bad_dir, 'not a directory')
    assert 'choose a writable directory' in message


# -- two runs at once ---------------------------------------------------------------------------------------------------

def _issue_in_child(ca_dir, out_dir, names, barrier):
    try:
        barrier.wait(30)
        LeafIssuer(ca_dir, [entry(name) for name in names], default_dir=out_dir).run()
    except BaseException:  # report through the exit code
        import traceback
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def test_two_processes_issuing_at_once(ca_dir, out_dir, pki):
    context = multiprocessing.get_context('fork')
    barrier = context.Barrier(2)
    batches = [['a%d' % i for i in range(8)], ['b%d' % i for i in range(8)]]
    workers = [context.Process(target=_issue_in_child, args=(ca_dir, out_dir, names, barrier)) for names in batches]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [worker.exitcode for worker in workers] == [0, 0]

    data = metadata(ca_dir)
    names = batches[0] + batches[1]
    assert sorted(data['certs']) == sorted(names), 'a concurrent run lost the other run\'s metadata'
    ca = pki.load_cert(ca_cert_path(ca_dir))
    for name in names:
        key_path, cert_path, bundle_path = paths(out_dir, name)
        cert = pki.load_cert(cert_path)
        assert crypto.key_matches_cert(pki.load_key(key_path), cert), name
        assert crypto.signed_by(cert, ca)
        assert data['certs'][name]['serial'] == '%X' % cert.serial_number
        assert pki.read(bundle_path) == pki.read(cert_path) + pki.read(ca_cert_path(ca_dir))
    leftovers = [n for n in os.listdir(out_dir) + os.listdir(ca_dir) if n.startswith('.fleetpki-tmp-')]
    assert leftovers == []
    dummy, again = pki.issue(ca_dir, [entry(name) for name in names], default_dir=out_dir)
    assert set(result['reason'] for result in again.values()) == set(['up to date'])


# -- a run killed before metadata.json is saved ------------------------------------------------------------------

class KilledBeforeSave(BaseException):
    """Stands in for SIGKILL: nothing after the raise runs (BaseException skips ordinary handlers)."""


def test_serials_of_a_run_killed_before_saving_metadata_reach_the_history(ca_dir, out_dir, pki, monkeypatch):
    from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import leaf

    dummy, first = pki.issue(ca_dir, [entry('web1')], default_dir=out_dir)

    def killed(*args, **kwargs):
        raise KilledBeforeSave()

    monkeypatch.setattr(leaf.Metadata, 'save', killed)
    with pytest.raises(KilledBeforeSave):
        pki.issue(ca_dir, [entry('web1')], default_dir=out_dir, force=True)
    monkeypatch.undo()
    killed_serial = crypto.serial_hex(pki.load_cert(paths(out_dir)[1]))
    assert killed_serial != first['web1']['serial']
    assert killed_serial not in [item['serial'] for item in metadata(ca_dir)['certs']['web1']['history']]
    assert os.path.exists(os.path.join(ca_dir, 'metadata.journal'))

    # The next run (even a forced one that replaces the cert again) keeps the killed run's serial in the history.
    dummy, third = pki.issue(ca_dir, [entry('web1')], default_dir=out_dir, force=True)
    history = [item['serial'] for item in metadata(ca_dir)['certs']['web1']['history']]
    assert history == [first['web1']['serial'], killed_serial, third['web1']['serial']]
    assert not os.path.exists(os.path.join(ca_dir, 'metadata.journal'))


def test_reissue_replaces_the_bundle_with_the_key(ca_dir, out_dir, pki, monkeypatch):
    """A kill between the renames never leaves the old bundle beside the new key."""
    pki.issue(ca_dir, [entry('web1')], default_dir=out_dir)
    key_path, cert_path, bundle_path = paths(out_dir)
    real_rename = os.rename

    def rename_key_then_die(src, dst):
        real_rename(src, dst)
        if dst == key_path:
            raise KilledBeforeSave()

    monkeypatch.setattr(os, 'rename', rename_key_then_die)
    with pytest.raises(KilledBeforeSave):
        pki.issue(ca_dir, [entry('web1')], default_dir=out_dir, force=True)
    monkeypatch.undo()
    assert os.path.exists(key_path)
    assert not os.path.exists(cert_path) and not os.path.exists(bundle_path)
    issuer, results = pki.issue(ca_dir, [entry('web1')], default_dir=out_dir)
    assert results['web1']['reason'].startswith('missing: web1-cert.pem')


def test_a_cert_whose_public_key_does_not_parse_is_reissued(ca_dir, out_dir, pki):
    """One changed byte can leave a cert that loads but whose key is off the curve: re-issued, not a traceback."""
    first = issue_one(pki, ca_dir, out_dir)
    cert_path = paths(out_dir)[1]
    cert = pki.load_cert(cert_path)
    der = cert.public_bytes(crypto.serialization.Encoding.DER)
    point = crypto.public_key_der(cert.public_key())[-65:]  # 04 || X || Y of the P-256 key
    damaged = der.replace(point, point[:-1] + bytes([point[-1] ^ 1]))
    assert damaged != der
    pem = crypto.x509.load_der_x509_certificate(damaged).public_bytes(crypto.serialization.Encoding.PEM)
    pki.write(cert_path, pem, 0o644)
    second = issue_one(pki, ca_dir, out_dir)
    assert second['action'] == 'issue' and second['reason'] == 'certificate unreadable'
    assert second['serial'] != first['serial']
    rc, output = pki.openssl_verify(ca_cert_path(ca_dir), cert_path, 'sslserver')
    assert rc == 0, output


# -- the rerun's fast path: files whose digest matches metadata.json skip the signature and key checks; any changed
# byte, another CA, a changed request, revocation or the renew window still gets them -------------------------------

def mtimes(root):
    """{path: mtime_ns} of every file and directory under ``root``: a run that writes nothing changes none."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(str(root)):
        for name in [''] + dirnames + filenames:
            path = os.path.join(dirpath, name)
            found[path] = os.stat(path).st_mtime_ns
    return found


@pytest.fixture
def full_checks(monkeypatch):
    """Counts the signature checks (the full check's costly part) of the runs that follow."""
    calls = []
    real = crypto.signed_by

    def counting(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(crypto, 'signed_by', counting)
    return calls


def issue(pki, ca_dir, out_dir, certs=None, **kwargs):
    """(issuer, {name: result}) of one run over ``certs`` (web1 by default)."""
    return pki.issue(ca_dir, certs or [entry()], default_dir=out_dir, **kwargs)


def test_issue_records_the_digest_of_the_files_and_the_ca(ca_dir, out_dir, pki):
    """The CA is identified by the SHA-256 of its certificate file's bytes: a rerun hashes it without parsing it."""
    issue(pki, ca_dir, out_dir)
    key_path, cert_path, bundle_path = paths(out_dir)
    ca_file_sha256 = hashlib.sha256(pki.read(ca_cert_path(ca_dir))).hexdigest()
    expected = store.files_digest(ca_file_sha256, pki.read(key_path), pki.read(cert_path), pki.read(bundle_path))
    assert metadata(ca_dir)['certs']['web1'][store.FILES_DIGEST] == expected
    ca_record = metadata(ca_dir)['ca']
    assert ca_record['cert_sha256'] == ca_file_sha256
    assert ca_record['not_after'] == crypto.iso8601(load_ca(ca_dir).not_after)
    assert pki.read(key_path) not in json.dumps(metadata(ca_dir)).encode(), 'metadata.json never holds the key'


def test_unchanged_rerun_skips_the_full_check_and_writes_nothing(ca_dir, out_dir, pki, tmp_path, full_checks):
    dummy, first = issue(pki, ca_dir, out_dir, [entry('web1'), entry('web2', ip=['10.0.0.2'])])
    del full_checks[:]
    before, times = pki.snapshot(tmp_path), mtimes(tmp_path)
    issuer, second = issue(pki, ca_dir, out_dir, [entry('web1'), entry('web2', ip=['10.0.0.2'])])
    assert issuer.changed is False
    for name in ('web1', 'web2'):
        assert second[name]['action'] == 'none' and second[name]['reason'] == 'up to date'
        assert second[name]['serial'] == first[name]['serial']
        assert second[name]['not_after'] == first[name]['not_after']
        assert second[name]['days_remaining'] == first[name]['days_remaining']
    assert full_checks == [], 'files matching their recorded digest need no signature check'
    assert pki.snapshot(tmp_path) == before and mtimes(tmp_path) == times


def test_the_fast_path_results_match_the_full_check(ca_dir, out_dir, pki):
    """The details a rerun reports from metadata.json are those a full check reads from the cert."""
    issue(pki, ca_dir, out_dir)
    fast = issue(pki, ca_dir, out_dir)[0].results(details=True)
    data = metadata(ca_dir)
    del data['certs']['web1'][store.FILES_DIGEST]
    pki.write(os.path.join(ca_dir, 'metadata.json'), json.dumps(data).encode())
    full = issue(pki, ca_dir, out_dir)[0].results(details=True)
    assert fast == full


def _same_length_cert_of_another_ca(pki, tmp_path, cert_path, key_path):
    """A cert for the same key and request, made the production way by another CA of the same name, exactly as many
    PEM bytes as the one on disk (the signature's and serial's lengths vary: retry until they match)."""
    other_dir = str(tmp_path / 'other-ca')
    pki.make_ca(other_dir)
    other_ca = load_ca(other_dir)
    request = parse_requests([entry()], default_dir=str(tmp_path / 'unused'))[0]
    wanted = len(pki.read(cert_path))
    key = pki.load_key(key_path)
    for dummy in range(200):
        data = crypto.cert_pem(build_leaf_cert(request, key, other_ca, pki.now() - DAY, pki.now() + 300 * DAY))
        if len(data) == wanted:
            return data
    raise AssertionError('no cert of %d bytes in 200 tries' % wanted)


def test_a_cert_of_another_ca_with_the_same_length_is_reissued(ca_dir, out_dir, pki, tmp_path):
    first = issue(pki, ca_dir, out_dir)[1]['web1']
    key_path, cert_path, dummy = paths(out_dir)
    forged = _same_length_cert_of_another_ca(pki, tmp_path, cert_path, key_path)
    pki.write(cert_path, forged, 0o644)
    second = issue(pki, ca_dir, out_dir)[1]['web1']
    assert second['action'] == 'issue' and second['reason'] == 'not signed by the current CA'
    assert second['serial'] != first['serial']
    rc, output = pki.openssl_verify(os.path.join(ca_dir, 'ca-cert.pem'), cert_path, 'sslserver')
    assert rc == 0, output


def test_a_swapped_key_is_reissued(ca_dir, out_dir, pki):
    first = issue(pki, ca_dir, out_dir)[1]['web1']
    key_path, cert_path, dummy = paths(out_dir)
    other = crypto.private_key_pem(ec.generate_private_key(ec.SECP256R1()))
    assert len(other) == len(pki.read(key_path))
    pki.write(key_path, other, 0o600)
    second = issue(pki, ca_dir, out_dir)[1]['web1']
    assert second['action'] == 'issue' and second['reason'] == 'key does not match certificate'
    assert second['serial'] != first['serial']
    assert crypto.key_matches_cert(pki.load_key(key_path), pki.load_cert(cert_path))


@pytest.mark.parametrize('which, action, reasons', [
    # Which of the two depends on the cryptography release: newer ones check the key's embedded public key on load.
    ('key', 'issue', ('key does not match certificate', 'key unreadable')),
    ('cert', 'issue', ('certificate unreadable',)),
    ('bundle', 'update', ('bundle missing or out of date',)),
])
def test_one_changed_byte_gets_the_full_check(ca_dir, out_dir, pki, full_checks, which, action, reasons):
    issue(pki, ca_dir, out_dir)
    path = dict(zip(('key', 'cert', 'bundle'), paths(out_dir)))[which]
    data = bytearray(pki.read(path))
    if which == 'key':
        # Character 55 of the first base64 line is DER byte 41 of the PKCS#8 P-256 key: inside the private scalar
        # (bytes 36 to 67), so the key still loads but no longer belongs to the cert.
        middle = data.index(b'\n') + 1 + 55
    else:
        middle = data.index(b'\n', len(data) // 3) + 5  # a base64 character inside the first PEM block
    data[middle] = ord('A') if data[middle] != ord('A') else ord('B')
    pki.write(path, bytes(data), pki.mode_of(path))
    del full_checks[:]
    second = issue(pki, ca_dir, out_dir)[1]['web1']
    assert second['action'] == action and second['reason'] in reasons
    if which == 'bundle':
        assert len(full_checks) == 1
        key_path, cert_path, bundle_path = paths(out_dir)
        assert pki.read(bundle_path) == pki.read(cert_path) + pki.read(os.path.join(ca_dir, 'ca-cert.pem'))
    del full_checks[:]
    third = issue(pki, ca_dir, out_dir)[1]['web1']
    assert third['reason'] == 'up to date' and full_checks == [], 'what the fix wrote is recorded again'


def test_digest_match_within_the_renew_window_is_renewed(ca_dir, out_dir, pki):
    first = issue(pki, ca_dir, out_dir, [entry(valid_days=60)])[1]['web1']
    later = pki.now() + 40 * DAY
    second = issue(pki, ca_dir, out_dir, [entry(valid_days=60)], renew_days=30, now=later)[1]['web1']
    assert second['action'] == 'issue' and second['reason'].startswith('expires in ')
    assert second['serial'] != first['serial']


def test_digest_match_with_a_new_san_is_reissued(ca_dir, out_dir, pki):
    first = issue(pki, ca_dir, out_dir)[1]['web1']
    wider = entry(dns=['web1.example.com', 'web1', 'www.example.com'])
    second = issue(pki, ca_dir, out_dir, [wider])[1]['web1']
    assert second['action'] == 'issue' and second['reason'] == 'request changed: dns'
    assert second['serial'] != first['serial']
    assert crypto.sans(pki.load_cert(paths(out_dir)[1]))[0] == ['web1', 'web1.example.com', 'www.example.com']


@pytest.mark.parametrize('change, field', [({'key_type': 'rsa2048'}, 'key_type'), ({'usage': 'client'}, 'usage'),
                                           ({'ip': ['10.0.0.9']}, 'ip'), ({'common_name': 'other'}, 'common_name')])
def test_digest_match_with_another_key_type_usage_ip_or_name_goes_to_the_full_check(
        ca_dir, out_dir, pki, full_checks, change, field):
    """The files' bytes match what was recorded, but the request is not what they were issued for."""
    first = issue(pki, ca_dir, out_dir)[1]['web1']
    del full_checks[:]
    second = issue(pki, ca_dir, out_dir, [entry(**change)])[1]['web1']
    assert len(full_checks) == 1
    assert second['action'] == 'issue' and second['reason'].startswith('request changed: ') and field.split('_')[0] \
        in second['reason'], second['reason']
    assert second['serial'] != first['serial']


def test_digest_match_of_a_revoked_serial_is_reissued(ca_dir, out_dir, pki):
    first = issue(pki, ca_dir, out_dir)[1]['web1']
    pki.write(os.path.join(ca_dir, 'revoked.json'),
              json.dumps({'crl_number': 1, 'revoked': [{'serial': first['serial']}]}).encode())
    second = issue(pki, ca_dir, out_dir)[1]['web1']
    assert second['action'] == 'issue' and second['reason'] == 'revoked'


def test_modes_changed_with_the_same_bytes_are_fixed(ca_dir, out_dir, pki):
    issue(pki, ca_dir, out_dir)
    key_path, cert_path, dummy = paths(out_dir)
    os.chmod(key_path, 0o644)
    second = issue(pki, ca_dir, out_dir)[1]['web1']
    assert second['action'] == 'update' and second['reason'] == 'file modes (key 0600, cert 0644)'
    assert pki.mode_of(key_path) == 0o600


def test_a_ca_cert_renewed_with_the_same_key_gets_the_full_check(ca_dir, out_dir, pki, full_checks):
    """The digest covers the CA's fingerprint: another CA cert, even for the same key, re-checks every leaf."""
    first = issue(pki, ca_dir, out_dir)[1]['web1']
    ca = load_ca(ca_dir)
    builder = (crypto.x509.CertificateBuilder().subject_name(ca.cert.subject).issuer_name(ca.cert.subject)
               .public_key(ca.key.public_key()).serial_number(crypto.random_serial())
               .not_valid_before(pki.now() - DAY).not_valid_after(pki.now() + 5000 * DAY))
    for extension in ca.cert.extensions:
        builder = builder.add_extension(extension.value, critical=extension.critical)
    pki.write(os.path.join(ca_dir, 'ca-cert.pem'), crypto.cert_pem(crypto.sign(builder, ca.key)), 0o644)
    del full_checks[:]
    second = issue(pki, ca_dir, out_dir)[1]['web1']
    assert len(full_checks) == 1
    assert second['action'] == 'update' and second['serial'] == first['serial']
    del full_checks[:]
    assert issue(pki, ca_dir, out_dir)[1]['web1']['reason'] == 'up to date' and full_checks == []


def test_the_same_ca_cert_in_other_bytes_gets_the_full_check(ca_dir, out_dir, pki, full_checks):
    """The CA is known by its file's bytes: the same certificate written otherwise (CRLF line ends) is not taken
    for the one the digests were recorded with; the full check finds the leaf valid and only the bundle is
    rewritten."""
    first = issue(pki, ca_dir, out_dir)[1]['web1']
    ca_pem = pki.read(ca_cert_path(ca_dir))
    pki.write(ca_cert_path(ca_dir), ca_pem.replace(b'\n', b'\r\n'), 0o644)
    assert load_ca(ca_dir).cert == load_ca(ca_dir).cert and crypto.load_cert(ca_pem, 'x') == load_ca(ca_dir).cert
    del full_checks[:]
    second = issue(pki, ca_dir, out_dir)[1]['web1']
    assert len(full_checks) == 1
    assert second['action'] == 'update' and second['reason'] == 'bundle missing or out of date'
    assert second['serial'] == first['serial']
    del full_checks[:]
    assert issue(pki, ca_dir, out_dir)[1]['web1']['reason'] == 'up to date' and full_checks == []


def _drop_digests(pki, ca_dir):
    data = metadata(ca_dir)
    for record in data['certs'].values():
        record.pop(store.FILES_DIGEST, None)
    pki.write(os.path.join(ca_dir, 'metadata.json'), (json.dumps(data, indent=1, sort_keys=True) + '\n').encode())


def test_metadata_from_before_digests_works_and_is_not_rewritten(ca_dir, out_dir, pki, tmp_path, full_checks):
    """An older PKI dir: full checks, changed=false, no write; its digests are recorded with the next change."""
    first = issue(pki, ca_dir, out_dir, [entry('web1'), entry('web2')])[1]
    _drop_digests(pki, ca_dir)
    before, times = pki.snapshot(tmp_path), mtimes(tmp_path)
    del full_checks[:]
    issuer, second = issue(pki, ca_dir, out_dir, [entry('web1'), entry('web2')])
    assert issuer.changed is False and len(full_checks) == 2
    assert [second[name]['serial'] for name in ('web1', 'web2')] == [first[name]['serial'] for name in ('web1', 'web2')]
    assert pki.snapshot(tmp_path) == before and mtimes(tmp_path) == times
    # A run that writes metadata.json anyway (a new cert) records the older certs' digests along with it.
    issuer, third = issue(pki, ca_dir, out_dir, [entry('web1'), entry('web2'), entry('web3')])
    assert [third[name]['action'] for name in ('web1', 'web2', 'web3')] == ['none', 'none', 'issue']
    assert all(record.get(store.FILES_DIGEST) for record in metadata(ca_dir)['certs'].values())
    del full_checks[:]
    assert issue(pki, ca_dir, out_dir, [entry('web1'), entry('web2'), entry('web3')])[0].changed is False
    assert full_checks == []


def test_check_mode_of_a_rerun_takes_the_fast_path_too(ca_dir, out_dir, pki, tmp_path, full_checks):
    issue(pki, ca_dir, out_dir)
    before = pki.snapshot(tmp_path)
    del full_checks[:]
    issuer, results = issue(pki, ca_dir, out_dir, check_mode=True)
    assert issuer.changed is False and results['web1']['reason'] == 'up to date' and full_checks == []
    assert pki.snapshot(tmp_path) == before


def test_metadata_json_is_one_line_per_cert_and_still_json(ca_dir, out_dir, pki):
    issue(pki, ca_dir, out_dir, [entry('web1'), entry('web2')])
    with open(os.path.join(ca_dir, 'metadata.json')) as handle:
        lines = handle.read().splitlines()
    assert lines[0] == '{"certs": {'
    assert lines[1].startswith('"web1": {') and lines[2].startswith('"web2": {')
    assert sorted(metadata(ca_dir)) == ['ca', 'certs', 'format']


@pytest.mark.parametrize('request_entry', [
    entry(),
    entry(ip=['10.0.0.7', '2001:db8::1'], usage='both', key_type='ed25519'),
    entry(common_name='web1', dns=['B.example.com', 'a.example.com'], usage='client', key_type='ec-p384'),
    entry(dns=[], ip=['192.0.2.5'], key_type='rsa2048'),
])
def test_recorded_facts_of_an_issued_cert_are_those_parsed_from_it(ca_dir, out_dir, pki, request_entry):
    """Issuance records the facts from the request the cert was built of: they must equal what the cert says."""
    issue(pki, ca_dir, out_dir, [request_entry])
    record = metadata(ca_dir)['certs']['web1']
    parsed = store.cert_facts(pki.load_cert(paths(out_dir)[1]))
    assert dict((key, record[key]) for key in parsed) == parsed
    assert record['history'][-1]['not_after'] == parsed['not_after']


def test_a_temp_name_already_taken_is_not_written_through(tmp_path, pki):
    """A file of our pid's temp name (a killed run whose pid came round again, or anyone who can write the dir) is
    left alone: the write goes to a fresh mkstemp file instead."""
    directory = str(tmp_path)
    taken = os.path.join(directory, '%sweb1-key.pem.%d' % (files.TMP_PREFIX, os.getpid()))
    pki.write(taken, b'not ours', 0o644)
    written = files.write_temp(directory, 'web1-key.pem', b'new content', 0o600)
    assert written != taken and os.path.basename(written).startswith(files.TMP_PREFIX + 'web1-key.pem.')
    assert pki.read(taken) == b'not ours' and pki.read(written) == b'new content' and pki.mode_of(written) == 0o600
    os.unlink(taken)
    again = files.write_temp(directory, 'web1-key.pem', b'again', 0o644)
    assert again == taken and pki.read(again) == b'again' and pki.mode_of(again) == 0o644


@pytest.mark.parametrize('value', [
    '10.0.0.1', '10.0.0', '010.0.0.1', '1.2.3.4.', '', '.', '256.1.1.1', '167772161', 'fd00::1', '::', '::ffff:10.0.0.1',
    'fe80::1%eth0', 'fe80::1%', 'host', 'web1.example.com', '1e100.net', 'a:b', 'g::1', '1.2.3.4 ', u'\u0661.2.3.4',
    '*.example.com', 'xn--bcher-kva.example',
])
def test_is_ip_answers_as_ipaddress_does(value):
    """is_ip answers host names without parsing them (parse_requests asks four times per name): same answers."""
    try:
        ipaddress.ip_address(value)
        expected = True
    except ValueError:
        expected = False
    assert crypto.is_ip(value) is expected


def test_one_batch_of_mixed_usages_and_key_kinds_gets_each_its_own_extensions(ca_dir, out_dir, pki):
    """build_leaf_cert shares extensions across a batch per usage and key kind: none may leak into another cert."""
    wanted = {
        'srv-ec': ('server', 'ec-p256'), 'cli-rsa': ('client', 'rsa2048'), 'both-ec': ('both', 'ec-p384'),
        'srv-rsa': ('server', 'rsa2048'), 'cli-ed': ('client', 'ed25519'),
    }
    certs = [entry(name, usage=usage, key_type=key_type) for name, (usage, key_type) in sorted(wanted.items())]
    issue(pki, ca_dir, out_dir, certs)
    ca_key_identifier = load_ca(ca_dir).key_identifier
    for name, (usage, key_type) in wanted.items():
        cert = pki.load_cert(paths(out_dir, name)[1])
        assert crypto.usage_of(cert) == usage and crypto.key_type_of(cert.public_key()) == key_type
        key_usage = pki.ext(cert, crypto.x509.KeyUsage).value
        assert key_usage.digital_signature and key_usage.key_encipherment is key_type.startswith('rsa')
        assert pki.ext(cert, crypto.x509.AuthorityKeyIdentifier).value.key_identifier == ca_key_identifier
        assert crypto.sans(cert) == (sorted([name, '%s.example.com' % name]), [])
        rc, output = pki.openssl_verify(os.path.join(ca_dir, 'ca-cert.pem'), paths(out_dir, name)[1])
        assert rc == 0, output


@pytest.mark.parametrize('key_type', ['ec-p256', 'ec-p384', 'rsa2048', 'ed25519'])
def test_key_signs_for_its_own_public_key_only(key_type):
    key, other = crypto.generate_key(key_type), crypto.generate_key(key_type)
    assert crypto.key_signs_for(key, key.public_key())
    assert not crypto.key_signs_for(key, other.public_key())
    assert not crypto.key_signs_for(key, crypto.generate_key('ec-p256' if key_type != 'ec-p256' else 'ed25519')
                                    .public_key())


def test_the_renew_window_edge_is_decided_as_the_full_check_decides(ca_dir, out_dir, pki):
    """At exactly renew_days before the end (to the second) the record alone does not decide: renewed either way."""
    first = issue(pki, ca_dir, out_dir, [entry(valid_days=60)])[1]['web1']
    end = crypto.parse_iso8601(first['not_after'])
    for offset in (datetime.timedelta(0), datetime.timedelta(microseconds=500000)):
        kept = issue(pki, ca_dir, out_dir, [entry(valid_days=60)], renew_days=30,
                     now=end - 30 * DAY - datetime.timedelta(seconds=1) + offset)[1]['web1']
        assert kept['reason'] == 'up to date' and kept['serial'] == first['serial']
    renewed = issue(pki, ca_dir, out_dir, [entry(valid_days=60)], renew_days=30,
                    now=end - 30 * DAY + datetime.timedelta(microseconds=1))[1]['web1']
    assert renewed['action'] == 'issue' and renewed['reason'].startswith('expires in ')


@pytest.mark.parametrize('text', ['2027-11-30T04:00:00Z', '1999-01-01T00:00:59Z', '2050-12-31T23:59:59Z'])
def test_recorded_times_parse_as_parse_iso8601_does(text):
    assert _parse_recorded_time(text) == crypto.parse_iso8601(text)
    assert crypto.iso8601(_parse_recorded_time(text)) == text


def test_an_explicit_common_name_is_checked_when_it_is_not_among_the_dns_names(tmp_path):
    with pytest.raises(PkiError) as caught:
        parse_requests([{'name': 'web1', 'dns': ['web1.example.com'], 'common_name': 'bad_name'}], str(tmp_path))
    assert 'common_name' in str(caught.value) and 'bad_name' in str(caught.value)
    request = parse_requests([{'name': 'web1', 'dns': ['Web1.Example.com'], 'common_name': 'WEB1.example.com'}],
                             str(tmp_path))[0]
    assert request.dns == ['web1.example.com'] and request.common_name == 'WEB1.example.com'


# -- short-lived certificates, renewal at a share of the life, splay --------------------------------------------------

HOUR = datetime.timedelta(hours=1)


def _renew_bounds(result):
    """(earliest, latest) moment the default policy may renew a certificate: 1/2 and 1/3 of its life left."""
    not_after = crypto.parse_iso8601(result['not_after'])
    lifetime = datetime.timedelta(hours=24) + store.BACKDATE
    return not_after - lifetime / 2, not_after - lifetime / 3


def test_valid_hours_issues_a_short_lived_certificate_and_a_rerun_keeps_it(ca_dir, out_dir, pki):
    issuer, first = issue(pki, ca_dir, out_dir, [entry(valid_hours=1)])
    cert = pki.load_cert(paths(out_dir)[1])
    assert crypto.not_after(cert) - crypto.not_before(cert) == HOUR + store.BACKDATE
    renew_at = crypto.parse_iso8601(first['web1']['renew_at'])
    # Default policy: due between 1/2 and 1/3 of the life left.
    lifetime = HOUR + store.BACKDATE
    assert crypto.not_after(cert) - lifetime / 2 - datetime.timedelta(seconds=1) <= renew_at
    assert renew_at <= crypto.not_after(cert) - lifetime / 3
    dummy, again = issue(pki, ca_dir, out_dir, [entry(valid_hours=1)])
    assert again['web1']['action'] == 'none' and again['web1']['renew_at'] == first['web1']['renew_at']


def test_valid_hours_takes_fractions_down_to_six_minutes_backdated_a_twelfth(ca_dir, out_dir, pki):
    # A compressed test fleet (and step-ca's 5-minute floor): 0.1 h is 6 minutes. notBefore is backdated a twelfth
    # of the validity up to store.BACKDATE, or the 5 minutes alone would be most of the life the fraction is of.
    dummy, first = issue(pki, ca_dir, out_dir, [entry(valid_hours=0.1)])
    cert = pki.load_cert(paths(out_dir)[1])
    assert crypto.not_after(cert) - crypto.not_before(cert) == datetime.timedelta(minutes=6, seconds=30)
    renew_at = crypto.parse_iso8601(first['web1']['renew_at'])
    lifetime = datetime.timedelta(minutes=6, seconds=30)
    assert crypto.not_after(cert) - lifetime / 2 - datetime.timedelta(seconds=1) <= renew_at
    assert renew_at <= crypto.not_after(cert) - lifetime / 3
    dummy, again = issue(pki, ca_dir, out_dir, [entry(valid_hours=0.1)])
    assert again['web1']['action'] == 'none'
    dummy, renewed = issue(pki, ca_dir, out_dir, [entry(valid_hours=0.1)], now=renew_at + datetime.timedelta(seconds=2))
    assert renewed['web1']['action'] == 'issue' and ' min of 6 min left' in renewed['web1']['reason']
    # 9 minutes lowered to 6: re-issued at once (the allowance for the backdating is a twelfth here, not 5 minutes).
    issue(pki, ca_dir, out_dir, [entry(valid_hours=0.15)], force=True)
    dummy, lowered = issue(pki, ca_dir, out_dir, [entry(valid_hours=0.1)])
    assert lowered['web1']['reason'] == 'request changed: validity (valid_hours 0.1)'
    dummy, longer = issue(pki, ca_dir, out_dir, [entry(valid_hours='1.5')], force=True)
    cert = pki.load_cert(paths(out_dir)[1])
    assert crypto.not_after(cert) - crypto.not_before(cert) == datetime.timedelta(minutes=90) + store.BACKDATE


def test_a_certificate_is_renewed_at_its_renewal_point_not_before(ca_dir, out_dir, pki):
    dummy, first = issue(pki, ca_dir, out_dir, [entry(valid_hours=24)])
    renew_at = crypto.parse_iso8601(first['web1']['renew_at'])
    earliest, latest = _renew_bounds(first['web1'])
    assert earliest - datetime.timedelta(seconds=1) <= renew_at <= latest
    # A minute before: kept (from the record alone, and by the full check once the digest is gone).
    dummy, kept = issue(pki, ca_dir, out_dir, [entry(valid_hours=24)], now=renew_at - datetime.timedelta(minutes=1))
    assert kept['web1']['action'] == 'none'
    record = metadata(ca_dir)
    del record['certs']['web1'][store.FILES_DIGEST]
    pki.write(os.path.join(ca_dir, store.METADATA_NAME), json.dumps(record).encode())
    dummy, kept = issue(pki, ca_dir, out_dir, [entry(valid_hours=24)], now=renew_at - datetime.timedelta(minutes=1))
    assert kept['web1']['action'] == 'none'
    # A minute after: renewed, and the reason says why in hours.
    dummy, renewed = issue(pki, ca_dir, out_dir, [entry(valid_hours=24)], now=renew_at + datetime.timedelta(minutes=1))
    assert renewed['web1']['action'] == 'issue'
    assert renewed['web1']['reason'].startswith('due for renewal: ')
    assert ' h of 24.1 h left' in renewed['web1']['reason'] and 'renew_fraction 0.333' in renewed['web1']['reason']


def test_a_batch_issued_together_comes_due_spread_over_the_splay_window(ca_dir, out_dir, pki):
    certs = [entry('host%02d' % number, valid_hours=24) for number in range(60)]
    dummy, first = issue(pki, ca_dir, out_dir, certs)
    moments = sorted(crypto.parse_iso8601(result['renew_at']) for result in first.values())
    earliest, latest = _renew_bounds(next(iter(first.values())))
    assert earliest - datetime.timedelta(seconds=2) <= moments[0] and moments[-1] <= latest + datetime.timedelta(seconds=2)
    # Spread over most of the 4 hour window (not all due in one run): 60 draws leave no gap of an hour.
    assert moments[-1] - moments[0] > 3 * HOUR
    assert max(b - a for a, b in zip(moments, moments[1:])) < HOUR
    # At the middle of the window about half are due; the rest stay, and are due later.
    middle = moments[0] + (moments[-1] - moments[0]) / 2
    dummy, mid = issue(pki, ca_dir, out_dir, certs, now=middle)
    renewed = sum(result['action'] == 'issue' for result in mid.values())
    assert 10 < renewed < 50
    # Renewed ones draw a new point (new serial), so they stay spread.
    new_points = [crypto.parse_iso8601(result['renew_at']) for result in mid.values() if result['action'] == 'issue']
    assert len(set(new_points)) > renewed // 2


def test_renew_days_alone_keeps_its_meaning_without_splay(ca_dir, out_dir, pki):
    dummy, first = issue(pki, ca_dir, out_dir, [entry(valid_days=60)], renew_days=30)
    not_after = crypto.parse_iso8601(first['web1']['not_after'])
    assert crypto.parse_iso8601(first['web1']['renew_at']) == not_after - 30 * DAY


def test_both_margins_the_larger_applies(ca_dir, out_dir, pki):
    dummy, first = issue(pki, ca_dir, out_dir, [entry(valid_days=90)], renew_days=10, renew_fraction=0.5,
                         renew_splay=0)
    not_after = crypto.parse_iso8601(first['web1']['not_after'])
    lifetime = 90 * DAY + store.BACKDATE
    assert crypto.parse_iso8601(first['web1']['renew_at']) == not_after - lifetime / 2
    dummy, first = issue(pki, ca_dir, out_dir, [entry(valid_days=90)], renew_days=60, renew_fraction=0.5,
                         renew_splay=0)
    assert crypto.parse_iso8601(first['web1']['renew_at']) == not_after - 60 * DAY


def test_a_shorter_validity_asked_reissues_at_once(ca_dir, out_dir, pki):
    issue(pki, ca_dir, out_dir, [entry(valid_days=365)])
    dummy, moved = issue(pki, ca_dir, out_dir, [entry(valid_hours=24)])
    assert moved['web1']['action'] == 'issue'
    assert moved['web1']['reason'] == 'request changed: validity (valid_hours 24)'
    # A longer validity asked is not a reason: renewed when due.
    dummy, longer = issue(pki, ca_dir, out_dir, [entry(valid_hours=48)])
    assert longer['web1']['action'] == 'none'
