#!/usr/bin/python
# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: pki_ca
short_description: Create or load the fleet's internal root CA on the control node
version_added: 0.1.0
description:
  - Creates a self-signed root CA in O(ca_dir) as C(ca-key.pem) (mode 0600) and C(ca-cert.pem) (mode 0644), or loads
    and validates the CA already there.
  - An existing valid CA is never replaced unless O(force=true); a replaced CA is moved to C(retired/) in O(ca_dir),
    never deleted.
  - Pointing O(ca_dir) at the old scripts' C(pki/ca) directory (C(ca-key.pem) + C(ca-cert.pem)) adopts that CA as it
    is. A CA key readable by others is reset to mode 0600 (reported as changed).
  - The certificate has BasicConstraints CA:TRUE (critical), KeyUsage keyCertSign and cRLSign (critical), and a
    SubjectKeyIdentifier.
  - Runs on the control node only; the CA key never leaves it.
author:
  - fleetpki contributors (@fleetpki)
requirements:
  - cryptography >= 38.0
attributes:
  check_mode:
    support: full
    description: Reports what would change and writes nothing.
  diff_mode:
    support: full
    description: Shows subject, serial, fingerprint and expiry before and after; never key material.
extends_documentation_fragment:
  - fleetpki.mtls.pki_group.action_group
options:
  ca_dir:
    description: Directory that holds (or will hold) C(ca-key.pem) and C(ca-cert.pem). Created with mode 0700.
    type: path
    required: true
    aliases: [dir]
  common_name:
    description: Common name of a new CA. At most 64 characters, no control characters, no surrounding spaces.
    type: str
    default: Internal Root CA
  organization:
    description: Organization (O) of a new CA's subject. At most 64 characters, no control characters.
    type: str
  organizational_unit:
    description: Organizational unit (OU) of a new CA's subject. At most 64 characters, no control characters.
    type: str
  country:
    description: Two-letter country code (C) of a new CA's subject.
    type: str
  state_or_province:
    description: State or province (ST) of a new CA's subject. At most 128 characters, no control characters.
    type: str
  locality:
    description: Locality (L) of a new CA's subject. At most 128 characters, no control characters.
    type: str
  key_type:
    description: Key algorithm of a new CA.
    type: str
    default: ec-p256
    choices: [ec-p256, ec-p384, rsa2048, rsa3072, rsa4096, ed25519]
  valid_days:
    description: Validity of a new CA certificate, in days, from 1 to 10950 (30 years).
    type: int
    default: 3650
  path_length:
    description:
      - BasicConstraints pathLenConstraint. Omit for no limit, which leaves room for an intermediate CA later.
    type: int
  ca_passphrase:
    description:
      - Encrypts a new CA key with this passphrase (PKCS#8, best available encryption).
      - Required to load an encrypted CA key. Never logged.
      - A new CA key (created, or replaced with O(force)) needs at least 16 characters, since the PKCS#8 wrapping
        derives its key with PBKDF2 at 2048 rounds. An existing key encrypted with a shorter one still loads, with a
        warning.
      - With O(pkcs11), or a CA whose key is in a token (C(ca-key.pkcs11.json) in O(ca_dir)), the token's user PIN.
    type: str
    aliases: [passphrase]
  pkcs11:
    description:
      - Keep the CA key in a PKCS#11 token (an HSM, or SoftHSM2) instead of C(ca-key.pem). A new CA's key pair is
        made in the token under O(pkcs11.key_label) (sensitive, never extractable), or the pair already there under
        that label is used; the certificate is built here and only its to-be-signed bytes are signed by the token.
      - O(ca_dir) then holds C(ca-key.pkcs11.json) (the module, token and key label; no secret) in place of the key,
        and every module that signs with this CA (M(fleetpki.mtls.pki_leaf), M(fleetpki.mtls.pki_crl)) finds the
        token through it, logging in with the PIN given as their C(ca_passphrase).
      - O(ca_passphrase) is the token's user PIN. Needs python-pkcs11 on the control node.
      - A key pair already in the token under the label is used (with a warning) when it was made there, never
        extractable; a key that could ever be read out, the root's key for an issuing CA, or the replaced CA's key
        under O(force) is refused. Without O(pkcs11), a CA whose key is in a token is used where it is.
      - Key types ec-p256, ec-p384, rsa2048, rsa3072, rsa4096 (no ed25519 in PKCS#11 2.40).
    type: dict
    version_added: 0.3.0
    suboptions:
      module:
        description: Absolute path of the token's PKCS#11 library (SoftHSM2 on Debian, C(/usr/lib/softhsm/libsofthsm2.so)).
        type: path
        required: true
      token_label:
        description: Label of the token (at most 32 bytes), as given when it was initialised.
        type: str
        required: true
      key_label:
        description: Label of the CA's key pair in the token (at most 32 bytes); one label per CA.
        type: str
        required: true
  issuer_dir:
    description:
      - Make the CA in O(ca_dir) an issuing CA, signed by the CA in this directory (the root), instead of a
        self-signed root. Two tiers, the root signing only issuing CAs and its CRL, each issuing CA (one per site)
        signing the leaves, and hosts trusting the root.
      - An issuing CA has path length 0 (another O(path_length) is refused), needs O(name_constraints_permitted_dns)
        and/or O(name_constraints_permitted_ip) (the names of its site) and a subject of its own, and never outlives
        its root (a shorter validity is warned about; a renewal that would not outlast the current certificate is
        refused). Its renewal (O(renew_days)) is signed by the same root again.
      - The root's key (a file or in a token) is opened only to sign; other runs check the issuing CA against the
        root's certificate alone. A self-signed CA in O(ca_dir) is never turned into an issuing CA.
      - The root must allow a CA below it (no O(path_length) of 0).
    type: path
    version_added: 0.3.0
  issuer_passphrase:
    description:
      - The secret of the root's key in O(issuer_dir), its passphrase or its token's user PIN. Never logged.
    type: str
    version_added: 0.3.0
  replace_revoked:
    description:
      - With O(issuer_dir), an issuing CA that its root revoked (M(fleetpki.mtls.pki_crl)
        O(fleetpki.mtls.pki_crl#module:revoke_ca_dirs), a compromised site) is replaced by a new CA with a new key,
        as with O(force=true); the revoked one is kept under C(retired/). Without it, such a CA is refused.
      - A CA that was not revoked is kept as it is.
    type: bool
    default: false
    version_added: 0.3.0
  renew_days:
    description:
      - When the existing CA certificate expires within this many days, re-issue it with the SAME key and subject
        (new serial, O(valid_days) of validity, same extensions); the old certificate moves to C(retired/).
      - Leaves keep validating, since their AuthorityKeyIdentifier names the key. Roll the new CA certificate into
        the trust stores (C(playbooks/ca_renew.yml)). C(0) never renews.
    type: int
    default: 0
  name_constraints_permitted_dns:
    description:
      - DNS suffixes a new CA may certify (nameConstraints, critical); each permits itself and every name under it
        (C(fleet.example.com) permits C(redis1.fleet.example.com)); no C(*), no leading dot.
      - Limits what a CA in hosts' system trust stores can vouch for. Add C(localhost) when a cert carries it (the
        Redis cert does). Empty with O(name_constraints_permitted_ip) set leaves DNS names unconstrained.
      - Only for a new CA; an existing CA whose constraints differ is kept, with a warning. A renewal keeps them.
      - M(fleetpki.mtls.pki_leaf) refuses a certificate with a name outside them.
    type: list
    elements: str
    default: []
  name_constraints_permitted_ip:
    description:
      - IP ranges (CIDR, such as C(10.20.0.0/16) or C(127.0.0.1/32)) a new CA may certify, in its nameConstraints.
      - Empty with O(name_constraints_permitted_dns) set leaves IP addresses unconstrained.
    type: list
    elements: str
    default: []
  name_constraints_excluded_ip:
    description:
      - IP ranges a new CA may never certify (excluded subtrees of its nameConstraints). C(0.0.0.0/0) and C(::/0)
        together forbid every address, as the enrollment CA on an API host has them (its certificates name a
        machine by DNS name only).
    type: list
    elements: str
    default: []
    version_added: 0.3.0
  usage:
    description:
      - The ExtendedKeyUsage of a new CA certificate, which limits what it can sign, as OpenSSL holds every
        certificate below a CA to the CA's EKU. C(client) signs client certificates only, C(server) server ones,
        C(both) either. Omitted, the CA is not limited by usage (the fleet's CAs).
      - A renewal keeps the CA's own.
    type: str
    choices: [client, server, both]
    version_added: 0.3.0
  encrypt_existing_key:
    description:
      - When the existing CA key is not encrypted and O(ca_passphrase) is given, encrypt the key in place with it
        (PKCS#8, the same key and certificate; written atomically at mode 0600 under the directory's lock; no
        unencrypted copy is kept). Reported as changed, with RV(action=encrypt_key).
      - The way out for a CA key written unencrypted while a passphrase was meant. Without it, such a key given
        O(ca_passphrase) is refused, naming this option.
      - The passphrase needs at least 16 characters, as for a new key.
    type: bool
    default: false
    version_added: 0.3.0
  force:
    description:
      - Replace the CA in O(ca_dir) with a new one even when it is valid. The old files are moved to C(retired/).
      - Every leaf certificate must then be re-issued; prefer the rollover playbook on a live fleet.
    type: bool
    default: false
notes:
  - A missing, corrupt or mismatched CA file, a wrong passphrase, an expired CA or an unwritable O(ca_dir) stops the
    module with a message naming the file and the fix; no file is changed.
seealso:
  - module: fleetpki.mtls.pki_leaf
  - module: fleetpki.mtls.cert_expiry
'''

EXAMPLES = r'''
- name: Create or load the internal root CA
  fleetpki.mtls.pki_ca:
    ca_dir: "{{ playbook_dir }}/pki/ca"
    common_name: Acme Fleet Root CA
    organization: Acme
  register: ca

- name: A CA that may certify only the fleet's names and network (for hosts' system trust stores)
  fleetpki.mtls.pki_ca:
    ca_dir: "{{ playbook_dir }}/pki/ca"
    common_name: Acme Fleet Root CA
    name_constraints_permitted_dns: [fleet.example.com, localhost]
    name_constraints_permitted_ip: [10.20.0.0/16, 127.0.0.1/32]

- name: Adopt the CA made by the old openssl scripts, encrypted key
  fleetpki.mtls.pki_ca:
    ca_dir: /srv/old-scripts/pki/ca
    ca_passphrase: "{{ vault_ca_passphrase }}"
  no_log: false

- name: An offline root whose key lives in a PKCS#11 token (SoftHSM2 here)
  fleetpki.mtls.pki_ca:
    ca_dir: "{{ playbook_dir }}/pki/root"
    common_name: Acme Fleet Root CA
    pkcs11:
      module: /usr/lib/softhsm/libsofthsm2.so
      token_label: fleetpki-root
      key_label: fleet-root
    ca_passphrase: "{{ vault_root_token_pin }}"

- name: The issuing CA of site A, signed by that root, limited to the site's names
  fleetpki.mtls.pki_ca:
    ca_dir: "{{ playbook_dir }}/pki/sites/site-a/ca"
    common_name: Acme Site A Issuing CA
    issuer_dir: "{{ playbook_dir }}/pki/root"
    issuer_passphrase: "{{ vault_root_token_pin }}"
    ca_passphrase: "{{ vault_ca_passphrase }}"
    name_constraints_permitted_dns: [site-a.example.com, localhost]
    name_constraints_permitted_ip: [10.20.0.0/16, 127.0.0.1/32]

- name: Show when the CA expires
  ansible.builtin.debug:
    msg: "CA {{ ca.subject }} expires {{ ca.not_after }} ({{ ca.days_remaining }} days)"
'''

RETURN = r'''
dir:
  description: The CA directory.
  returned: always
  type: str
key_path:
  description: Path of the CA private key.
  returned: always
  type: str
  sample: /srv/pki/ca/ca-key.pem
cert_path:
  description: Path of the CA certificate.
  returned: always
  type: str
  sample: /srv/pki/ca/ca-cert.pem
action:
  description: What was done (or would be in check mode).
  returned: always
  type: str
  sample: none
  choices: [none, create, replace, fix_mode, encrypt_key, renew]
subject:
  description: Subject of the CA certificate (RFC 4514). Absent in check mode when the CA is still to be made.
  returned: when the CA exists
  type: str
  sample: CN=Internal Root CA
common_name:
  description: Common name of the CA.
  returned: when the CA exists
  type: str
serial:
  description: Serial number of the CA certificate, upper-case hex.
  returned: when the CA exists
  type: str
fingerprint_sha256:
  description: SHA-256 fingerprint of the CA certificate, colon-separated hex.
  returned: when the CA exists
  type: str
not_before:
  description: Start of validity, ISO 8601 UTC.
  returned: when the CA exists
  type: str
not_after:
  description: End of validity, ISO 8601 UTC.
  returned: when the CA exists
  type: str
  sample: '2036-11-21T10:00:00Z'
days_remaining:
  description: Whole days until the CA expires.
  returned: when the CA exists
  type: int
key_type:
  description: Key algorithm of the CA.
  returned: when the CA exists
  type: str
encrypted:
  description: Whether the CA key file is encrypted with a passphrase.
  returned: when the CA exists
  type: bool
path_length:
  description: BasicConstraints pathLenConstraint, null for none.
  returned: when the CA exists
  type: int
name_constraints:
  description: The CA's nameConstraints, or null when it has none.
  returned: when the CA exists
  type: dict
  contains:
    permitted_dns:
      description: Permitted DNS suffixes.
      type: list
      elements: str
    permitted_ip:
      description: Permitted IP ranges (CIDR).
      type: list
      elements: str
    excluded_dns:
      description: Excluded DNS suffixes (an adopted CA may have some).
      type: list
      elements: str
    excluded_ip:
      description: Excluded IP ranges.
      type: list
      elements: str
self_signed:
  description: Whether the CA is a self-signed root (false for an issuing CA under O(issuer_dir)).
  returned: when the CA exists
  type: bool
  version_added: 0.3.0
issuer:
  description: Subject of the CA that signed this one (RFC 4514); the CA's own subject for a root.
  returned: when the CA exists
  type: str
  version_added: 0.3.0
pkcs11:
  description: The token that holds the CA key (module, token_label, key_label), or null for a key file.
  returned: when the CA exists
  type: dict
  version_added: 0.3.0
previous_cert_path:
  description: Where the previous CA certificate was kept (under C(retired/)) when O(renew_days) renewed it.
  returned: when the CA certificate was renewed
  type: str
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.ca import CaManager, SUBJECT_FIELDS
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            ca_dir=dict(type='path', required=True, aliases=['dir']),
            common_name=dict(type='str', default='Internal Root CA'),
            organization=dict(type='str'),
            organizational_unit=dict(type='str'),
            country=dict(type='str'),
            state_or_province=dict(type='str'),
            locality=dict(type='str'),
            key_type=dict(type='str', default='ec-p256', choices=list(crypto.KEY_TYPES)),
            valid_days=dict(type='int', default=3650),
            path_length=dict(type='int'),
            ca_passphrase=dict(type='str', no_log=True, aliases=['passphrase']),
            force=dict(type='bool', default=False),
            encrypt_existing_key=dict(type='bool', default=False),
            renew_days=dict(type='int', default=0),
            name_constraints_permitted_dns=dict(type='list', elements='str', default=[]),
            name_constraints_permitted_ip=dict(type='list', elements='str', default=[]),
            pkcs11=dict(type='dict', options=dict(
                module=dict(type='path', required=True),
                # Names, not secrets (the PIN is ca_passphrase).
                token_label=dict(type='str', required=True, no_log=False),
                key_label=dict(type='str', required=True, no_log=False),
            )),
            issuer_dir=dict(type='path'),
            issuer_passphrase=dict(type='str', no_log=True),
            replace_revoked=dict(type='bool', default=False),
            name_constraints_excluded_ip=dict(type='list', elements='str', default=[]),
            usage=dict(type='str', choices=['client', 'server', 'both']),
        ),
        supports_check_mode=True,
    )
    if not crypto.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=crypto.CRYPTOGRAPHY_IMPORT_ERROR)

    params = module.params
    manager = CaManager(
        directory=params['ca_dir'],
        common_name=params['common_name'],
        subject_fields=dict((field, params[field]) for field in SUBJECT_FIELDS),
        key_type=params['key_type'],
        valid_days=params['valid_days'],
        passphrase=params['ca_passphrase'],
        force=params['force'],
        encrypt_existing_key=params['encrypt_existing_key'],
        path_length=params['path_length'],
        renew_days=params['renew_days'],
        name_constraints_permitted_dns=params['name_constraints_permitted_dns'],
        name_constraints_permitted_ip=params['name_constraints_permitted_ip'],
        pkcs11=params['pkcs11'],
        issuer_dir=params['issuer_dir'],
        issuer_passphrase=params['issuer_passphrase'],
        replace_revoked=params['replace_revoked'],
        name_constraints_excluded_ip=params['name_constraints_excluded_ip'],
        usage=params['usage'],
    )
    try:
        manager.plan()
        before = manager.summary_for_diff()
        result = manager.result() if module.check_mode else manager.apply()
    except PkiError as exc:
        module.fail_json(msg=str(exc))
    for warning in manager.warnings:
        module.warn(warning)
    if module._diff:
        after = manager.summary_for_diff() if not module.check_mode else (
            before if manager.action in (None, 'fix_mode', 'encrypt_key') else (
                {'state': 'CA certificate to be renewed with the same key'} if manager.action == 'renew'
                else {'state': 'new CA to be created'}))
        result['diff'] = {'before': before, 'after': after}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
