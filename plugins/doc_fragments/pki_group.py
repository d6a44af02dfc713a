# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    """The action group fleetpki.mtls.pki (meta/runtime.yml), written once for its modules."""

    # fleetpki.mtls.pki_group: the group's options, for a module of the group that has no use for them. It must
    # still accept them: module_defaults for group/fleetpki.mtls.pki sets them for every module of the group, and a
    # module refuses an argument it does not know.
    DOCUMENTATION = r'''
options:
  ca_dir:
    description:
      - Not used by this module. Accepted so that C(module_defaults) for C(group/fleetpki.mtls.pki) can set it for
        every module of the group (a module refuses an argument it does not know).
    type: path
    version_added: 0.3.0
  ca_passphrase:
    description:
      - Not used by this module. Accepted so that C(module_defaults) for C(group/fleetpki.mtls.pki) can set it for
        every module of the group. Never logged.
    type: str
    version_added: 0.3.0
'''

    # fleetpki.mtls.pki_group.action_group: the membership, for every module of the group.
    ACTION_GROUP = r'''
attributes:
  action_group:
    support: full
    membership: [fleetpki.mtls.pki]
    description: Use C(group/fleetpki.mtls.pki) in C(module_defaults) to set O(ca_dir) and O(ca_passphrase) once.
'''
