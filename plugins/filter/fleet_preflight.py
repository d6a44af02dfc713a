# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

# The docs of this file's filters are the .yml files named after each filter, beside it: ansible-doc reads
# such a file only when the .py holds no DOCUMENTATION (it would otherwise show this file's docs for every
# filter in it).

import ipaddress
import posixpath
import re

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover (Python 2)
    from urlparse import urlsplit

from ansible.utils.display import Display

from ansible_collections.fleetpki.mtls.plugins.filter.fleet_cert_requests import CERT_ROLES, plan_cert_requests
from ansible_collections.fleetpki.mtls.plugins.filter.fleet_vault_problems import fleet_vault_problems, secret as _secret
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.constraints import dns_within, ip_within

_display = Display()

# Passwords reach module arguments and .env lines (KEY=value): this charset survives both unchanged, so nothing
# needs escaping (quotes, white space, $, backticks, backslashes and # are refused instead).
_GOOD_PASSWORD = re.compile(r'^[A-Za-z0-9._~+/=@%:,-]{16,128}$')
_USER_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$')
_PASSWORD_RULE = ('16 to 128 of letters, digits and . _ ~ + / = @ % : , - (no quote, white space, $, backtick, '
                  'backslash or #)')
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
        admin_password = _secret(host, host_vars, 'fleetpki_redis_admin_password', problems)
        if admin_password and not _GOOD_PASSWORD.match(admin_password):
            problems.append('%s: fleetpki_redis_admin_password must be %s; change it in the vault'
                            % (host, _PASSWORD_RULE))
        for client, password in sorted((_secret(host, host_vars, 'fleetpki_redis_acl_passwords', problems) or {}).items()):
            if not _GOOD_PASSWORD.match(password or ''):
                problems.append('%s: fleetpki_redis_acl_passwords[%s] must be %s; change it in the vault'
                                % (host, client, _PASSWORD_RULE))
        tls_port = int(host_vars.get('redis_tls_port', 6379))
        plain_port = int(host_vars.get('redis_tls_plain_port', 0))
        if tls_port <= 0 or tls_port == plain_port:
            problems.append('%s: redis_tls_port (%d) must be a port other than redis_tls_plain_port (%d)'
                            % (host, tls_port, plain_port))

    for host in workers:
        host_vars = hostvars[host]
        password = _secret(host, host_vars, 'worker_tls_redis_password', problems)
        if password is not None and not _GOOD_PASSWORD.match(password):
            problems.append('%s: worker_tls_redis_password must be %s' % (host, _PASSWORD_RULE))
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
    for host in sorted(set(workers) | set(groups.get('redis_clients') or [])):
        if not _USER_NAME.match(host):
            problems.append('%s: a Redis client host gets an ACL user named after it, and Redis user names are '
                            'letters, digits, ., _, : and - (at most 128): rename the inventory host' % host)
    return problems


# Role variables that name a certificate in the control node's issued dir (<name>-key.pem, <name>-cert.pem): the
# role copies that key to the host, so a name with "/" or ".." (today "../ca/ca" shipped the CA key) or another
# host's name would hand out a key that is not the host's own.
_CERT_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$')
_CERT_NAME_RULE = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'
_CERT_NAME_VARS = (
    ('redis_servers', 'redis', 'redis_tls_cert_name'),
    ('api_servers', 'api', 'api_tls_cert_name'),
    ('workers', 'worker', 'worker_tls_cert_name'),
    ('pki_clients', 'client', 'client_tls_cert_name'),
)


def _inside_issued_dir(name):
    for suffix in ('-key.pem', '-cert.pem'):
        path = posixpath.normpath(posixpath.join('issued', name + suffix))
        if posixpath.dirname(path) != 'issued':
            return False
    return True


def cert_name_problems(requests, hostvars, groups):
    """Every *_cert_name set in the inventory or with -e is a safe file name and the host's own certificate."""
    own = {}
    for request in requests:
        own.setdefault((request['host'], request['role']), set()).add(request['name'])
    shared = set(request['name'] for request in requests if request['name'] == 'worker-shared')
    problems = []
    for group, role, variable in _CERT_NAME_VARS:
        for host in groups.get(group) or []:
            name = hostvars[host].get(variable)
            if name is None:
                continue  # the role's default: the host's own certificate
            name = str(name)
            names = sorted(own.get((host, role), set()) | (shared if role == 'worker' else set()))
            if not _CERT_NAME.match(name) or '..' in name or not _inside_issued_dir(name):
                problems.append('%s: %s %r must match %s without "..", so that its key and certificate stay '
                                'inside the issued dir; remove %s (the default is the host\'s own certificate, %s)'
                                % (host, variable, name, _CERT_NAME_RULE, variable, ', '.join(names) or 'none'))
            elif name not in names:
                problems.append('%s: %s %r is not this host\'s certificate (%s), and a host gets only its own key; '
                                'remove %s' % (host, variable, name, ', '.join(names) or 'none', variable, ))
    return problems


_TRUST_GROUPS = ('redis_servers', 'workers', 'api_servers', 'pki_clients')
_CONSTRAINTS = ('pki_ca_name_constraints_permitted_dns', 'pki_ca_name_constraints_permitted_ip')


def _shown(hosts):
    return ', '.join(hosts[:5]) + (' and %d more' % (len(hosts) - 5) if len(hosts) > 5 else '')


def fleet_preflight_warnings(requests, hostvars, groups):
    """What works but weakens the fleet: one message each, also shown as an Ansible warning."""
    warnings = []
    in_store, root_in_store = [], []
    for host in sorted(set(host for group in _TRUST_GROUPS for host in (groups.get(group) or []))):
        host_vars = hostvars[host]
        if str(host_vars.get('ca_trust_system_store', True)).lower() not in _TRUE:
            continue
        if host_vars.get('pki_root_dir'):
            root_in_store.append(host)
        elif not any(host_vars.get(variable) for variable in _CONSTRAINTS):
            in_store.append(host)
    if root_in_store:
        # Two tiers: the issuing CAs carry the name constraints, the root none, and the root is what hosts trust.
        warnings.append(
            'the fleet\'s root (pki_root_dir) goes into the system trust store of %s (ca_trust_system_store): a root '
            'carries no nameConstraints (its issuing CAs do), so there it is trusted for every name, and whoever '
            'holds the root key can impersonate any site to those hosts. Set ca_trust_system_store: false when '
            'only /etc/fleetpki/ca-bundle.pem is needed (docs/hierarchy.md)' % _shown(root_in_store))
    if in_store:
        shown = _shown(in_store)
        warnings.append(
            'the fleet CA goes into the system trust store of %s (ca_trust_system_store) without nameConstraints: '
            'there it is trusted for every name, so whoever holds the CA key can impersonate any site to those '
            'hosts. Set pki_ca_name_constraints_permitted_dns (e.g. ["prov.example.com"]) and/or '
            'pki_ca_name_constraints_permitted_ip (e.g. ["10.20.0.0/16"]) before the CA is made (an existing CA '
            'gets them with playbooks/ca_rollover.yml), or ca_trust_system_store: false when only '
            '/etc/fleetpki/ca-bundle.pem is needed' % shown)
    for warning in warnings:
        _display.warning('fleetpki preflight: %s' % warning)
    return warnings


def request_problems(hostvars, groups):
    """Hosts whose certificate cannot be made (bad name or SAN, duplicate name), which the requests left out
    (fleet_cert_requests with skip_invalid): listed here with every other problem, not as a filter error."""
    hosts = [host for group, _role, _usage in CERT_ROLES for host in (groups.get(group) or [])]
    return plan_cert_requests(hosts, hostvars, groups)[1]


def constraint_problems(requests, hostvars, new_ca_constraints):
    """The certificates a CA about to be made with these name constraints ({'dns': [...], 'ip': [...]}) could not
    sign: every name and address of each host that has no site of its own. Checked before the CA is made, as an
    existing CA keeps the constraints it was made with."""
    dns = [suffix for suffix in new_ca_constraints.get('dns') or [] if isinstance(suffix, str)]
    networks = []
    for value in new_ca_constraints.get('ip') or []:
        try:
            networks.append(ipaddress.ip_network(u'%s' % value, strict=False))
        except ValueError:
            return []  # pki_ca names a malformed range itself
    if not dns and not networks:
        return []
    problems = []
    for request in requests:
        if hostvars[request['host']].get('fleetpki_site'):
            continue
        outside = [name for name in request['dns'] if dns and not any(dns_within(name, suffix) for suffix in dns)]
        outside += [address for address in request['ip']
                    if networks and not any(ip_within(address, network) for network in networks)]
        if outside:
            fix = ('or turn pki_shared_worker_cert off (a certificate per worker)' if request['name'] == 'worker-shared'
                   else 'or change the host\'s names (inventory name, ansible_host, pki_extra_sans)')
            problems.append('%s: its certificate %s names %s, outside the name constraints the new CA is made with '
                            '(pki_ca_name_constraints_permitted_dns %s, pki_ca_name_constraints_permitted_ip %s): add '
                            'them there, %s'
                            % (request['host'], request['name'], ', '.join(outside), dns or '[]',
                               [str(network) for network in networks] or '[]', fix))
    return problems


def _all_problems(requests, hostvars, groups, ca_key_files=None, needed=None, new_ca_constraints=None):
    """fleet_preflight as the playbooks call it: every check, so the fleet's problems are listed at once."""
    vault = fleet_vault_problems(hostvars, groups, needed=needed, ca_key_files=ca_key_files)
    per_host = fleet_preflight(requests, hostvars, groups)
    # A secret of group_vars/all that lacks its vault_ variable is said once, not once per host.
    per_host = [problem for problem in per_host if problem not in vault and problem.split(': ', 1)[-1] not in vault]
    return (vault + request_problems(hostvars, groups) + per_host
            + cert_name_problems(requests, hostvars, groups)
            + (constraint_problems(requests, hostvars, new_ca_constraints) if new_ca_constraints else []))


class FilterModule:
    def filters(self):
        return {'fleet_preflight': _all_problems, 'fleet_preflight_warnings': fleet_preflight_warnings}
