# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.fleetpki.mtls.plugins.filter.fleet_cert_requests import fleet_cert_requests

GROUPS = {'redis_servers': ['redis1'], 'workers': ['worker1', 'worker2'], 'api_servers': ['api1'],
          'pki_clients': ['pxe1']}
HOSTVARS = {'redis1': {'ansible_host': '10.0.0.5', 'pki_extra_sans': ['redis.example.com']}, 'worker1': {},
            'worker2': {'ansible_host': 'w2.example.com'}, 'api1': {'ansible_host': '10.0.0.9'}, 'pxe1': {}}


def by_name(requests):
    return dict((request['name'], request) for request in requests)


def test_one_certificate_per_role_with_sans_from_inventory_data():
    hosts = ['redis1', 'worker1', 'worker2', 'api1', 'pxe1']
    requests = by_name(fleet_cert_requests(hosts, HOSTVARS, GROUPS))
    assert sorted(requests) == ['api-api1', 'client-pxe1', 'redis-redis1', 'worker-worker1', 'worker-worker2']
    redis = requests['redis-redis1']
    assert redis['usage'] == 'both' and redis['common_name'] == 'redis1'
    assert redis['dns'] == ['redis.example.com', 'redis1'] and redis['ip'] == ['10.0.0.5']
    assert requests['api-api1']['usage'] == 'both' and requests['api-api1']['ip'] == ['10.0.0.9']
    assert requests['worker-worker2']['usage'] == 'client'
    assert requests['worker-worker2']['dns'] == ['w2.example.com', 'worker2']
    assert requests['client-pxe1']['usage'] == 'client'


def test_a_host_with_several_roles_gets_one_certificate_per_role():
    groups = dict(GROUPS, api_servers=['redis1'])
    requests = by_name(fleet_cert_requests(['redis1', 'redis1', 'worker1'], HOSTVARS, groups))
    assert sorted(requests) == ['api-redis1', 'redis-redis1', 'worker-worker1']


def test_shared_worker_certificate():
    requests = fleet_cert_requests(['worker1', 'worker2'], HOSTVARS, GROUPS, shared_worker_cert=True)
    assert [request['name'] for request in requests] == ['worker-shared']


def test_duplicate_names_are_refused():
    groups = dict(GROUPS, workers=['worker1', 'WORKER1'])
    with pytest.raises(AnsibleFilterError, match='two certificates named worker-worker1'):
        fleet_cert_requests(['worker1', 'WORKER1'], dict(HOSTVARS, WORKER1={}), groups)


@pytest.mark.parametrize('hostvars, message', [
    ({'worker_1': {}}, "inventory host 'worker_1' is neither a host name"),
    ({'worker1': {'pki_extra_sans': ['bad name']}}, "SAN 'bad name'"),
])
def test_names_that_cannot_be_sans_are_refused(hostvars, message):
    host = list(hostvars)[0]
    with pytest.raises(AnsibleFilterError, match=message):
        fleet_cert_requests([host], hostvars, {'workers': [host]})


def test_preflight_is_clean_for_a_good_fleet_and_names_each_problem():
    from ansible_collections.fleetpki.mtls.plugins.filter.fleet_preflight import fleet_preflight

    hosts = ['redis1', 'worker1', 'worker2', 'api1', 'pxe1']
    good = dict((host, dict(HOSTVARS[host])) for host in hosts)
    requests = fleet_cert_requests(hosts, good, GROUPS)
    assert fleet_preflight(requests, good, GROUPS) == []

    bad = dict(good)
    bad['redis1'] = dict(good['redis1'], fleetpki_redis_admin_password='has space but long enough')
    bad['worker1'] = dict(good['worker1'], worker_tls_redis_host='elsewhere', worker_tls_redis_password='$hort')
    bad['worker2'] = dict(good['worker2'], worker_tls_callback_api_url='https://other:8443/x')
    problems = fleet_preflight(requests, bad, GROUPS)
    assert len(problems) == 4, problems
    assert problems[0].startswith('redis1: fleetpki_redis_admin_password must be 16 to 128')
    assert problems[1].startswith('worker1: worker_tls_redis_password must be 16 to 128')
    assert problems[2].startswith('worker1: REDIS_HOST elsewhere must be one of')
    assert problems[3].startswith('worker2: the callback API host other must be one of')
    assert fleet_preflight(requests, good, dict(GROUPS, workers=[]))[0].startswith('the inventory needs')


def test_roles_name_a_certificate_by_the_rule_the_requests_use():
    """A mixed-case inventory name: the role's default *_cert_name is the name that was issued."""
    from ansible_collections.fleetpki.mtls.plugins.filter.fleet_cert_requests import fleet_cert_name

    hosts = {'Worker7': {}, 'redis1': {}}
    requests = fleet_cert_requests(list(hosts), hosts, {'workers': ['Worker7'], 'redis_servers': ['redis1']})
    assert sorted(r['name'] for r in requests) == ['redis-redis1', 'worker-worker7']
    assert fleet_cert_name('Worker7', 'worker') == 'worker-worker7'
    assert fleet_cert_name('Worker7', 'worker', True) == 'worker-shared'
    assert fleet_cert_name('redis1', 'redis') == 'redis-redis1'


def test_a_certificate_takes_its_request_only_from_its_own_host():
    """A compromised worker that answers with a request for api1's certificate is never heard for it."""
    from ansible_collections.fleetpki.mtls.plugins.filter.fleet_cert_requests import fleet_leaf_certs
    requests = fleet_cert_requests(list(HOSTVARS), HOSTVARS, GROUPS)
    honest = {'csr': '-----BEGIN CERTIFICATE REQUEST-----\napi1\n-----END CERTIFICATE REQUEST-----\n'}
    forged = {'csr': '-----BEGIN CERTIFICATE REQUEST-----\nforged\n-----END CERTIFICATE REQUEST-----\n'}
    sent = {'api1': {'api-api1': honest}, 'worker1': {'api-api1': forged, 'worker-worker1': forged}}
    certs = dict((cert['name'], cert) for cert in fleet_leaf_certs(requests, list(HOSTVARS), host_csrs=sent,
                                                                   host_key_roles=['api', 'worker']))
    assert certs['api-api1']['csr'] == honest['csr']
    assert certs['worker-worker1']['csr'] == forged['csr']  # its own: checked against its names by pki_leaf
    # api1 silent: its certificate is left out, never taken from worker1's answer.
    certs = dict((cert['name'], cert) for cert in fleet_leaf_certs(requests, list(HOSTVARS), host_csrs={
        'worker1': {'api-api1': forged}}, host_key_roles=['api', 'worker']))
    assert 'api-api1' not in certs and 'worker-worker1' not in certs


def test_check_mode_previews_a_key_to_be_made_but_leaves_a_silent_host_out():
    """In check mode a host that would make its key answers without a request: previewed. One that did not answer
    (unreachable) is left out, as the real run would leave it."""
    from ansible_collections.fleetpki.mtls.plugins.filter.fleet_cert_requests import fleet_leaf_certs
    requests = fleet_cert_requests(list(HOSTVARS), HOSTVARS, GROUPS)
    sent = {'worker1': {'worker-worker1': {'csr': None, 'key_made': True}}, 'api1': {}}
    certs = fleet_leaf_certs(requests, list(HOSTVARS), host_csrs=sent, host_key_roles=['api', 'worker'],
                             without_csr=True)
    names = [cert['name'] for cert in certs]
    assert 'worker-worker1' in names and 'api-api1' not in names


@pytest.mark.parametrize('valid_hours, validity', [
    (None, {'valid_days': 30}), ('', {'valid_days': 30}), (0, {'valid_days': 30}), ('0', {'valid_days': 30}),
    (24, {'valid_hours': 24}), ('24', {'valid_hours': 24}), ('0.1', {'valid_hours': 0.1}), (1.5, {'valid_hours': 1.5}),
])
def test_valid_hours_replaces_valid_days_and_keeps_fractions(valid_hours, validity):
    from ansible_collections.fleetpki.mtls.plugins.filter.fleet_cert_requests import fleet_leaf_certs
    requests = fleet_cert_requests(list(HOSTVARS), HOSTVARS, GROUPS)
    for cert in fleet_leaf_certs(requests, list(HOSTVARS), 30, 'ec-p256', valid_hours):
        assert {key: cert[key] for key in ('valid_days', 'valid_hours') if key in cert} == validity


def test_revoked_key_names_the_current_serial_or_an_older_one_of_the_same_key():
    from ansible_collections.fleetpki.mtls.plugins.filter.fleet_cert_requests import fleet_revoked_key_names
    doc = {'certs': {
        'api-api1': {'serial': 'B2', 'public_key_sha256': 'k1',
                     'history': [{'serial': 'A1', 'public_key_sha256': 'k1'}, {'serial': 'B2', 'public_key_sha256': 'k1'}]},
        'worker-w1': {'serial': 'D4', 'public_key_sha256': 'k3',
                      'history': [{'serial': 'C3', 'public_key_sha256': 'k2'}, {'serial': 'D4', 'public_key_sha256': 'k3'}]},
        'worker-w2': {'serial': 'E5', 'history': [{'serial': 'E5'}]},
        'client-p1': {'serial': 'F6', 'history': [{'serial': 'F6'}]},
    }}
    # A1 (api1's older serial, same key) and C3 (w1's older serial, another key) and F6 (p1's current).
    assert fleet_revoked_key_names([doc], ['A1', 'C3', 'F6']) == ['api-api1', 'client-p1']
    assert fleet_revoked_key_names([doc], []) == []
