#!/usr/bin/python
# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: pki_rollover
short_description: Keep the state of a CA rollover and move the CA directories on the control node
version_added: 0.3.0
description:
  - Owns the CA rollover state file (C(rollover.json)) of C(playbooks/ca_rollover.yml) and the CA directory moves
    at its end. A rollover has three phases; each is recorded as C(running) before it changes anything and C(done)
    after, so an interrupted run resumes where it stopped.
  - O(action=read) returns the state, the CA that signs and the CAs to trust (phase 1 and 2 trust both CAs; phase 2
    signs with the next CA; a running phase 3 trusts only the next CA). It fails when O(ca_dir) has no CA while a
    rollover is recorded (an interrupted promotion), so that no run makes a new CA there.
  - O(action=plan) also works out which phases a run does (O(requested_phase), O(new)) and refuses a phase out of
    order.
  - O(action=start) records O(phase) as running (a new rollover gets an id and the next CA's common name).
  - O(action=done) records O(phase) as done. For phase 3 it first retires O(ca_dir) to O(retired_dir)/<id> (kept,
    never deleted) and promotes O(next_dir) to O(ca_dir); a promotion interrupted between the two moves is
    finished by running it again.
  - The state file is written atomically, under a lock on its directory; the CA directories are moved under their
    own locks, never in the middle of a M(fleetpki.mtls.pki_leaf) or M(fleetpki.mtls.pki_crl) write.
author:
  - fleetpki contributors (@fleetpki)
requirements:
  - cryptography >= 38.0
attributes:
  check_mode:
    support: full
    description: Reports the state that would be recorded and writes or moves nothing.
  diff_mode:
    support: none
    description: The result's C(state) is the state after the run.
extends_documentation_fragment:
  - fleetpki.mtls.pki_group.action_group
options:
  state_file:
    description: The rollover state file (in the roles, C(pki_rollover_state_file), default C(<pki_dir>/rollover.json)).
    type: path
    required: true
  ca_dir:
    description: The current CA directory.
    type: path
    required: true
  next_dir:
    description: The next CA's directory during a rollover.
    type: path
    required: true
  retired_dir:
    description: Where phase 3 keeps the old CA, as C(<retired_dir>/<rollover id>).
    type: path
    required: true
  action:
    description: What to do; see the description.
    type: str
    choices: [read, plan, start, done]
    default: read
  phase:
    description: The phase to record, for O(action=start) and O(action=done).
    type: int
    choices: [1, 2, 3]
  requested_phase:
    description:
      - For O(action=plan), the one phase the operator asked for (C(-e phase=N)); omit to run every phase still to do.
      - Refused, with nothing changed, when it is not the phase in progress or the next one.
    type: str
  new:
    description: For O(action=plan), start a new rollover after a finished one.
    type: bool
    default: false
  ca_common_name:
    description: Common name of the current CA when the state records none; the next CA is named after it and the id.
    type: str
    default: Internal Root CA
  ca_passphrase:
    description:
      - Not used by this module (it moves CA directories and never loads a key; M(fleetpki.mtls.pki_ca) makes the next
        CA). Accepted so that C(module_defaults) for C(group/fleetpki.mtls.pki) can set it for every module of the
        group. Never logged.
    type: str
    version_added: 0.3.0
seealso:
  - module: fleetpki.mtls.pki_ca
'''

EXAMPLES = r'''
- name: Which CA signs and which CAs are trusted
  fleetpki.mtls.pki_rollover:
    state_file: "{{ pki_dir }}/rollover.json"
    ca_dir: "{{ pki_dir }}/ca"
    next_dir: "{{ pki_dir }}/ca-next"
    retired_dir: "{{ pki_dir }}/retired-ca"
  register: rollover

- name: Record phase 3 as done (retires ca/, promotes ca-next/)
  fleetpki.mtls.pki_rollover:
    state_file: "{{ pki_dir }}/rollover.json"
    ca_dir: "{{ pki_dir }}/ca"
    next_dir: "{{ pki_dir }}/ca-next"
    retired_dir: "{{ pki_dir }}/retired-ca"
    action: done
    phase: 3
'''

RETURN = r'''
state:
  description: The rollover state after the run (empty when no rollover was ever recorded).
  returned: always
  type: dict
  sample: {id: 20261129T1840Z, phase: 1, status: running, ca_common_name: Internal Root CA}
state_file:
  description: The state file.
  returned: always
  type: str
signing_ca_dir:
  description: The CA directory that signs leaves in this state.
  returned: always
  type: str
trusted_ca_dirs:
  description: The CA directories every host trusts in this state.
  returned: always
  type: list
  elements: str
anchor_ca_dirs:
  description:
    - Those of RV(trusted_ca_dirs) whose CA signed itself (a root of its own); with two tiers the bundle holds these
      and the root. A fleet moving under a root trusts its old CA and the root until phase 3.
  returned: always
  type: list
  elements: str
  version_added: 0.3.0
ca_self_signed:
  description: Whether the CA of O(ca_dir) signed itself (true while a fleet of one CA moves under a root).
  returned: always
  type: bool
  version_added: 0.3.0
next_issued:
  description: Whether O(next_dir) holds an issuing CA (signed by a root), so the rollover moves the fleet under a root.
  returned: always
  type: bool
  version_added: 0.3.0
plan:
  description: With O(action=plan), the phases this run does.
  returned: when action is plan
  type: dict
  contains:
    starting:
      description: Whether a new rollover starts.
      type: bool
    finished:
      description: Whether the last rollover is finished and none starts.
      type: bool
    phase_done:
      description: The last phase done.
      type: int
    phases:
      description: The phases to run.
      type: list
      elements: int
promoted:
  description: Whether phase 3 moved (or in check mode would move) the next CA to O(ca_dir).
  returned: always
  type: bool
retired_ca_dir:
  description: Where the old CA was kept.
  returned: when promoted
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.rollover import ACTIONS, RolloverManager


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state_file=dict(type='path', required=True),
            ca_dir=dict(type='path', required=True),
            next_dir=dict(type='path', required=True),
            retired_dir=dict(type='path', required=True),
            action=dict(type='str', default='read', choices=list(ACTIONS)),
            phase=dict(type='int', choices=[1, 2, 3]),
            requested_phase=dict(type='str'),
            new=dict(type='bool', default=False),
            ca_common_name=dict(type='str', default='Internal Root CA'),
            # module_defaults for group/fleetpki.mtls.pki hands it to every module of the group
            ca_passphrase=dict(type='str', no_log=True),
        ),
        required_if=[('action', 'start', ['phase']), ('action', 'done', ['phase'])],
        supports_check_mode=True,
    )
    params = module.params
    manager = RolloverManager(
        state_file=params['state_file'],
        ca_dir=params['ca_dir'],
        next_dir=params['next_dir'],
        retired_dir=params['retired_dir'],
        action=params['action'],
        phase=params['phase'],
        requested_phase=params['requested_phase'],
        new=params['new'],
        ca_common_name=params['ca_common_name'],
    )
    try:
        manager.plan()
        result = manager.result() if module.check_mode else manager.apply()
    except PkiError as exc:
        module.fail_json(msg=str(exc))
    except (IOError, OSError) as exc:
        module.fail_json(msg='cannot update the CA rollover: %s: %s; check the directory' % (exc.filename, exc.strerror))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
