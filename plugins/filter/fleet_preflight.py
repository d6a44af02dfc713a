# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: fleet_preflight
short_description: Every inventory mistake that would break the rollout, found before anything changes
version_added: 0.1.0
description:
  - Checks the whole fleet in one pass (so it costs the same under C(--limit) and stays linear in the number of
    hosts) and returns a list of messages, empty when all is well.
  - "Checks: a Redis server and a worker exist; every Redis host has a password (C(redis_tls_requirepass) or
    C(fleetpki_redis_password)) without quotes or white space, and distinct TLS and plaintext ports; every worker
    has a Redis password; each worker's C(REDIS_HOST) (C(worker_tls_redis_host), default the first Redis server)
    is a SAN of a Redis certificate, and its callback API host (C(worker_tls_callback_api_url)) a SAN of an API
    certificate."
  - Uses the same defaults as the roles C(redis_tls) and C(worker_tls).
author:
  - fleetpki contributors (@fleetpki)
positional: hostvars, groups
options:
  _input:
    description: The requests made by P(fleetpki.mtls.fleet_cert_requests#filter) for the whole fleet.
    type: list
    elements: dict
    required: true
  hostvars:
    description: The C(hostvars) magic variable.
    type: dict
    required: true
  groups:
    description: The C(groups) magic variable.
    type: dict
    required: true
'''

EXAMPLES = r'''
- name: Stop before any change when the inventory is wrong
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join('; ') }}"
  vars:
    problems: "{{ pki_fleet_requests | fleetpki.mtls.fleet_preflight(hostvars, groups) }}"
'''

RETURN = r'''
_value:
  description: One message per problem, naming the host, the variable and the fix.
  type: list
  elements: str
'''

import re

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover (Python 2)
    from urlparse import urlsplit

_BAD_PASSWORD = re.compile(r'["\s]')
_TRUE = ('1', 'true', 'yes', 'on')


def _names(requests, role):
    names = set()
    for request in requests:
        if request['role'] == role:
            names.update(request['dns'])
            names.update(request['ip'])
    return names


def fleet_preflight(requests, hostvars, groups):
    problems = []
    redis_hosts = list(groups.get('redis_servers') or [])
    workers = list(groups.get('workers') or [])
    api_hosts = list(groups.get('api_servers') or [])
    if not redis_hosts or not workers:
        problems.append('the inventory needs at least one host in redis_servers and one in workers '
                        '(redis_servers=%s, workers=%s)' % (redis_hosts, workers))
        return problems
    redis_names = _names(requests, 'redis')
    api_names = _names(requests, 'api')
    default_api_url = 'https://%s:8443/callback/report' % (api_hosts[0] if api_hosts else 'localhost')

    for host in redis_hosts:
        host_vars = hostvars[host]
        password = host_vars.get('redis_tls_requirepass', host_vars.get('fleetpki_redis_password', '')) or ''
        if not password or _BAD_PASSWORD.search(password):
            problems.append('%s: redis_tls_requirepass is empty or holds a quote or white space; set '
                            'fleetpki_redis_password (from ansible-vault) in group_vars' % host)
        tls_port = int(host_vars.get('redis_tls_port', 6379))
        plain_port = int(host_vars.get('redis_tls_plain_port', 0))
        if tls_port <= 0 or tls_port == plain_port:
            problems.append('%s: redis_tls_port (%d) must be a port other than redis_tls_plain_port (%d)'
                            % (host, tls_port, plain_port))

    for host in workers:
        host_vars = hostvars[host]
        password = host_vars.get('worker_tls_redis_password', host_vars.get('fleetpki_redis_password', '')) or ''
        if not password:
            problems.append('%s: worker_tls_redis_password is empty; set fleetpki_redis_password (from '
                            'ansible-vault) in group_vars' % host)
        redis_host = host_vars.get('worker_tls_redis_host', redis_hosts[0])
        if redis_host not in redis_names:
            problems.append('%s: REDIS_HOST %s must be one of the Redis certificate SANs %s; fix '
                            'worker_tls_redis_host or add the name to pki_extra_sans of the Redis server'
                            % (host, redis_host, sorted(redis_names)))
        api_use_tls = str(host_vars.get('worker_tls_api_use_tls', True)).lower() in _TRUE
        api_host = urlsplit(host_vars.get('worker_tls_callback_api_url', default_api_url)).hostname
        if api_use_tls and api_host not in api_names:
            problems.append('%s: the callback API host %s must be one of the API certificate SANs %s; fix '
                            'worker_tls_callback_api_url or add the name to pki_extra_sans of the API server'
                            % (host, api_host, sorted(api_names)))
    return problems


class FilterModule:
    def filters(self):
        return {'fleet_preflight': fleet_preflight}
