# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

# The docs of this file's filters are the .yml files named after each filter, beside it: ansible-doc reads
# such a file only when the .py holds no DOCUMENTATION (it would otherwise show this file's docs for every
# filter in it).

from ansible.errors import AnsibleFilterError

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.crypto import is_hostname, is_ip

# (inventory group, certificate role, usage): servers also connect as clients for their own health checks.
CERT_ROLES = (
    ('redis_servers', 'redis', 'both'),
    ('api_servers', 'api', 'both'),
    ('workers', 'worker', 'client'),
    ('pki_clients', 'client', 'client'),
)


# RFC 1123 host names (what a certificate's dNSName holds): labels of letters, digits and "-", neither first nor
# last, 1 to 63 characters, at most 253 in all. Upper case is accepted: the certificate carries the lower-case name.
_HOSTNAME_RULE = ('labels of letters, digits and "-" (not first or last), 1 to 63 characters each, at most 253 in '
                  'all')


class _BadName(ValueError):
    pass


def _names_of(host, host_vars):
    """DNS names and IPs a host's certificate must carry, from inventory data."""
    dns, ips = [], []
    candidates = [host, host_vars.get('ansible_host')] + list(host_vars.get('pki_extra_sans') or [])
    for value in candidates:
        if not value:
            continue
        value = str(value)
        if is_ip(value):
            ips.append(value)
        elif is_hostname(value):
            dns.append(value.lower())
        elif value == host:
            raise _BadName(
                "inventory host %r is neither a host name nor an IP address, so it cannot be a certificate's DNS "
                'name (%s): rename it in the inventory' % (host, _HOSTNAME_RULE))
        else:
            raise _BadName('%s: SAN %r (ansible_host or pki_extra_sans) is neither a DNS name (%s) nor an IP '
                           'address: fix it in the inventory' % (host, value, _HOSTNAME_RULE))
    return sorted(set(dns)), sorted(set(ips))


def fleet_cert_name(host, role, shared_worker_cert=False):
    """The name of a host's certificate for a role (<name>-key.pem, <name>-cert.pem in the issued dir): the one
    rule, used for the requests here and by every role's default *_cert_name."""
    if role == 'worker' and shared_worker_cert:
        return 'worker-shared'
    return '%s-%s' % (role, host.lower())


def plan_cert_requests(hosts, hostvars, groups, shared_worker_cert=False):
    """(requests, problems): the requests of every host whose certificate can be made, and one message for each
    host whose certificate cannot (a bad name or SAN, a name taken by another host)."""
    requests, problems, seen, done = [], [], {}, set()
    for host in hosts:
        if host in done:
            continue  # a host in several groups is listed once per group
        done.add(host)
        host_vars = hostvars[host]
        names = None
        for group, role, usage in CERT_ROLES:
            if host not in (groups.get(group) or []):
                continue
            if names is None:
                try:
                    names = _names_of(host, host_vars)
                except _BadName as error:
                    problems.append(str(error))
                    break
            dns, ips = names
            name = fleet_cert_name(host, role, shared_worker_cert)
            if name == 'worker-shared':
                dns, ips = ['worker-shared'], []
            if name in seen:
                if name != 'worker-shared':
                    problems.append('two certificates named %s (hosts %s and %s); inventory names must be unique '
                                    'per role, upper and lower case alike: rename one' % (name, seen[name], host))
                continue
            seen[name] = host
            common_name = host.lower() if host.lower() in dns else (dns[0] if dns else ips[0])
            requests.append({'name': name, 'host': host, 'role': role, 'usage': usage,
                             'common_name': common_name, 'dns': dns, 'ip': ips})
    return requests, problems


def fleet_cert_requests(hosts, hostvars, groups, shared_worker_cert=False, skip_invalid=False):
    requests, problems = plan_cert_requests(hosts, hostvars, groups, shared_worker_cert)
    if problems and not skip_invalid:
        raise AnsibleFilterError(' | '.join(problems))
    return requests


# The services whose keys are born on their hosts unless the inventory says otherwise (fleetpki_host_keys).
HOST_KEY_ROLES = ('redis', 'api', 'worker', 'client')


def _host_key(request, host_key_roles):
    """Whether this request's key is made on its host: its role is listed, and it is not the one key every worker
    shares (pki_shared_worker_cert), which no single host can make."""
    return request['role'] in host_key_roles and request['name'] != fleet_cert_name('', 'worker', True)


def fleet_host_keys(requests, host, host_key_roles=HOST_KEY_ROLES, key_type='ec-p256'):
    """The host_key ``keys`` entries of ``host``: its requests whose keys are born on it."""
    return [{'name': request['name'], 'common_name': request['common_name'], 'dns': request['dns'],
             'ip': request['ip'], 'key_type': key_type}
            for request in requests if request['host'] == host and _host_key(request, host_key_roles)]


def fleet_leaf_certs(requests, hosts, valid_days=365, key_type='ec-p256', valid_hours=None, host_csrs=None,
                     host_key_roles=(), without_csr=False):
    """The requests of ``hosts`` as pki_leaf ``certs`` entries (a shared worker cert once); ``valid_hours`` (a
    number above 0) replaces ``valid_days``. A request whose key is born on its host (its role in
    ``host_key_roles``) carries the ``csr`` its own host sent, from ``host_csrs`` (host -> name -> host_key result;
    a request one host sent for another host's certificate is never used), and is left out
    when its host sent none (it did not answer), or kept without one with ``without_csr`` when its host answered
    for it (check mode: a key not made yet has no request, and the preview still counts its certificate)."""
    wanted = set(hosts)
    try:
        hours = float(valid_hours) if valid_hours not in (None, '') else 0
    except (TypeError, ValueError):
        raise AnsibleFilterError('fleet_leaf_certs: valid_hours %r is not a number of hours' % (valid_hours,))
    validity = ({'valid_hours': int(hours) if hours.is_integer() else hours} if hours
                else {'valid_days': int(valid_days)})
    host_csrs = host_csrs or {}
    certs = []
    for request in requests:
        if request['host'] in wanted:
            cert = {'name': request['name'], 'common_name': request['common_name'], 'dns': request['dns'],
                    'ip': request['ip'], 'usage': request['usage'], 'key_type': key_type}
            cert.update(validity)
            if _host_key(request, host_key_roles):
                sent = host_csrs.get(request['host'])
                sent = sent if isinstance(sent, dict) else {}
                csr = (sent.get(request['name']) or {}).get('csr')
                if csr:
                    cert['csr'] = csr
                elif not without_csr or request['name'] not in sent:
                    # Only a host that answered (check mode: it would make this key) is previewed without one;
                    # a silent host's certificate is left out, as in a real run.
                    continue
            certs.append(cert)
    return certs


def fleet_revoked_key_names(metadata_docs, revoked_serials):
    """The certificate names whose key must not be certified again: the current serial is revoked, or a revoked
    serial of the same name was issued for the same key (a host's key outlives its certificates). ``metadata_docs``:
    the parsed metadata.json of each CA directory."""
    revoked = set(revoked_serials or ())
    names = set()
    if not revoked:
        return []
    for doc in metadata_docs or ():
        for name, entry in ((doc or {}).get('certs') or {}).items():
            if entry.get('serial') in revoked:
                names.add(name)
                continue
            key = entry.get('public_key_sha256')
            if key and any(item.get('serial') in revoked and item.get('public_key_sha256') == key
                           for item in entry.get('history') or ()):
                names.add(name)
    return sorted(names)


class FilterModule:
    def filters(self):
        return {'fleet_cert_requests': fleet_cert_requests, 'fleet_leaf_certs': fleet_leaf_certs,
                'fleet_cert_name': fleet_cert_name, 'fleet_host_keys': fleet_host_keys,
                'fleet_revoked_key_names': fleet_revoked_key_names}
