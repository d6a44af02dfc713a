# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""served.py against real TLS servers on 127.0.0.1 (certificates from the collection's own engine), no mocks."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import os
import ssl

import pytest

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto, files
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.served import inspect_endpoints

DAY = datetime.timedelta(days=1)


@pytest.fixture
def lab(tmp_path, ca_dir, out_dir, pki):
    """A CA, two server certs (redis-r1, redis-r2), a client cert, and a foreign CA's server cert."""
    pki.issue(ca_dir, [{'name': 'redis-r1', 'dns': ['r1.example.com']}, {'name': 'redis-r2', 'dns': ['r2']},
                       {'name': 'client-w1', 'dns': ['w1'], 'usage': 'client'}], default_dir=out_dir)
    other_ca = str(tmp_path / 'other-ca')
    pki.make_ca(other_ca)
    other_out = str(tmp_path / 'other')
    pki.issue(other_ca, [{'name': 'redis-r1', 'dns': ['r1.example.com']}], default_dir=other_out)

    def path(name, kind='cert', directory=out_dir):
        return os.path.join(directory, '%s-%s.pem' % (name, kind))
    return {'ca': os.path.join(ca_dir, 'ca-cert.pem'), 'path': path, 'other': other_out, 'ca_dir': ca_dir,
            'out': out_dir}


def serial_of(path):
    return crypto.serial_hex(crypto.load_cert(files.read_bytes(path), path))


def one(endpoint, **kwargs):
    report = inspect_endpoints([endpoint], **kwargs)
    assert sum(report['endpoint_counts'].values()) == 1
    return report['endpoints'][0]


def test_served_cert_matches_its_file_and_verifies(lab, tls_server):
    server = tls_server(lab['path']('redis-r1'), lab['path']('redis-r1', 'key'))
    entry = one({'name': 'redis-r1', 'host': '127.0.0.1', 'port': server.port, 'server_name': 'r1.example.com',
                 'cert_path': lab['path']('redis-r1')}, ca_path=lab['ca'])
    cert = crypto.load_cert(files.read_bytes(lab['path']('redis-r1')), 'x')
    assert entry == dict(entry, name='redis-r1', host='127.0.0.1', port=server.port, reachable=True, error=None,
                         serial=crypto.serial_hex(cert), file_serial=crypto.serial_hex(cert),
                         not_after=crypto.iso8601(crypto.not_after(cert)), matches_file=True, chain_verified=True,
                         fingerprint_sha256=crypto.fingerprint_sha256(cert), status='ok')
    assert entry['days_remaining'] in (364, 365) and 0 < entry['seconds_remaining'] <= 365 * 86400
    assert 'r1.example.com' in server.seen_sni  # SNI sent for a DNS name (both handshakes)


def test_no_sni_for_an_ip_and_nulls_without_cert_path_or_ca(lab, tls_server):
    server = tls_server(lab['path']('redis-r1'), lab['path']('redis-r1', 'key'))
    entry = one({'name': 'r1', 'host': '127.0.0.1', 'port': server.port})
    assert entry['status'] == 'ok' and entry['reachable'] is True
    assert entry['matches_file'] is None and entry['file_serial'] is None and entry['chain_verified'] is None
    assert server.seen_sni == [None]


def test_mismatch_when_the_service_serves_another_cert(lab, tls_server):
    server = tls_server(lab['path']('redis-r2'), lab['path']('redis-r2', 'key'))
    report = inspect_endpoints([{'name': 'r1', 'host': '127.0.0.1', 'port': server.port,
                                 'cert_path': lab['path']('redis-r1')}], ca_path=lab['ca'])
    entry = report['endpoints'][0]
    assert entry['matches_file'] is False and entry['chain_verified'] is True
    assert entry['serial'] == serial_of(lab['path']('redis-r2'))
    assert entry['file_serial'] == serial_of(lab['path']('redis-r1'))
    assert entry['status'] == 'mismatch' and report['endpoint_counts']['mismatch'] == 1
    assert 'serves serial %s' % entry['serial'] in entry['error']


def test_unreadable_cert_path_is_a_mismatch(lab, tls_server, tmp_path):
    server = tls_server(lab['path']('redis-r1'), lab['path']('redis-r1', 'key'))
    missing = str(tmp_path / 'gone-cert.pem')
    entry = one({'name': 'r1', 'host': '127.0.0.1', 'port': server.port, 'cert_path': missing})
    assert entry['status'] == 'mismatch' and entry['matches_file'] is False
    assert 'cert_path %s cannot be read' % missing in entry['error']


def test_foreign_chain_is_broken(lab, tls_server):
    server = tls_server(lab['path']('redis-r1', directory=lab['other']),
                        lab['path']('redis-r1', 'key', directory=lab['other']))
    entry = one({'name': 'r1', 'host': '127.0.0.1', 'port': server.port, 'cert_path': lab['path']('redis-r1')},
                ca_path=lab['ca'])
    assert entry['reachable'] is True and entry['chain_verified'] is False and entry['matches_file'] is False
    assert entry['status'] == 'broken'
    assert 'chain does not verify against %s' % lab['ca'] in entry['error']


def test_expired_served_cert_is_expired_not_broken(lab, tls_server, pki, tmp_path):
    ca = pki.make_ca(lab['ca_dir']).existing
    now = pki.now()
    cert_path, key_path = pki.hand_leaf(str(tmp_path / 'old'), 'redis-old', ca.key, ca.cert, now - 100 * DAY,
                                        now - DAY)
    server = tls_server(cert_path, key_path)
    entry = one({'name': 'old', 'host': '127.0.0.1', 'port': server.port, 'cert_path': cert_path},
                ca_path=lab['ca'])
    assert entry['status'] == 'expired' and entry['chain_verified'] is True and entry['matches_file'] is True
    assert entry['days_remaining'] < 0 and entry['seconds_remaining'] < 0
    expiring = one({'name': 'r', 'host': '127.0.0.1', 'port': server.port}, warn_days=0)
    assert expiring['status'] == 'expired'


def test_expiring_within_warn_days(lab, tls_server):
    server = tls_server(lab['path']('redis-r1'), lab['path']('redis-r1', 'key'))
    entry = one({'name': 'r1', 'host': '127.0.0.1', 'port': server.port}, warn_days=400)
    assert entry['status'] == 'expiring' and entry['error'] is None


def test_unreachable_port(closed_port):
    report = inspect_endpoints([{'name': 'gone', 'host': '127.0.0.1', 'port': closed_port, 'timeout': 2}])
    entry = report['endpoints'][0]
    assert entry['reachable'] is False and entry['status'] == 'unreachable'
    assert entry['serial'] is None and entry['not_after'] is None and entry['matches_file'] is None
    assert '127.0.0.1:%d' % closed_port in entry['error'] and 'refused' in entry['error'].lower()
    assert report['endpoint_counts'] == {'ok': 0, 'expiring': 0, 'expired': 0, 'unreachable': 1, 'mismatch': 0,
                                         'broken': 0}


def test_client_cert_needed_under_tls12(lab, tls_server):
    """TLS 1.2: a server requiring a client cert fails the handshake without one; with one it is inspected."""
    server = tls_server(lab['path']('redis-r1'), lab['path']('redis-r1', 'key'), client_ca=lab['ca'],
                        max_version=ssl.TLSVersion.TLSv1_2)
    base = {'name': 'r1', 'host': '127.0.0.1', 'port': server.port, 'cert_path': lab['path']('redis-r1')}
    refused = one(base, ca_path=lab['ca'])
    assert refused['status'] == 'unreachable' and refused['reachable'] is False and refused['error']
    entry = one(dict(base, client_cert=lab['path']('client-w1'), client_key=lab['path']('client-w1', 'key')),
                ca_path=lab['ca'])
    assert entry['status'] == 'ok' and entry['matches_file'] is True and entry['chain_verified'] is True
    key_text = files.read_bytes(lab['path']('client-w1', 'key')).decode('ascii')
    body = ''.join(key_text.splitlines()[1:-1])
    assert body[:40] not in repr(entry) and body[:40] not in repr(refused)


def test_client_cert_required_under_tls13_still_shows_the_cert(lab, tls_server):
    """Redis with TLS 1.3: the client side completes before the server refuses the missing client cert."""
    server = tls_server(lab['path']('redis-r1'), lab['path']('redis-r1', 'key'), client_ca=lab['ca'],
                        max_version=ssl.TLSVersion.TLSv1_3)
    entry = one({'name': 'r1', 'host': '127.0.0.1', 'port': server.port, 'cert_path': lab['path']('redis-r1')},
                ca_path=lab['ca'])
    assert entry['reachable'] is True and entry['matches_file'] is True
    assert entry['chain_verified'] is True and entry['status'] == 'ok'


def test_bad_client_identity_is_reported_by_path(lab, tls_server, tmp_path):
    server = tls_server(lab['path']('redis-r1'), lab['path']('redis-r1', 'key'))
    missing = str(tmp_path / 'none-key.pem')
    entry = one({'name': 'r1', 'host': '127.0.0.1', 'port': server.port, 'client_cert': lab['path']('client-w1'),
                 'client_key': missing})
    assert entry['status'] == 'unreachable' and missing in entry['error']


def test_order_is_kept_and_inputs_checked(lab, tls_server, closed_port):
    server = tls_server(lab['path']('redis-r1'), lab['path']('redis-r1', 'key'))
    report = inspect_endpoints([{'name': 'z', 'host': '127.0.0.1', 'port': closed_port, 'timeout': 1},
                                {'name': 'a', 'host': '127.0.0.1', 'port': server.port}])
    assert [entry['name'] for entry in report['endpoints']] == ['z', 'a']
    assert [entry['status'] for entry in report['endpoints']] == ['unreachable', 'ok']
    for endpoints, needle in (([{'name': 'a', 'host': 'h', 'port': 1}, {'name': 'a', 'host': 'h', 'port': 2}],
                               'name a is given twice'),
                              ([{'name': 'a', 'host': 'h', 'port': 70000}], 'not a TCP port'),
                              ([{'name': 'a', 'host': '', 'port': 1}], 'has no host'),
                              ([{'name': 'a', 'host': 'h', 'port': 1, 'client_key': '/k'}], 'client_key without')):
        with pytest.raises(PkiError, match=needle):
            inspect_endpoints(endpoints)


def test_silent_ports_time_out_at_once_not_one_after_the_other():
    """A port that accepts TCP but never answers the TLS hello: each endpoint times out after its timeout, and
    several of them are waited for together."""
    import socket
    import time
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(('127.0.0.1', 0))
    silent.listen(16)  # never accepted: the kernel completes the TCP handshake, nobody speaks TLS
    try:
        port = silent.getsockname()[1]
        started = time.monotonic()
        report = inspect_endpoints([{'name': 'quiet%d' % index, 'host': '127.0.0.1', 'port': port, 'timeout': 1.0}
                                    for index in range(4)])
        took = time.monotonic() - started
    finally:
        silent.close()
    assert [entry['status'] for entry in report['endpoints']] == ['unreachable'] * 4
    assert all('timed out' in entry['error'] for entry in report['endpoints']), report
    assert 0.9 < took < 3.0, took


def test_renewal_points_of_files_and_served_certificates_are_pki_leafs(tls_server, ca_dir, out_dir, pki):
    """With pki_leaf's renewal policy, cert_expiry puts each renewal point where pki_leaf does (the splay drawn from
    the file's name): an alert can then fire on a renewal overdue whatever the validity. Without it, none."""
    from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.inspect import CertInspector
    from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.metrics import render
    from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.renewal import RenewalPolicy
    dummy, issued = pki.issue(ca_dir, [{'name': 'api-a%d' % number, 'dns': ['a%d' % number], 'valid_hours': 0.1}
                                       for number in range(6)], default_dir=out_dir, renew_fraction=0.5,
                              renew_splay=0.5)
    policy = RenewalPolicy(None, 0.5, 0.5)
    report = CertInspector([out_dir], policy=policy).inspect()
    assert len(report['certs']) == 6
    for entry in report['certs']:
        name = os.path.basename(entry['path'])[:-len('-cert.pem')]
        assert entry['renew_at'] == issued[name]['renew_at']
    assert len(set(entry['renew_at'] for entry in report['certs'])) > 1  # the splay, per name and serial
    path = os.path.join(out_dir, 'api-a3-cert.pem')
    server = tls_server(path, os.path.join(out_dir, 'api-a3-key.pem'))
    served = one({'name': 'api-api1', 'host': '127.0.0.1', 'port': server.port, 'server_name': 'a3',
                  'cert_path': path}, policy=policy)
    assert served['renew_at'] == issued['api-a3']['renew_at']
    text = render(report['certs'], endpoints=[served])
    assert text.count('fleetpki_cert_renew_at_seconds{') == 6
    assert text.count('fleetpki_served_cert_renew_at_seconds{') == 1
    # Without the policy: no renewal point, and the textfile is as before (no empty renew_at metric).
    plain = CertInspector([out_dir]).inspect()
    assert all(entry['renew_at'] is None for entry in plain['certs'])
    unnamed = one({'name': 'x', 'host': '127.0.0.1', 'port': server.port, 'server_name': 'a3'})
    assert 'renew_at' not in render(plain['certs'], endpoints=[unnamed])


def test_a_certificate_ending_with_its_ca_has_no_renewal_point(tmp_path, pki):
    """pki_leaf never renews a certificate clamped to its CA's end (a new one could not live longer): no renew_at,
    so no renewal-overdue alert sends the operator to a timer that works; renewing the CA is the fix."""
    from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.inspect import CertInspector
    from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.renewal import RenewalPolicy
    ca_dir, out = tmp_path / 'ca', str(tmp_path / 'out')
    pki.make_ca(str(ca_dir), valid_days=20)
    dummy, issued = pki.issue(str(ca_dir), [{'name': 'api-a1', 'dns': ['a1'], 'valid_days': 10},
                                            {'name': 'api-a2', 'dns': ['a2'], 'valid_days': 30}], default_dir=out,
                              renew_days=1)
    report = CertInspector([out], str(ca_dir / 'ca-cert.pem'), policy=RenewalPolicy(1, None, None)).inspect()
    found = dict((os.path.basename(entry['path']), entry['renew_at']) for entry in report['certs'])
    assert found['api-a1-cert.pem'] == issued['api-a1']['renew_at'] and found['api-a1-cert.pem']
    assert found['api-a2-cert.pem'] is None  # clamped to the CA's 20 days
