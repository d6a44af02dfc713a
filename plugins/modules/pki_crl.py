#!/usr/bin/python
# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: pki_crl
short_description: Revoke certificates and publish the CA's CRL on the control node
version_added: 0.2.0
description:
  - Records revocations in C(revoked.json) in O(ca_dir) and publishes C(crl.pem), a CRL signed by the CA, with a
    CRL number and the CA's key identifier.
  - The CRL is re-signed only when it is missing or unreadable, not signed by this CA, out of step with
    C(revoked.json), at half its validity or later (so a scheduled run keeps it current), or O(force=true).
    Otherwise nothing changes.
  - Serials and names to revoke must be known to the CA's C(metadata.json) (written by M(fleetpki.mtls.pki_leaf)),
    so a typo fails instead of revoking nothing. M(fleetpki.mtls.pki_leaf) re-issues every certificate whose
    serial is revoked.
  - Every CA needs a CRL from its creation when a service checks CRLs (OpenSSL refuses a client whose CA has no
    CRL); run this module right after M(fleetpki.mtls.pki_ca).
author:
  - fleetpki contributors (@fleetpki)
requirements:
  - cryptography >= 38.0
attributes:
  check_mode:
    support: full
    description:
      - Reports what would change and writes nothing (the CA key is not even loaded).
      - When O(ca_dir) holds no CA yet (neither key nor certificate) and O(ca_planned=true) says that
        M(fleetpki.mtls.pki_ca) only reported the CA it would make there, the CRL is reported as to be signed, with a
        warning. Without O(ca_planned), a missing CA fails as in a real run.
  diff_mode:
    support: full
    description: Shows the revoked serials before and after.
extends_documentation_fragment:
  - fleetpki.mtls.pki_group.action_group
options:
  ca_dir:
    description: Directory of the CA (C(ca-key.pem), C(ca-cert.pem), C(metadata.json)).
    type: path
    required: true
  ca_passphrase:
    description: Passphrase of an encrypted CA key; needed only when the CRL is (re)signed. Never logged.
    type: str
  ca_planned:
    description:
      - Check mode only. Set it from the result of M(fleetpki.mtls.pki_ca) on O(ca_dir) in the same run (its
        RV(fleetpki.mtls.pki_ca#module:action) is V(create)); a CA missing from O(ca_dir) is then the one that a real
        run makes, and its CRL is reported as to be signed.
      - When false (the default), a missing CA fails in check mode too, so a mistyped O(ca_dir) does not pass C(--check).
      - Ignored outside check mode.
    type: bool
    default: false
    version_added: 0.3.0
  revoke_serials:
    description: Serials to revoke, hex (case, colons and a 0x prefix do not matter).
    type: list
    elements: str
    default: []
  revoke_names:
    description:
      - Certificate names to revoke (for example C(worker-worker2)), as in C(metadata.json).
      - Revokes the name's current serial and every serial in its history that has not expired, so a cert it had
        before its last re-issue is refused too.
    type: list
    elements: str
    default: []
  revoke_ca_dirs:
    description:
      - Directories of issuing CAs that the CA of O(ca_dir), a root, signed (M(fleetpki.mtls.pki_ca) with
        O(fleetpki.mtls.pki_ca#module:issuer_dir)), to revoke whole (a compromised site).
      - Revokes every certificate of each that has not expired, the current one and those its renewals kept under
        C(retired/), so every leaf below it fails where the root's CRL is checked along the chain.
      - A directory whose CA this one did not sign (a root, another root's CA) fails before anything changes.
      - Recorded in C(revoked.json) under the name C(ca:<its common name>).
    type: list
    elements: path
    default: []
    version_added: 0.3.0
  reason:
    description: CRL reason recorded for the serials revoked in this run (C(unspecified) adds no reason code).
    type: str
    default: unspecified
    choices: [unspecified, key_compromise, ca_compromise, affiliation_changed, superseded, cessation_of_operation,
              certificate_hold, privilege_withdrawn, aa_compromise]
  crl_days:
    description: nextUpdate of a new CRL, in days from now; the CRL is re-signed once half of it has passed.
    type: int
    default: 30
  force:
    description: Re-sign the CRL now.
    type: bool
    default: false
seealso:
  - module: fleetpki.mtls.pki_ca
  - module: fleetpki.mtls.pki_leaf
'''

EXAMPLES = r'''
- name: Keep the CRL current (re-signed at half its validity)
  fleetpki.mtls.pki_crl:
    ca_dir: "{{ playbook_dir }}/pki/ca"
    ca_passphrase: "{{ vault_ca_passphrase }}"
  delegate_to: localhost
  run_once: true

- name: Revoke a host's client certificate (pki_leaf re-issues it on its next run)
  fleetpki.mtls.pki_crl:
    ca_dir: "{{ playbook_dir }}/pki/ca"
    revoke_names: [worker-worker2]
    reason: key_compromise
  delegate_to: localhost
  run_once: true

- name: Revoke a compromised site's issuing CA in its root's CRL (reason ca_compromise)
  fleetpki.mtls.pki_crl:
    ca_dir: "{{ playbook_dir }}/pki/root"
    ca_passphrase: "{{ vault_root_passphrase }}"
    revoke_ca_dirs: ["{{ playbook_dir }}/pki/sites/site-b"]
    reason: ca_compromise
  delegate_to: localhost
  run_once: true

- name: Revoke a serial
  fleetpki.mtls.pki_crl:
    ca_dir: "{{ playbook_dir }}/pki/ca"
    revoke_serials: ["4F:2A:9C:0D:11:7E"]
  delegate_to: localhost
  run_once: true
'''

RETURN = r'''
crl_path:
  description: Path of the CRL.
  returned: always
  type: str
revoked:
  description: Every revocation of this CA (after this run).
  returned: always
  type: list
  elements: dict
  contains:
    serial:
      description: Serial, upper-case hex.
      type: str
    name:
      description: Certificate name from metadata.json.
      type: str
    revoked_at:
      description: Time of revocation, ISO 8601 UTC.
      type: str
    reason:
      description: CRL reason.
      type: str
revoked_now:
  description: Serials revoked by this run.
  returned: always
  type: list
  elements: str
resign_reason:
  description: Why the CRL was (or would be) re-signed, such as C(missing) or C(half its validity passed); null when not.
  returned: always
  type: str
crl_number:
  description: CRL number of the current (or, in check mode, next) CRL.
  returned: always
  type: int
this_update:
  description: thisUpdate of the current CRL, ISO 8601 UTC (null in check mode before the first CRL).
  returned: always
  type: str
next_update:
  description: nextUpdate of the current CRL, ISO 8601 UTC.
  returned: always
  type: str
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.crl import REASONS, CrlManager
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            ca_dir=dict(type='path', required=True),
            ca_passphrase=dict(type='str', no_log=True),
            ca_planned=dict(type='bool', default=False),
            revoke_serials=dict(type='list', elements='str', default=[]),
            revoke_names=dict(type='list', elements='str', default=[]),
            revoke_ca_dirs=dict(type='list', elements='path', default=[]),
            reason=dict(type='str', default='unspecified', choices=list(REASONS)),
            crl_days=dict(type='int', default=30),
            force=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    if not crypto.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=crypto.CRYPTOGRAPHY_IMPORT_ERROR)

    params = module.params
    manager = CrlManager(
        ca_dir=params['ca_dir'],
        passphrase=params['ca_passphrase'],
        revoke_serials=params['revoke_serials'],
        revoke_names=params['revoke_names'],
        revoke_ca_dirs=params['revoke_ca_dirs'],
        reason=params['reason'],
        crl_days=params['crl_days'],
        force=params['force'],
    )
    try:
        # pki.yml --check on a new fleet: pki_ca only reported the CA it would make (the caller says so with
        # ca_planned), so preview the CRL that a real run would sign instead of failing on the CA check mode did not
        # make. Any other missing CA (a mistyped ca_dir) fails below as in a real run.
        if module.check_mode and params['ca_planned'] and manager.store.ca_absent():
            manager.plan_before_the_ca()
            module.warn('check mode: no CA in %s yet; fleetpki.mtls.pki_ca reported it would make it there '
                        '(ca_planned), so the CRL is reported as it would be signed by it' % params['ca_dir'])
        else:
            manager.plan()
        diff = manager.diff() if module._diff else None
        result = manager.result() if module.check_mode else manager.apply()
    except PkiError as exc:
        module.fail_json(msg=str(exc))
    if diff is not None:
        result['diff'] = diff
    module.exit_json(**result)


if __name__ == '__main__':
    main()
