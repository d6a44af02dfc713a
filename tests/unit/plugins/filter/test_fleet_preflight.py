# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.fleetpki.mtls.plugins.filter.fleet_cert_requests import fleet_cert_requests
from ansible_collections.fleetpki.mtls.plugins.filter.fleet_preflight import (cert_name_problems, constraint_problems,
                                                                              fleet_preflight_warnings)

GROUPS = {'redis_servers': ['redis1'], 'workers': ['worker1', 'worker2'], 'api_servers': ['api1'],
          'pki_clients': ['pxe1']}
HOSTS = ['redis1', 'worker1', 'worker2', 'api1', 'pxe1']


def hostvars(**per_host):
    return dict((host, dict(per_host.get(host, {}))) for host in HOSTS)


@pytest.mark.parametrize('name', ['../ca/ca', '/etc/ssl/private/x', 'a/b', 'worker..1', '.x', '-x', 'x' * 65, ''])
def test_unsafe_cert_names_are_refused(name):
    hv = hostvars(worker1={'worker_tls_cert_name': name})
    problems = cert_name_problems(fleet_cert_requests(HOSTS, hv, GROUPS), hv, GROUPS)
    assert len(problems) == 1 and problems[0].startswith('worker1: worker_tls_cert_name')
    assert 'remove worker_tls_cert_name' in problems[0] and 'worker-worker1' in problems[0]


def test_own_names_pass_and_another_hosts_is_refused():
    hv = hostvars(worker1={'worker_tls_cert_name': 'worker-worker1'}, api1={'api_tls_cert_name': 'api-api1'},
                  worker2={'worker_tls_cert_name': 'worker-worker1'})
    problems = cert_name_problems(fleet_cert_requests(HOSTS, hv, GROUPS), hv, GROUPS)
    assert problems == ["worker2: worker_tls_cert_name 'worker-worker1' is not this host's certificate "
                        "(worker-worker2), and a host gets only its own key; remove worker_tls_cert_name"]


def test_the_shared_worker_cert_is_every_workers_own():
    hv = hostvars(worker2={'worker_tls_cert_name': 'worker-shared'})
    requests = fleet_cert_requests(HOSTS, hv, GROUPS, shared_worker_cert=True)
    assert cert_name_problems(requests, hv, GROUPS) == []


def test_system_store_warning_names_the_hosts_and_the_variables():
    hv = hostvars(pxe1={'ca_trust_system_store': False})
    warnings = fleet_preflight_warnings([], hv, GROUPS)
    assert len(warnings) == 1
    assert 'api1, redis1, worker1, worker2 (ca_trust_system_store)' in warnings[0]
    assert 'pki_ca_name_constraints_permitted_dns' in warnings[0]
    hv = hostvars(**dict((host, {'pki_ca_name_constraints_permitted_ip': ['10.0.0.0/8']}) for host in HOSTS))
    assert fleet_preflight_warnings([], hv, GROUPS) == []


def test_a_root_in_the_system_store_warns_though_its_issuing_ca_is_constrained():
    """Two tiers: the issuing CA's name constraints do not limit the root, which is what hosts trust."""
    two_tiers = {'pki_root_dir': '/pki/root', 'pki_ca_name_constraints_permitted_ip': ['10.0.0.0/8']}
    hv = hostvars(**dict((host, dict(two_tiers, ca_trust_system_store=host != 'pxe1')) for host in HOSTS))
    warnings = fleet_preflight_warnings([], hv, GROUPS)
    assert len(warnings) == 1 and "the fleet's root (pki_root_dir) goes into the system trust store of" in warnings[0]
    assert 'api1, redis1, worker1, worker2 (ca_trust_system_store)' in warnings[0]
    hv = hostvars(**dict((host, dict(two_tiers, ca_trust_system_store=False)) for host in HOSTS))
    assert fleet_preflight_warnings([], hv, GROUPS) == []


def test_names_outside_a_new_cas_constraints_are_named_with_their_host():
    hv = hostvars(redis1={'ansible_host': '10.1.0.5'}, worker2={'ansible_host': '192.168.7.9'},
                  pxe1={'fleetpki_site': 'site-b'})
    requests = fleet_cert_requests(HOSTS, hv, GROUPS)
    problems = constraint_problems(requests, hv, {'dns': HOSTS + ['localhost'], 'ip': ['10.0.0.0/8', '127.0.0.1/32']})
    # worker2's address is outside; pxe1 has a site of its own (its site's CA signs it), so it is not checked here.
    assert len(problems) == 1 and problems[0].startswith('worker2: its certificate worker-worker2 names 192.168.7.9,')
    assert "or change the host's names" in problems[0]
    assert constraint_problems(requests, hv, {'dns': [], 'ip': []}) == []


def test_the_shared_worker_certificate_outside_the_constraints_names_its_own_fix():
    requests = fleet_cert_requests(HOSTS, hostvars(), GROUPS, shared_worker_cert=True)
    problems = constraint_problems(requests, hostvars(), {'dns': HOSTS + ['localhost'], 'ip': []})
    assert len(problems) == 1 and 'certificate worker-shared names worker-shared' in problems[0]
    assert 'turn pki_shared_worker_cert off' in problems[0]
