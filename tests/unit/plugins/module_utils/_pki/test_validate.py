# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Inputs of pki_leaf and pki_ca are checked, for the whole batch, before anything is written."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.ca import CaManager
from ansible_collections.fleetpki.mtls.plugins.modules import pki_leaf

LONG_NAME = 'a' * 30 + '.' + 'b' * 30 + '.example.com'  # a valid DNS name of 73 characters: too long for a CN


def batch(third):
    return [{'name': 'web1', 'dns': ['web1.example.com']}, {'name': 'web2', 'dns': ['web2.example.com']}, third]


@pytest.mark.parametrize('third, needles', [
    ({'name': 'web3', 'dns': [LONG_NAME]}, ['certs[2] (name web3)', LONG_NAME, '64']),
    ({'name': 'web3', 'dns': ['*.com']}, ['certs[2] (name web3)', "'*.com'", 'wildcard']),
    ({'name': 'web3', 'dns': ['*.internal']}, ['certs[2] (name web3)', "'*.internal'", 'wildcard']),
    ({'name': 'web3', 'dns': ['12345']}, ['certs[2] (name web3)', "'12345'", 'all-numeric']),
    ({'name': 'web3', 'dns': ['web3.123']}, ['certs[2] (name web3)', "'web3.123'", 'all-numeric']),
    ({'name': 'web3', 'dns': ['web3.example.com.']}, ['certs[2] (name web3)', "'web3.example.com.'", 'trailing dot']),
    ({'name': 'web3', 'dns': ['web3..example.com']}, ['certs[2] (name web3)', "'web3..example.com'", 'empty label']),
    ({'name': 'web3', 'dns': ['x' * 64 + '.example.com']}, ['certs[2] (name web3)', 'x' * 64, '63']),
    ({'name': 'web3', 'dns': ['a.' * 127 + 'com']}, ['certs[2] (name web3)', '253']),
    ({'name': 'web3', 'dns': ['web3.exa*mple.com']}, ['certs[2] (name web3)', "'web3.exa*mple.com'"]),
    ({'name': 'web3', 'dns': ['web3.*.example.com']}, ['certs[2] (name web3)', 'wildcard']),
    ({'name': 'web3', 'dns': [u'b\u00fccher.example']}, ['certs[2] (name web3)', 'xn--']),
    ({'name': 'web3', 'dns': ['web3.example.com'], 'common_name': LONG_NAME},
     ['certs[2] (name web3)', 'common_name', '64']),
    ({'name': 'web3', 'dns': ['web3.example.com'], 'common_name': 'web3\n.example.com'},
     ['certs[2] (name web3)', 'common_name']),
    ({'name': 'web3', 'dns': ['web3.example.com'], 'valid_days': 3651},
     ['certs[2] (name web3)', 'valid_days', '3650']),
    ({'name': 'web3', 'dns': ['web3.example.com'], 'valid_days': 10 ** 9}, ['certs[2] (name web3)', 'valid_days']),
])
def test_a_bad_third_cert_stops_the_batch_before_any_write(ca_dir, out_dir, pki, tmp_path, third, needles):
    pki.expect_error(lambda: pki.issue(ca_dir, batch(third), default_dir=out_dir), tmp_path, *needles)
    assert not os.path.exists(out_dir)


@pytest.mark.parametrize('dns', [['localhost'], ['*.fleet.example.com'], ['redis1'], ['a-1.b-2.example'],
                                 ['x' * 63 + '.example.com'], ['web3.example.com', '127.0.0.1.nip.io']])
def test_usual_names_are_accepted(ca_dir, out_dir, pki, dns):
    dummy, results = pki.issue(ca_dir, [{'name': 'web1', 'dns': dns, 'common_name': 'web1.example.com'}],
                               default_dir=out_dir)
    assert results['web1']['changed'] is True


def test_localhost_stays_a_san_of_the_redis_cert(ca_dir, out_dir, pki):
    dummy, results = pki.issue(ca_dir, [{'name': 'redis-redis1', 'dns': ['redis1', 'localhost'],
                                         'ip': ['127.0.0.1'], 'usage': 'both'}], default_dir=out_dir)
    assert results['redis-redis1']['changed'] is True
    rc, output = pki.openssl_verify(os.path.join(ca_dir, 'ca-cert.pem'), os.path.join(out_dir, 'redis-redis1-cert.pem'),
                                    purpose='sslserver')
    assert rc == 0, output


def test_valid_days_upper_bound_is_accepted(ca_dir, out_dir, pki):
    dummy, results = pki.issue(ca_dir, [{'name': 'web1', 'dns': ['web1'], 'valid_days': 3650}], default_dir=out_dir)
    assert results['web1']['changed'] is True


def test_module_fails_and_writes_nothing_for_a_bad_third_cert(ca_dir, out_dir, pki, tmp_path, run_module):
    before = pki.snapshot(tmp_path)
    run = run_module(pki_leaf, {'ca_dir': ca_dir, 'dir': out_dir, 'certs': batch({'name': 'web3', 'dns': [LONG_NAME]})})
    assert run.rc == 1 and run.result['failed'] is True
    assert 'certs[2] (name web3)' in run.result['msg'] and LONG_NAME in run.result['msg']
    assert run.result.get('changed', False) is False
    assert pki.snapshot(tmp_path) == before


def plan_ca(directory, **kwargs):
    manager = CaManager(str(directory), **kwargs)
    manager.plan()
    manager.apply()


@pytest.mark.parametrize('kwargs, needles', [
    ({'common_name': 'C' * 65}, ['common_name', '65', '64']),
    ({'common_name': 'Acme\nRoot'}, ['common_name', 'control character']),
    ({'common_name': ' Acme Root'}, ['common_name', 'space']),
    ({'subject_fields': {'organization': 'O' * 65}}, ['organization', '65', '64']),
    ({'subject_fields': {'organizational_unit': 'U' * 65}}, ['organizational_unit', '64']),
    ({'subject_fields': {'locality': 'L' * 129}}, ['locality', '128']),
    ({'subject_fields': {'organization': 'Acme\x00'}}, ['organization', 'control character']),
    ({'valid_days': 10951}, ['valid_days', '10951', '10950']),
    ({'valid_days': 10 ** 9}, ['valid_days']),
])
def test_bad_ca_requests_write_nothing(tmp_path, pki, kwargs, needles):
    pki.expect_error(lambda: plan_ca(tmp_path / 'ca', **kwargs), tmp_path, *needles)
    assert not os.path.exists(str(tmp_path / 'ca'))


def test_ca_limits_are_accepted(tmp_path, pki):
    plan_ca(tmp_path / 'ca', common_name='C' * 64, subject_fields={'organization': u'\u00c4cme ' + 'O' * 59},
            valid_days=10950)
    assert os.path.exists(str(tmp_path / 'ca' / 'ca-cert.pem'))
