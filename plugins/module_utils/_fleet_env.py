# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one .env reader of fleetpki: module redis_client_check (verify.yml) and the reference worker and API, which
get this very file installed beside them as fleet_env.py (standard library only, nothing imported from Ansible).

A .env is data, never shell: KEY=value lines, blank lines and # comments skipped, one pair of surrounding quotes
removed, nothing expanded ($, backticks and backslashes are kept as they are).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


def parse_env(text):
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith('#') or '=' not in line:
            continue
        key, value = line.split('=', 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in '"\'':
            value = value[1:-1]
        values[key.strip()] = value
    return values


def read_env(path):
    with open(path) as handle:
        return parse_env(handle.read())


def truthy(value):
    return str(value).lower() in ('1', 'true', 'yes', 'on')
