# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: verify_row
short_description: Format one row of the verify playbook's table
version_added: 0.1.0
description:
  - Turns a row (host, check, ok, detail) into one fixed-width line starting with C(OK) or C(FAIL).
author:
  - fleetpki contributors (@fleetpki)
options:
  _input:
    description: A dict with host, check, ok and detail.
    type: dict
    required: true
'''

EXAMPLES = r'''
- name: Print a row
  ansible.builtin.debug:
    msg: "{{ {'host': 'worker1', 'check': 'redis-cli mTLS PING', 'ok': true, 'detail': 'PONG'} | fleetpki.mtls.verify_row }}"
'''

RETURN = r'''
_value:
  description: The formatted line.
  type: str
'''


def verify_row(row):
    status = 'OK' if row.get('ok') else 'FAIL'
    return '%-7s %-11s %-45s %s' % (status, row.get('host'), row.get('check'), row.get('detail') or '')


class FilterModule:
    def filters(self):
        return {'verify_row': verify_row}
