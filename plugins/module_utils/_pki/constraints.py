# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""nameConstraints of a CA: what pki_ca puts on a new CA, and the check pki_leaf makes before it issues.

A CA that goes into hosts' system trust stores is trusted for every name on those hosts; permitted subtrees limit
it to the fleet's DNS suffixes and IP ranges (RFC 5280 4.2.1.10, as OpenSSL and browsers enforce it).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ipaddress

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto, validate
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError

DNS_OPTION = 'name_constraints_permitted_dns'
IP_OPTION = 'name_constraints_permitted_ip'


def parse_permitted(where, dns_suffixes, ip_ranges, ip_option=IP_OPTION):
    """Validated (sorted DNS suffixes, sorted network strings) from the pki_ca options."""
    suffixes = []
    for value in dns_suffixes or []:
        text = value.lower() if isinstance(value, str) else value
        if not isinstance(text, str) or text.startswith('*') or text.startswith('.'):
            raise PkiError('%s: %s entry %r must be a DNS suffix such as fleet.example.com (it permits that name and '
                           'every name under it), without "*" or a leading dot' % (where, DNS_OPTION, value))
        validate.check_dns_name(where, '%s entry' % DNS_OPTION, text)
        suffixes.append(text)
    networks = []
    for value in ip_ranges or []:
        try:
            network = ipaddress.ip_network(u'%s' % value, strict=True)
        except ValueError as exc:
            raise PkiError('%s: %s entry %r is not an IP range in CIDR form (such as 10.20.0.0/16 or fd00::/8): %s'
                           % (where, ip_option, value, exc))
        networks.append(str(network))
    return sorted(set(suffixes)), sorted(set(networks))


def extension(dns_suffixes, ip_ranges, excluded_ip_ranges=None):
    """A NameConstraints extension value with these permitted (and excluded) subtrees, or None when all are empty."""
    if not dns_suffixes and not ip_ranges and not excluded_ip_ranges:
        return None
    subtrees = [crypto.x509.DNSName(suffix) for suffix in dns_suffixes]
    subtrees += [crypto.x509.IPAddress(ipaddress.ip_network(u'%s' % network)) for network in ip_ranges]
    excluded = [crypto.x509.IPAddress(ipaddress.ip_network(u'%s' % network)) for network in excluded_ip_ranges or []]
    return crypto.x509.NameConstraints(permitted_subtrees=subtrees or None, excluded_subtrees=excluded or None)


def _split(subtrees):
    dns = [item.value.lower() for item in subtrees or [] if isinstance(item, crypto.x509.DNSName)]
    ips = [item.value for item in subtrees or [] if isinstance(item, crypto.x509.IPAddress)]
    return dns, ips


def summary(cert):
    """{'permitted_dns': [...], 'permitted_ip': [...], 'excluded_dns': [...], 'excluded_ip': [...]} or None."""
    value = crypto.extension_value(cert, crypto.x509.NameConstraints)
    if value is None:
        return None
    permitted_dns, permitted_ip = _split(value.permitted_subtrees)
    excluded_dns, excluded_ip = _split(value.excluded_subtrees)
    return {'permitted_dns': sorted(permitted_dns), 'permitted_ip': sorted(str(n) for n in permitted_ip),
            'excluded_dns': sorted(excluded_dns), 'excluded_ip': sorted(str(n) for n in excluded_ip)}


def dns_within(name, suffix):
    """RFC 5280: ``suffix`` matches itself and every name under it; a leading dot matches only names under it."""
    name, suffix = name.lower(), suffix.lower()
    if suffix.startswith('.'):
        return name.endswith(suffix)
    return name == suffix or name.endswith('.' + suffix)


def ip_within(address, network):
    address = ipaddress.ip_address(u'%s' % address)
    return address.version == network.version and address in network


class CaConstraints:
    """The nameConstraints of a loaded CA certificate, ready to check many requests."""

    def __init__(self, cert):
        value = crypto.extension_value(cert, crypto.x509.NameConstraints)
        self.present = value is not None
        self.permitted_dns, self.permitted_ip = _split(value.permitted_subtrees if value is not None else None)
        self.excluded_dns, self.excluded_ip = _split(value.excluded_subtrees if value is not None else None)
        self.has_permitted_dns = bool(self.permitted_dns)
        self.has_permitted_ip = bool(self.permitted_ip)

    def violation(self, dns_names, ips):
        """None when every name is within the CA's constraints, else the first name outside and why."""
        if not self.present:
            return None
        for name in dns_names:
            if self.has_permitted_dns and not any(dns_within(name, suffix) for suffix in self.permitted_dns):
                return 'DNS name %r is outside the CA\'s permitted DNS suffixes (%s)' % (
                    name, ', '.join(self.permitted_dns))
            for suffix in self.excluded_dns:
                if dns_within(name, suffix):
                    return 'DNS name %r is under the CA\'s excluded DNS suffix %s' % (name, suffix)
        for address in ips:
            if self.has_permitted_ip and not any(ip_within(address, net) for net in self.permitted_ip):
                return 'IP %s is outside the CA\'s permitted IP ranges (%s)' % (
                    address, ', '.join(str(net) for net in self.permitted_ip))
            for network in self.excluded_ip:
                if ip_within(address, network):
                    return 'IP %s is in the CA\'s excluded IP range %s' % (address, network)
        return None
