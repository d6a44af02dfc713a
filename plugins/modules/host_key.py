#!/usr/bin/python
# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: host_key
short_description: Make a host's private keys on the host and return their certificate requests
version_added: 0.3.0
description:
  - Runs on a fleet host. For each entry of O(keys), keeps a private key in O(dir) (C(<name>-key.pem), mode 0600)
    and a certificate request for it (C(<name>.csr), 0644) asking for exactly the entry's subject and names, and
    returns the request. The key never leaves the host; M(fleetpki.mtls.pki_leaf) signs the requests on the control
    node (its O(fleetpki.mtls.pki_leaf#module:certs[].csr)), and the roles copy each key from O(dir) into the
    service's own path with the certificate issued for it (M(fleetpki.mtls.tls_files) O(fleetpki.mtls.tls_files#module:files[].src)).
  - A key is made when there is none, when the one there does not load or is of another key type, when it is not
    root's alone (owner, or a mode wider than 0600), and for every entry with O(rotate=true). The service keeps
    its live key (in its own path) until the roll installs the new key with its certificate.
  - The request is kept and returned byte for byte while the key and the names stay the same, so the control
    node's rerun decides from its record without parsing it.
  - O(dir) must be root's alone (mode 0700, or it is refused with the commands that fix it); it is made when absent.
    Nothing is followed through a link another user could have made.
author:
  - fleetpki contributors (@fleetpki)
requirements:
  - cryptography >= 38.0 on the host (Debian 12's python3-cryptography)
attributes:
  check_mode:
    support: full
    description: Reports which keys would be made; writes nothing. A key not made yet has no request (RV(requests) C(csr) null).
  diff_mode:
    support: none
    description: Never shows key material; RV(requests) says what was made and why.
options:
  dir:
    description: root's directory of the host's keys and requests.
    type: path
    default: /etc/fleetpki/keys
  keys:
    description: One entry per certificate of this host (the pki role passes the host's requests).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The certificate's name (as in M(fleetpki.mtls.pki_leaf)); the file names derive from it.
        type: str
        required: true
      common_name:
        description: The subject's common name.
        type: str
        required: true
      dns:
        description: DNS names to ask for.
        type: list
        elements: str
        default: []
      ip:
        description: IP addresses to ask for.
        type: list
        elements: str
        default: []
      key_type:
        description: Key algorithm.
        type: str
        default: ec-p256
        choices: [ec-p256, ec-p384, rsa2048, rsa3072, rsa4096, ed25519]
  rotate:
    description: Make a new key for every entry (rotate.yml with force). The new key is certified and rolled out in the same run.
    type: bool
    default: false
  rotate_names:
    description:
      - Make a new key for the entries of these names only (the pki role passes those whose current certificate
        was revoked, so that a key that may be compromised is never certified again).
    type: list
    elements: str
    default: []
seealso:
  - module: fleetpki.mtls.pki_leaf
  - module: fleetpki.mtls.tls_files
'''

EXAMPLES = r'''
- name: Make this host's key and request
  fleetpki.mtls.host_key:
    keys:
      - name: worker-worker1
        common_name: worker1
        dns: [worker1]
  register: host_keys

- name: Sign it on the control node
  fleetpki.mtls.pki_leaf:
    ca_dir: /srv/pki/ca
    issued_dir: /srv/pki/issued
    certs:
      - name: worker-worker1
        dns: [worker1]
        usage: client
        csr: "{{ host_keys.requests['worker-worker1'].csr }}"
  delegate_to: localhost
'''

RETURN = r'''
requests:
  description: Per name, the request and what was done.
  returned: always
  type: dict
  contains:
    csr:
      description: The PEM certificate request (public); null in check mode for a key not made yet.
      type: str
    key_made:
      description: Whether a new key was made (or would be, in check mode).
      type: bool
    reason:
      description: Why, for example C(no key yet), C(rotated), C(kept).
      type: str
'''

import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.fleetpki.mtls.plugins.module_utils._host.host_files import HostFilesError
from ansible_collections.fleetpki.mtls.plugins.module_utils._host.host_key import HostKeys
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dir=dict(type='path', default='/etc/fleetpki/keys'),
            keys=dict(type='list', elements='dict', required=True, no_log=False, options=dict(
                name=dict(type='str', required=True),
                common_name=dict(type='str', required=True),
                dns=dict(type='list', elements='str', default=[]),
                ip=dict(type='list', elements='str', default=[]),
                key_type=dict(type='str', default='ec-p256', choices=list(crypto.KEY_TYPES)),
            )),
            rotate=dict(type='bool', default=False),
            rotate_names=dict(type='list', elements='str', default=[]),
        ),
        supports_check_mode=True,
    )
    if not crypto.cryptography_installed():
        module.fail_json(msg=missing_required_lib('cryptography'))
    try:
        keys = HostKeys(module.params['dir'], module.params['keys'], module.params['rotate'], module.check_mode,
                        module.params['rotate_names'])
        results = keys.run()
    except crypto.CryptographyMissing:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=crypto.CRYPTOGRAPHY_IMPORT_ERROR)
    except (HostFilesError, PkiError) as exc:
        module.fail_json(msg=str(exc))
    except (IOError, OSError) as exc:
        module.fail_json(msg='%s: %s' % (exc.filename or module.params['dir'], exc.strerror),
                         exception=traceback.format_exc())
    module.exit_json(changed=keys.changed, requests=results)


if __name__ == '__main__':
    main()
