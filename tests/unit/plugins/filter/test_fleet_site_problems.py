# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""fleet_site_problems: every site check of the pki role, each message naming the site or host and the fix."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.fleetpki.mtls.plugins.filter.fleet_site_problems import fleet_site_problems

SITES = {'site-a': {'name_constraints_permitted_dns': ['a.prov.example.com', 'localhost'],
                    'name_constraints_permitted_ip': ['10.1.0.0/16', '127.0.0.1/32']},
         'site-b': {'name_constraints_permitted_dns': ['b.prov.example.com', 'localhost'],
                    'name_constraints_permitted_ip': ['10.2.0.0/16', '127.0.0.1/32']}}


def problems(sites=None, host_sites=None, root_dir='/pki/root', site_dirs=None, others=('/pki/root', '/pki/ca'),
             shared=False):
    return fleet_site_problems(SITES if sites is None else sites, host_sites or {'w1': 'site-a', 'w2': ''},
                               root_dir, site_dirs or {'site-a': '/pki/sites/site-a'}, list(others), shared)


def test_sound_sites_even_with_localhost_in_each():
    assert problems() == []
    assert fleet_site_problems({}, {'w1': ''}, '', {}, [], False) == []


def test_a_name_below_another_sites_or_an_overlapping_range_is_refused():
    sites = dict(SITES, **{'site-b': {'name_constraints_permitted_dns': ['x.a.prov.example.com'],
                                      'name_constraints_permitted_ip': ['10.1.4.0/24']}})
    found = problems(sites)
    assert len(found) == 1 and 'sites site-a and site-b share names or addresses' in found[0]
    assert 'DNS a.prov.example.com / x.a.prov.example.com' in found[0] and 'IP 10.1.0.0/16 / 10.1.4.0/24' in found[0]
    # A common suffix that is not a label boundary is not shared.
    sites['site-b'] = {'name_constraints_permitted_dns': ['xa.prov.example.com']}
    assert problems(sites) == []


def test_each_other_problem_is_named():
    found = problems({'Site A': {}, 'site-b': {}, 'site-c': 'names'}, {'w1': 'site-x'}, root_dir='',
                     site_dirs={'site-b': '/pki/ca'}, shared=True)
    text = ' '.join(found)
    for needle in ('needs two tiers', "site 'Site A'", 'site site-b: give name_constraints_permitted_dns',
                   "site site-c: its settings must be a mapping", 'fleetpki_site of w1 (site-x)',
                   'fleetpki_shared_worker_cert', 'site site-b: its directory /pki/ca'):
        assert needle in text, (needle, text)
