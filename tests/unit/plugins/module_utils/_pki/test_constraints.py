# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""nameConstraints on a new CA (pki_ca) and leaves refused outside them (pki_leaf), checked with openssl verify."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import ipaddress
import os

import pytest

from cryptography import x509

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.ca import CaManager
from ansible_collections.fleetpki.mtls.plugins.modules import pki_ca

DAY = datetime.timedelta(days=1)
PERMITTED = {'name_constraints_permitted_dns': ['fleet.example.com', 'localhost'],
             'name_constraints_permitted_ip': ['10.20.0.0/16', '127.0.0.1/32']}


def make_ca(directory, **kwargs):
    manager = CaManager(str(directory), **kwargs)
    manager.plan()
    return manager.apply(), manager


@pytest.fixture
def constrained_ca(tmp_path):
    directory = str(tmp_path / 'ca')
    make_ca(directory, **PERMITTED)
    return directory


def test_new_ca_carries_critical_name_constraints(constrained_ca, pki):
    cert = pki.load_cert(os.path.join(constrained_ca, 'ca-cert.pem'))
    extension = pki.ext(cert, x509.NameConstraints)
    assert extension.critical is True
    assert extension.value.excluded_subtrees is None
    assert set(extension.value.permitted_subtrees) == set([
        x509.DNSName('fleet.example.com'), x509.DNSName('localhost'),
        x509.IPAddress(ipaddress.ip_network(u'10.20.0.0/16')), x509.IPAddress(ipaddress.ip_network(u'127.0.0.1/32'))])


def test_leaves_inside_the_constraints_are_issued_and_verify(constrained_ca, out_dir, pki):
    dummy, results = pki.issue(constrained_ca, [
        {'name': 'redis-redis1', 'dns': ['redis1.fleet.example.com', 'localhost'], 'ip': ['10.20.0.5', '127.0.0.1'],
         'usage': 'both'},
        {'name': 'api', 'dns': ['fleet.example.com', '*.api.fleet.example.com']},
    ], default_dir=out_dir)
    assert all(result['changed'] for result in results.values())
    for name in results:
        rc, output = pki.openssl_verify(os.path.join(constrained_ca, 'ca-cert.pem'),
                                        os.path.join(out_dir, '%s-cert.pem' % name), purpose='sslserver')
        assert rc == 0, output


def test_openssl_itself_refuses_a_leaf_outside_the_constraints(constrained_ca, tmp_path, pki):
    """What pki_leaf's check prevents: a cert every client would refuse."""
    ca_key = pki.load_key(os.path.join(constrained_ca, 'ca-key.pem'))
    ca_cert = pki.load_cert(os.path.join(constrained_ca, 'ca-cert.pem'))
    cert_path, dummy = pki.hand_leaf(tmp_path / 'hand', 'evil', ca_key, ca_cert, pki.now() - DAY, pki.now() + DAY,
                                     dns=('www.bank.example',))
    rc, output = pki.openssl_verify(os.path.join(constrained_ca, 'ca-cert.pem'), cert_path, strict=False)
    assert rc != 0 and 'subtree' in output


@pytest.mark.parametrize('third, needles', [
    ({'name': 'evil', 'dns': ['www.bank.example']}, ["'www.bank.example'", 'fleet.example.com, localhost']),
    ({'name': 'evil', 'dns': ['notfleet.example.com']}, ["'notfleet.example.com'", 'permitted DNS suffixes']),
    ({'name': 'evil', 'dns': ['a.fleet.example.com'], 'ip': ['10.21.0.1']}, ['IP 10.21.0.1', '10.20.0.0/16']),
    ({'name': 'evil', 'ip': ['192.168.1.1']}, ['IP 192.168.1.1', 'permitted IP ranges']),
])
def test_a_leaf_outside_the_constraints_stops_the_batch(constrained_ca, out_dir, pki, tmp_path, third, needles):
    certs = [{'name': 'web1', 'dns': ['web1.fleet.example.com']}, {'name': 'web2', 'dns': ['web2.fleet.example.com']},
             third]
    message = pki.expect_error(lambda: pki.issue(constrained_ca, certs, default_dir=out_dir), tmp_path,
                               'certs[2] (name evil)', *needles)
    assert 'name_constraints_permitted' in message  # says where the fix is
    # Check mode says the same.
    pki.expect_error(lambda: pki.issue(constrained_ca, certs, default_dir=out_dir, check_mode=True), tmp_path,
                     'certs[2] (name evil)')


def test_dns_only_constraints_leave_ips_free(tmp_path, out_dir, pki):
    directory = str(tmp_path / 'ca')
    make_ca(directory, name_constraints_permitted_dns=['fleet.example.com'])
    dummy, results = pki.issue(directory, [{'name': 'web1', 'dns': ['web1.fleet.example.com'], 'ip': ['192.0.2.7']}],
                               default_dir=out_dir)
    assert results['web1']['changed'] is True
    rc, output = pki.openssl_verify(os.path.join(directory, 'ca-cert.pem'), os.path.join(out_dir, 'web1-cert.pem'))
    assert rc == 0, output


@pytest.mark.parametrize('kwargs, needles', [
    ({'name_constraints_permitted_dns': ['*.fleet.example.com']}, ['name_constraints_permitted_dns', "'*.fleet"]),
    ({'name_constraints_permitted_dns': ['.fleet.example.com']}, ['name_constraints_permitted_dns', 'leading dot']),
    ({'name_constraints_permitted_dns': ['fleet..example']}, ['name_constraints_permitted_dns', 'empty label']),
    ({'name_constraints_permitted_ip': ['10.20.0.1/16']}, ['name_constraints_permitted_ip', "'10.20.0.1/16'"]),
    ({'name_constraints_permitted_ip': ['fleet']}, ['name_constraints_permitted_ip', 'CIDR']),
])
def test_bad_constraints_are_refused_before_any_write(tmp_path, pki, kwargs, needles):
    pki.expect_error(lambda: make_ca(tmp_path / 'ca', **kwargs), tmp_path, *needles)


def test_renewal_keeps_the_constraints(constrained_ca, pki):
    result, dummy = make_ca(constrained_ca, renew_days=3651, **PERMITTED)
    assert result['action'] == 'renew'
    cert = pki.load_cert(os.path.join(constrained_ca, 'ca-cert.pem'))
    assert pki.ext(cert, x509.NameConstraints).value.permitted_subtrees is not None
    assert result['name_constraints']['permitted_dns'] == ['fleet.example.com', 'localhost']


def test_existing_ca_without_constraints_is_kept_with_a_warning(ca_dir):
    result, manager = make_ca(ca_dir, **PERMITTED)
    assert result['changed'] is False and result['name_constraints'] is None
    assert len(manager.warnings) == 1 and 'name constraints' in manager.warnings[0]
    assert 'force' in manager.warnings[0]


def test_module_options_and_result(tmp_path, run_module):
    directory = str(tmp_path / 'ca')
    run = run_module(pki_ca, dict(PERMITTED, dir=directory))
    assert run.rc == 0 and run.result['action'] == 'create'
    assert run.result['name_constraints'] == {
        'permitted_dns': ['fleet.example.com', 'localhost'], 'permitted_ip': ['10.20.0.0/16', '127.0.0.1/32'],
        'excluded_dns': [], 'excluded_ip': []}
    again = run_module(pki_ca, dict(PERMITTED, dir=directory))
    assert again.rc == 0 and again.result['changed'] is False and again.warnings == []
