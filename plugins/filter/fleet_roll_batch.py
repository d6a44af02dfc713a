# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: fleet_roll_batch
short_description: Which batch of a serial play this is, and of how many
version_added: 0.3.0
description:
  - Splits the play's hosts into batches as Ansible does for C(serial) (a number, a percentage such as C(25%) of
    the play's hosts rounded down but at least one, or a list of those, the last repeated) and returns the batch
    that holds the current one, so a rolling play can say C(batch 2 of 5 - worker3, worker4) at its start.
  - The last batch may be shorter than the others.
author:
  - fleetpki contributors (@fleetpki)
positional: play_hosts_all, serial
options:
  _input:
    description: The current batch (C(ansible_play_batch)).
    type: list
    elements: str
    required: true
  play_hosts_all:
    description: Every host of the play, in order (C(ansible_play_hosts_all)).
    type: list
    elements: str
    required: true
  serial:
    description: The play's C(serial) value; empty or 0 means one batch of every host.
    type: raw
    required: true
'''

EXAMPLES = r'''
- name: Say which batch this is
  ansible.builtin.debug:
    msg: "batch {{ batch.number }} of {{ batch.count }}: {{ batch.hosts | join(', ') }}"
  vars:
    batch: "{{ ansible_play_batch | fleetpki.mtls.fleet_roll_batch(ansible_play_hosts_all, fleetpki_worker_batch_size) }}"
  run_once: true
'''

RETURN = r'''
_value:
  description: C(number) (from 1), C(count) (batches in the play) and C(hosts) (the hosts of this batch).
  type: dict
'''

from ansible.errors import AnsibleFilterError
from ansible.module_utils.six import string_types
from ansible.utils.helpers import pct_to_int


def serial_batches(hosts, serial):
    """Ansible's own split (PlaybookExecutor._get_serialized_batches) of the play's hosts into batches."""
    sizes = serial if isinstance(serial, (list, tuple)) else ([serial] if serial not in (None, '') else [])
    if not sizes:
        sizes = [-1]
    remaining, batches, index = list(hosts), [], 0
    while remaining:
        size = sizes[index]
        if isinstance(size, string_types) and size.strip().isdigit():
            size = int(size)
        try:
            size = pct_to_int(size, len(hosts))
        except ValueError:
            raise AnsibleFilterError('serial %r: a number of hosts, a percentage such as "25%%", or a list of those'
                                     % (serial,))
        if size <= 0:
            batches.append(remaining)
            break
        batches.append(remaining[:size])
        remaining = remaining[size:]
        index = min(index + 1, len(sizes) - 1)
    return batches


def fleet_roll_batch(play_batch, play_hosts_all, serial):
    batches = serial_batches(play_hosts_all, serial)
    current = set(play_batch or [])
    for number, hosts in enumerate(batches, 1):
        if current & set(hosts):
            return {'number': number, 'count': len(batches), 'hosts': hosts}
    return {'number': 0, 'count': len(batches), 'hosts': list(play_batch or [])}


class FilterModule:
    def filters(self):
        return {'fleet_roll_batch': fleet_roll_batch}
