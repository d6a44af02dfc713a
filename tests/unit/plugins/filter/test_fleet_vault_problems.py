# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ansible_collections.fleetpki.mtls.plugins.filter.fleet_vault_problems import fleet_vault_problems

GROUPS = {'redis_servers': ['redis1'], 'workers': ['worker1', 'worker2'], 'api_servers': ['api1'],
          'pki_clients': ['pxe1']}
SECRET = 'unit-test-ca-passphrase-0123456789'
_REFERENCE = re.compile(r'^{{ *([A-Za-z0-9_]+) *}}$')


class HostVars:
    """hostvars as Ansible hands it to a filter: raw_get reads a host's variables untemplated, hostvars[host] gives
    a mapping whose get() templates (here: a whole-value "{{ name }}" reference). Counts both, to hold the check
    to one raw read per host and few templatings."""

    def __init__(self, per_host):
        self.per_host = per_host
        self.raw_reads = 0
        self.templated = []

    def raw_get(self, host):
        self.raw_reads += 1
        return self.per_host.get(host, {})

    def __contains__(self, host):
        return host in self.per_host

    def __getitem__(self, host):
        outer = self

        class Templated:
            def get(self, variable, default=None):
                outer.templated.append(host)
                value = outer.per_host.get(host, {}).get(variable, default)
                match = _REFERENCE.match(value) if isinstance(value, str) else None
                return outer.per_host[host].get(match.group(1)) if match else value

        return Templated()


def fleet(common=None, **per_host):
    hosts = ['localhost'] + sorted(set(host for hosts in GROUPS.values() for host in hosts))
    return HostVars(dict((host, dict(common or {}, **per_host.get(host, {}))) for host in hosts))


def scope_problems(hostvars, groups=None):
    return [problem for problem in fleet_vault_problems(hostvars, groups or GROUPS) if 'is not the same' in problem]


def test_one_value_everywhere_passes_without_templating_it():
    hostvars = fleet({'pki_ca_passphrase': '{{ vault_pki_ca_passphrase }}', 'vault_pki_ca_passphrase': SECRET})
    assert fleet_vault_problems(hostvars, GROUPS) == []
    assert hostvars.templated == []


def test_a_value_of_the_fleet_only_names_where_it_is_missing_and_the_fix():
    fleet_hosts = ['redis1', 'worker1', 'worker2', 'api1', 'pxe1']
    hostvars = fleet(**dict((host, {'pki_ca_passphrase': SECRET}) for host in fleet_hosts))
    problems = scope_problems(hostvars)
    assert len(problems) == 1
    assert "the fleet play's first host (redis1; another one under --limit)" in problems[0]
    assert 'not set on localhost; value 1 on redis1, worker1, worker2, api1, pxe1' in problems[0]
    assert 'Set it once in group_vars/all' in problems[0]
    assert SECRET not in problems[0]


def test_a_value_of_localhost_only_is_refused():
    hostvars = fleet(localhost={'pki_ca_passphrase': SECRET})
    problems = scope_problems(hostvars)
    assert len(problems) == 1 and 'value 1 on localhost' in problems[0]
    assert 'not set on redis1, worker1, worker2, api1, pxe1' in problems[0]


def test_the_same_template_fed_by_a_different_vault_value_per_group_is_refused():
    common = {'pki_ca_passphrase': '{{ vault_pki_ca_passphrase }}', 'vault_pki_ca_passphrase': SECRET}
    hostvars = fleet(common, pxe1={'vault_pki_ca_passphrase': SECRET + '-other'})
    problems = scope_problems(hostvars)
    assert len(problems) == 1 and 'value 2 on pxe1' in problems[0], problems
    assert SECRET not in problems[0]


def test_the_same_value_written_twice_passes():
    hostvars = fleet({'pki_ca_passphrase': SECRET}, worker1={'pki_ca_passphrase': '{{ vault_pki_ca_passphrase }}',
                                                             'vault_pki_ca_passphrase': SECRET})
    assert scope_problems(hostvars) == []


def test_an_encrypted_ca_key_with_a_fleet_only_passphrase_says_which_hosts_lack_it_once(tmp_path):
    key = tmp_path / 'ca-key.pem'
    key.write_text('-----BEGIN ' + 'ENCRYPTED PRIVATE KEY-----\n')
    hostvars = fleet(redis1={'pki_ca_passphrase': SECRET})
    problems = fleet_vault_problems(hostvars, GROUPS, ca_key_files=[str(key)])
    assert len(problems) == 1 and 'is not the same' in problems[0], problems


def test_linear_in_hosts_one_raw_read_per_host_and_one_templating_per_distinct_value():
    workers = ['worker%d' % number for number in range(2000)]
    groups = dict(GROUPS, workers=workers)
    per_host = dict((host, {'pki_ca_passphrase': SECRET}) for host in ['localhost', 'redis1', 'api1', 'pxe1'] + workers)
    per_host['worker1500'] = {}
    hostvars = HostVars(per_host)
    problems = scope_problems(hostvars, groups)
    assert len(problems) == 1 and 'not set on worker1500' in problems[0]
    # 2003 hosts have it: localhost, redis1, 1999 workers, api1 and pxe1; five are named.
    assert 'value 1 on localhost, redis1, worker0, worker1, worker2 and 1998 more' in problems[0]
    # localhost and each fleet host once here; the vault_ checks read localhost and one host per group again.
    assert hostvars.raw_reads <= len(per_host) + 5
    # One templating for the one value set; a host without the variable needs none.
    assert hostvars.templated == ['localhost']


def test_a_passphrase_set_for_an_unencrypted_ca_key_names_both_ways_out(tmp_path):
    """A project the old bug left with an unencrypted CA key (the passphrase was set on localhost only): after
    "set it once in group_vars/all", pki_ca refused with "omit ca_passphrase". One message, both ways out."""
    key = tmp_path / 'ca-key.pem'
    key.write_text('-----BEGIN ' + 'PRIVATE KEY-----\nAAAA\n-----END ' + 'PRIVATE KEY-----\n')
    hostvars = fleet({'pki_ca_passphrase': SECRET})
    problems = fleet_vault_problems(hostvars, GROUPS, ca_key_files=[str(key), str(tmp_path / 'next' / 'ca-key.pem')])
    assert len(problems) == 1, problems
    message = problems[0]
    assert str(key) in message and 'not encrypted' in message
    assert 'unset pki_ca_passphrase' in message
    assert 'encrypt_existing_key' in message and 'fleetpki.mtls.pki_ca' in message
    assert SECRET not in message


def test_no_passphrase_and_an_unencrypted_ca_key_pass(tmp_path):
    key = tmp_path / 'ca-key.pem'
    key.write_text('-----BEGIN ' + 'PRIVATE KEY-----\nAAAA\n-----END ' + 'PRIVATE KEY-----\n')
    assert fleet_vault_problems(fleet(), GROUPS, ca_key_files=[str(key)]) == []


def test_a_root_passphrase_set_on_the_fleet_but_not_on_localhost_is_named():
    """Two tiers: ca_renew.yml reads pki_root_passphrase on localhost, pki.yml on the fleet's first host."""
    hostvars = fleet({'pki_root_passphrase': SECRET}, localhost={'pki_root_passphrase': ''})
    problems = scope_problems(hostvars, GROUPS)
    assert [problem for problem in problems if problem.startswith('pki_root_passphrase is not the same')], problems
    assert all(SECRET not in problem for problem in problems)
