# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: fleet_site_problems
short_description: What is wrong with the fleet's sites, before anything is made
version_added: 0.3.0
description:
  - Checks the pki role's C(pki_sites) (an issuing CA per site under one root) and each host's C(fleetpki_site), and
    returns one message per problem, each naming the site or host and the fix; an empty list when all is well.
  - Sites need two tiers (C(pki_root_dir)); a site's name is lower-case letters, digits, C(-) and C(_) (it names a
    directory); each site has names or addresses (its CA's nameConstraints).
  - No two sites may share names or addresses, so that one site's CA can never vouch for a host of another site a
    DNS name equal to or below another site's, or an overlapping address range, is refused. C(localhost) and the
    loopback range are the exception (each site's Redis server may carry them; they name only the host itself).
  - A certificate shared by all workers (C(fleetpki_shared_worker_cert)) cannot be split among sites, and a site's
    directory must not be the root's or a CA's of its own.
author:
  - fleetpki contributors (@fleetpki)
positional: host_sites, root_dir, site_dirs, other_ca_dirs, shared_worker_cert
options:
  _input:
    description: C(pki_sites), site name to its settings.
    type: raw
    required: true
  host_sites:
    description: Each fleet host's C(fleetpki_site) (an empty string for none).
    type: dict
    required: true
  root_dir:
    description: C(pki_root_dir) (empty for one tier).
    type: str
    required: true
  site_dirs:
    description: Each site's CA directory, site name to path, resolved.
    type: dict
    required: true
  other_ca_dirs:
    description: The root's and the other CAs' directories (C(pki_ca_dir), C(pki_ca_next_dir)), resolved.
    type: list
    elements: str
    required: true
  shared_worker_cert:
    description: C(fleetpki_shared_worker_cert).
    type: bool
    required: true
'''

EXAMPLES = r'''
- name: Check the sites before anything is made
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join(' ') }} Nothing was changed."
  vars:
    problems: >-
      {{ pki_sites | fleetpki.mtls.fleet_site_problems(host_sites, pki_root_dir, site_dirs, [pki_root_dir | realpath],
                                                       false) }}
'''

RETURN = r'''
_value:
  description: One message per problem; empty when the sites are sound.
  type: list
  elements: str
'''

import ipaddress
import re

from ansible.module_utils.six import string_types

SITE_NAME = re.compile(r'^[a-z0-9][a-z0-9_-]{0,62}\Z')
LOOPBACK = (ipaddress.ip_network(u'127.0.0.0/8'), ipaddress.ip_network(u'::1/128'))


def _names(settings, key):
    value = settings.get(key) or []
    return [value] if isinstance(value, string_types) else list(value)


def _dns_overlap(first, second):
    first, second = first.lower().strip('.'), second.lower().strip('.')
    if 'localhost' in (first, second):
        return False
    return first == second or first.endswith('.' + second) or second.endswith('.' + first)


def _network(text):
    try:
        return ipaddress.ip_network(u'%s' % text, strict=False)
    except ValueError:
        return None  # pki_ca refuses it, naming the value


def _ip_overlap(first, second):
    first, second = _network(first), _network(second)
    if first is None or second is None or first.version != second.version:
        return False
    if any(first.subnet_of(loop) or second.subnet_of(loop) for loop in LOOPBACK if loop.version == first.version):
        return False
    return first.overlaps(second)


def fleet_site_problems(sites, host_sites, root_dir, site_dirs, other_ca_dirs, shared_worker_cert):
    host_sites = dict((host, site) for host, site in (host_sites or {}).items() if site)
    if not sites and not host_sites:
        return []
    if not isinstance(sites, dict):
        return ['pki_sites must be a mapping of site names to their settings, not %r.' % (sites,)]
    problems = []
    if not root_dir:
        problems.append('pki_sites needs two tiers: set pki_root_dir (and pki_root_passphrase), see docs/hierarchy.md.')
    good = {}
    for site, settings in sites.items():
        if not SITE_NAME.match(str(site)):
            problems.append('site %r: a site name is lower-case letters, digits, - and _ (up to 63), it names a '
                            'directory.' % (site,))
            continue
        if not isinstance(settings, dict):
            problems.append('site %s: its settings must be a mapping with name_constraints_permitted_dns and/or '
                            'name_constraints_permitted_ip, not %r.' % (site, settings))
            continue
        dns, ip = _names(settings, 'name_constraints_permitted_dns'), _names(settings, 'name_constraints_permitted_ip')
        if not dns and not ip:
            problems.append('site %s: give name_constraints_permitted_dns and/or name_constraints_permitted_ip, the '
                            'names and addresses of its hosts (its issuing CA may vouch for nothing else).' % site)
        good[site] = (dns, ip)
    names = sorted(good)
    for index, site in enumerate(names):
        for other in names[index + 1:]:
            shared = ['DNS %s / %s' % pair for pair in ((a, b) for a in good[site][0] for b in good[other][0])
                      if _dns_overlap(*pair)]
            shared += ['IP %s / %s' % pair for pair in ((a, b) for a in good[site][1] for b in good[other][1])
                       if _ip_overlap(*pair)]
            if shared:
                problems.append('sites %s and %s share names or addresses (%s): each site\'s CA could then vouch for '
                                'the other\'s hosts. Give each site names and ranges of its own.'
                                % (site, other, ', '.join(shared)))
    unknown = sorted(host for host, site in host_sites.items() if site not in sites)
    if unknown:
        problems.append('fleetpki_site of %s is not one of pki_sites (%s).'
                        % (', '.join('%s (%s)' % (host, host_sites[host]) for host in unknown),
                           ', '.join(sorted(str(site) for site in sites)) or 'none'))
    if shared_worker_cert:
        problems.append('fleetpki_shared_worker_cert: one certificate for all workers cannot be signed per site; '
                        'set it false (one certificate per worker) to use sites.')
    others = set(path for path in other_ca_dirs or [] if path)
    for site, path in sorted((site_dirs or {}).items()):
        if path in others:
            problems.append('site %s: its directory %s is the root\'s or a CA\'s of its own; set pki_sites_dir apart.'
                            % (site, path))
    return problems


class FilterModule:
    def filters(self):
        return {'fleet_site_problems': fleet_site_problems}
