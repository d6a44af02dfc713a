# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pki_leaf's rerun fast path: files whose digest matches metadata.json skip the signature and key checks, while
any changed byte, another CA, a changed request, revocation or the renew window still gets them (real files,
real keys)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import ipaddress
import json
import os

import pytest

from cryptography.hazmat.primitives.asymmetric import ec

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto, files, store
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.ca import load_ca
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.leaf import build_leaf_cert, parse_requests

DAY = datetime.timedelta(days=1)


def entry(name='web1', **kwargs):
    value = {'name': name, 'dns': ['%s.example.com' % name]}
    value.update(kwargs)
    return value


def paths(out_dir, name='web1'):
    return tuple(os.path.join(out_dir, '%s-%s.pem' % (name, kind)) for kind in ('key', 'cert', 'bundle'))


def metadata(ca_dir):
    with open(os.path.join(ca_dir, 'metadata.json')) as handle:
        return json.load(handle)


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
    issuer, results = pki.issue(ca_dir, certs or [entry()], default_dir=out_dir, **kwargs)
    return issuer, results


def test_issue_records_the_digest_of_the_files_and_the_ca(ca_dir, out_dir, pki):
    issue(pki, ca_dir, out_dir)
    key_path, cert_path, bundle_path = paths(out_dir)
    ca_fingerprint = crypto.fingerprint_sha256(load_ca(ca_dir).cert)
    expected = store.files_digest(ca_fingerprint, pki.read(key_path), pki.read(cert_path), pki.read(bundle_path))
    assert metadata(ca_dir)['certs']['web1'][store.FILES_DIGEST] == expected
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


@pytest.mark.parametrize('which, action, reason', [
    ('key', 'issue', 'key unreadable'),
    ('cert', 'issue', 'certificate unreadable'),
    ('bundle', 'update', 'bundle missing or out of date'),
])
def test_one_changed_byte_gets_the_full_check(ca_dir, out_dir, pki, full_checks, which, action, reason):
    issue(pki, ca_dir, out_dir)
    path = dict(zip(('key', 'cert', 'bundle'), paths(out_dir)))[which]
    data = bytearray(pki.read(path))
    middle = data.index(b'\n', len(data) // 3) + 5  # a base64 character inside the first PEM block
    data[middle] = ord('A') if data[middle] != ord('A') else ord('B')
    pki.write(path, bytes(data), pki.mode_of(path))
    del full_checks[:]
    second = issue(pki, ca_dir, out_dir)[1]['web1']
    assert (second['action'], second['reason']) == (action, reason)
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
    wider = entry(dns=['web1.example.com', 'www.example.com'])
    second = issue(pki, ca_dir, out_dir, [wider])[1]['web1']
    assert second['action'] == 'issue' and second['reason'] == 'request changed: dns'
    assert second['serial'] != first['serial']
    assert crypto.sans(pki.load_cert(paths(out_dir)[1]))[0] == ['web1.example.com', 'www.example.com']


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
        assert crypto.sans(cert) == (['%s.example.com' % name], [])
        rc, output = pki.openssl_verify(os.path.join(ca_dir, 'ca-cert.pem'), paths(out_dir, name)[1])
        assert rc == 0, output
