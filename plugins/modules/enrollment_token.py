#!/usr/bin/python
# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: enrollment_token
short_description: Mint a one-time enrollment token for a PXE-booted validation machine
version_added: 0.3.0
description:
  - Runs on the control node. Makes a new random token (256 bits, URL-safe) bound to one machine and writes it to
    C(<token_dir>/mac-<12 hex digits>.token), or C(sn-<serial>.token), at mode 0600 in one rename, for the
    provisioning system to put on that machine's kernel command line (C(fleetpki.token=<token>)). Returns what the
    API host keeps of it. The token itself is never returned, logged or shown in a diff.
  - The API host the machine calls keeps RV(record) under RV(token_sha256) (C(playbooks/enrollment_token.yml)
    installs it there and cancels the machine's earlier token); its C(/api/v1/enroll) then signs one certificate
    request from that machine with the token, before RV(expires).
  - Every run mints a new token (reported as changed) and replaces the machine's token file.
author:
  - fleetpki contributors (@fleetpki)
attributes:
  check_mode:
    support: full
    description: Reports the token file it would write; writes nothing and returns no digest.
  diff_mode:
    support: none
    description: A token is a secret; nothing of it is shown.
options:
  machine:
    description:
      - The machine the token is for, by its MAC address (C(aa:bb:cc:dd:ee:ff) or with C(-)) or its serial number
        (letters, digits and inner C(-), 60 at most). Compared without case; the certificate of the machine is named
        C(mac-<12 hex digits>) or C(sn-<serial>) after it.
    type: str
    required: true
  valid_seconds:
    description: How long the token can be used, from now (at most a day; a token is for one boot).
    type: int
    default: 1800
  token_dir:
    description:
      - The control node's directory of tokens, made at mode 0700 when absent (an existing one keeps its mode, so the
        provisioning service can be given access to it).
    type: path
    required: true
'''

EXAMPLES = r'''
- name: Mint a token for the machine that boots next
  fleetpki.mtls.enrollment_token:
    machine: "52:54:00:12:34:56"
    valid_seconds: 1800
    token_dir: /srv/fleetpki/pki/enrollment-tokens
  register: token
'''

RETURN = r'''
machine:
  description: The machine, in its one form (a lower-case MAC with colons, or a lower-case serial).
  type: str
  returned: always
  sample: "52:54:00:12:34:56"
path:
  description: The token's file on the control node.
  type: str
  returned: always
  sample: /srv/fleetpki/pki/enrollment-tokens/mac-525400123456.token
token_sha256:
  description: The SHA-256 of the token (hex), the name of its record on the API hosts; empty in check mode.
  type: str
  returned: always
expires:
  description: When the token stops working, in seconds since the epoch.
  type: int
  returned: always
expires_at:
  description: The same, as an ISO 8601 UTC time.
  type: str
  returned: always
  sample: "2026-12-01T01:30:00Z"
record:
  description: The record the API hosts keep of the token, JSON (the machine and the expiry; no secret).
  type: str
  returned: always
'''

import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.fleetpki.mtls.plugins.module_utils import _fleet_enroll as enroll
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import files
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            machine=dict(type='str', required=True),
            valid_seconds=dict(type='int', default=1800),
            token_dir=dict(type='path', required=True),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        machine = enroll.machine_id(params['machine'])
    except ValueError as exc:
        module.fail_json(msg='machine: %s' % exc)
    if not 0 < params['valid_seconds'] <= enroll.MAX_TOKEN_SECONDS:
        module.fail_json(msg='valid_seconds is %d: a token lasts more than 0 and at most %d seconds (a day)'
                         % (params['valid_seconds'], enroll.MAX_TOKEN_SECONDS))
    expires = int(time.time()) + params['valid_seconds']
    path = os.path.join(params['token_dir'], enroll.machine_label(machine) + '.token')
    result = dict(changed=True, machine=machine, path=path, token_sha256='', expires=expires,
                  expires_at=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(expires)),
                  record=enroll.token_record(machine, expires))
    if module.check_mode:
        module.exit_json(**result)
    token = enroll.new_token()
    try:
        if not os.path.isdir(params['token_dir']):
            files.ensure_dir(params['token_dir'], 0o700)
        files.atomic_write(path, (token + '\n').encode('ascii'), 0o600)
    except (PkiError, OSError) as exc:
        module.fail_json(msg='token_dir %s: cannot write the token: %s' % (params['token_dir'], exc))
    result['token_sha256'] = enroll.token_digest(token)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
