#!/usr/bin/python
# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: pki_leaf
short_description: Issue and renew many leaf certificates from the internal CA in one call
version_added: 0.1.0
description:
  - Checks and issues any number of leaf certificates signed by the CA in O(ca_dir), in one task on the control
    node. Give the whole fleet's list at once; there is no per-host crypto loop.
  - For each entry of O(certs) it writes C(<name>-key.pem) (0600), C(<name>-cert.pem) (0644) and
    C(<name>-bundle.pem) (certificate followed by the CA certificate, 0644) in the entry's C(dir), and records
    the certificate in C(metadata.json) in O(ca_dir), keyed by name, with the history of every serial issued
    for that name.
  - "A certificate is re-issued (with a new key) only when: it or its key is missing or unreadable; the key does
    not match; it is not signed by the current CA; it no longer matches its request (common name, DNS or IP SANs,
    usage, key type), or it lives longer than its request now asks; it is due for renewal (see O(renew_fraction),
    O(renew_days), O(renew_splay)); or O(force) is set. Each result says why."
  - A valid certificate whose bundle, file modes or metadata record is off is fixed in place (action C(update)).
  - Leaf validity never exceeds the CA's; a longer request is clamped with a warning. When the CA itself ends
    within the renewal margin, a clamped leaf is issued once with a warning to renew the CA, and not re-issued on
    every run.
  - "Renewal: a certificate of lifetime L is due once less than T of it is left, where base = the larger of
    O(renew_days) and O(renew_fraction) x L (either alone when only one is set; O(renew_fraction=1/3) when neither
    is), and T = base + O(renew_splay) x (L - base) x h, h in [0, 1) a stable hash of the certificate's name and
    serial. A batch issued together so comes due spread over a window, and stays spread. T is always less than L:
    no setting makes a certificate renew on every run. Each result's RV(certs[].renew_at) says when."
  - "Certificates carry: a random 159-bit serial; BasicConstraints CA:FALSE; KeyUsage digitalSignature (and
    keyEncipherment for RSA); ExtendedKeyUsage serverAuth and/or clientAuth per usage; a SubjectAltName with every
    DNS name and IP, including the common name; SubjectKeyIdentifier; an AuthorityKeyIdentifier with the CA's key
    identifier only, so a CA certificate re-issued with the same key still validates them."
  - Writes are atomic (temp file and rename) and runs on one CA directory are serialised by a lock on the
    directory; a run killed at any moment leaves no key beside a certificate it does not match.
author:
  - fleetpki contributors (@fleetpki)
requirements:
  - cryptography >= 38.0
attributes:
  check_mode:
    support: full
    description:
      - Reports per certificate what would change and why; writes nothing and takes no lock.
      - When O(ca_dir) holds no CA yet (neither key nor certificate) and O(ca_planned=true) says that
        M(fleetpki.mtls.pki_ca) only reported the CA it would make there, every certificate is reported as to be
        issued, with a warning. Without O(ca_planned), a missing CA fails as in a real run.
  diff_mode:
    support: full
    description: Shows serial, expiry, SANs, usage and key type of each changed certificate; never key material.
extends_documentation_fragment:
  - fleetpki.mtls.pki_group.action_group
options:
  ca_dir:
    description: Directory of the CA made by M(fleetpki.mtls.pki_ca) (C(ca-key.pem), C(ca-cert.pem)).
    type: path
    required: true
  ca_passphrase:
    description: Passphrase of an encrypted CA key. Never logged.
    type: str
  ca_planned:
    description:
      - Check mode only. Set it from the result of M(fleetpki.mtls.pki_ca) on O(ca_dir) in the same run (its
        RV(fleetpki.mtls.pki_ca#module:action) is V(create)); a CA missing from O(ca_dir) is then the one that a real
        run makes, and every certificate is reported as to be issued by it.
      - When false (the default), a missing CA fails in check mode too, so a mistyped O(ca_dir) does not pass C(--check).
      - Ignored outside check mode (a real run never issues without the CA).
    type: bool
    default: false
    version_added: 0.3.0
  renew_days:
    description:
      - Re-issue certificates that expire within this many days (a fixed margin).
      - Alone (without O(renew_fraction)), it means exactly that, without splay unless O(renew_splay) is set, as in
        versions before 0.3.0, whose default was 30.
      - With O(renew_fraction), whichever margin is larger applies.
    type: int
  renew_fraction:
    description:
      - Re-issue certificates once less than this share of their lifetime is left (above 0, at most 0.9).
      - Defaults to 1/3 (as cert-manager and step-ca) when O(renew_days) is not set either; a 24-hour certificate
        is then renewed with 8 hours left, a 365-day one with 121 days left (plus the splay).
    type: float
    version_added: 0.3.0
  renew_splay:
    description:
      - Move each certificate's renewal point earlier by up to this share of the time it has before the margin
        (0 to 0.9; 0 is no splay), by a stable hash of its name and serial, so that a batch issued together does
        not come due in one run.
      - Defaults to 0.25 when O(renew_fraction) applies (with its default, due between 1/2 and 1/3 of the lifetime
        left), to 0 with O(renew_days) alone.
    type: float
    version_added: 0.3.0
  force:
    description: Re-issue every certificate in O(certs).
    type: bool
    default: false
  issued_dir:
    description: Output directory for entries of O(certs) that do not set their own C(dir).
    type: path
    aliases: [dir]
  details:
    description:
      - Return every field of each certificate in RV(certs) (paths, SANs, usage, key type, fingerprint).
      - Off by default so that a run over thousands of certificates returns little and stays fast; the name,
        action, reason, serial and expiry are always returned.
    type: bool
    default: false
  report:
    description:
      - Which entries of O(certs) RV(certs) returns. The counts RV(issued), RV(updated) and RV(unchanged) always cover
        every entry.
      - V(all) returns one entry per requested certificate, in request order.
      - V(changed) returns only the certificates issued or updated (or that would be, in check mode), in request
        order; a rerun over a large fleet that changes nothing then returns an empty list instead of one entry per
        certificate. The pki role passes it, as its summary lists only what changed.
    type: str
    default: all
    choices: [all, changed]
    version_added: 0.3.0
  refused_requests:
    description:
      - What a refused host request (O(certs[].csr) that asks for anything but its entry's names, or does not prove
        its key) does.
      - V(fail) stops the task before any write, naming the entry and what it asked for.
      - V(skip) leaves that entry out (nothing is written for it, its current certificate stays) and issues the
        others; it is listed in RV(refused) with the reason. The pki role passes it, so one tampered host cannot stop
        the renewal of the whole fleet, and then fails that host.
    type: str
    default: fail
    choices: [fail, skip]
    version_added: 0.3.0
  certs:
    description: The certificates to issue. Names must be unique.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the certificate; the file names and the metadata key derive from it.
        type: str
        required: true
      dir:
        description: Directory for this certificate's files. Defaults to the module option O(issued_dir).
        type: path
      common_name:
        description:
          - Subject common name. Defaults to the first DNS name (or the first IP). Always among the SANs.
          - At most 64 characters; a longer first DNS name needs a shorter O(certs[].common_name).
        type: str
      dns:
        description:
          - DNS names for the SubjectAltName. The task fails, naming the entry and the name, on a trailing dot, an empty
            label, a label over 63 characters or with characters other than letters, digits and C(-), a name over
            253 characters, an all-numeric last label (C(12345), C(host.123)), non-ASCII (use the C(xn--) form),
            and a wildcard that is not the whole leftmost label above at least two labels (C(*.com) is refused,
            C(*.fleet.example.com) is fine). Single-label names such as C(localhost) or C(redis1) are accepted.
        type: list
        elements: str
        default: []
      ip:
        description: IP addresses for the SubjectAltName.
        type: list
        elements: str
        default: []
      usage:
        description: C(server) (serverAuth), C(client) (clientAuth) or C(both).
        type: str
        default: server
        choices: [server, client, both]
      valid_days:
        description:
          - Validity in days, from 1 to 3650; must be greater than O(renew_days).
          - 365 when neither this nor O(certs[].valid_hours) is set.
        type: int
      valid_hours:
        description:
          - Validity in hours, from 0.1 (6 minutes) to 87600, for short-lived certificates (V(24) with a renewal
            timer every few hours). Fractions are allowed (V(0.25) is 15 minutes; for a compressed test fleet). Not with
            O(certs[].valid_days).
          - notBefore is backdated 5 minutes for clocks a little behind, or a twelfth of the validity when that is
            less (30 seconds of a 6-minute certificate), so the renewal share is taken of about the time asked.
          - A certificate that lives longer than its entry now asks (a fleet moved from V(365) days to V(24) hours)
            is re-issued at once.
          - A number, or a decimal string (V("0.5")); a boolean, V(1e3) or V(1_0) is refused.
        type: raw
        version_added: 0.3.0
      key_type:
        description: Key algorithm.
        type: str
        default: ec-p256
        choices: [ec-p256, ec-p384, rsa2048, rsa3072, rsa4096, ed25519]
      csr:
        description:
          - A PEM certificate request from the host, whose key was born there (M(fleetpki.mtls.host_key) makes it).
            The certificate is then issued for the request's public key; no key file is written on the control node,
            and a C(<name>-key.pem) left there from before is removed.
          - The request must ask for exactly this entry's subject (CN O(certs[].common_name)), DNS names, IPs and
            O(certs[].key_type), and its signature must verify with the key it carries; anything else is refused,
            naming the entry and what it asked for, before any file is written (a host that asks for another
            host's name has been tampered with). Nothing of the request but its public key is used.
          - A certificate is re-issued when the request carries another key (the host rotated it). A rerun with the
            same request bytes decides from the record, without parsing it.
        type: str
        version_added: 0.3.0
notes:
  - Every bad input (unknown key type, a SAN that is neither a host name nor an IP, an empty or duplicate name,
    both O(certs[].valid_days) and O(certs[].valid_hours), a validity not above O(renew_days), a renewal share out of
    range, a missing, corrupt, mismatched or expired CA, a wrong or missing
    passphrase, an unwritable C(dir)) stops the module before any file is written, with a message naming the
    input and the fix.
seealso:
  - module: fleetpki.mtls.pki_ca
  - module: fleetpki.mtls.cert_expiry
'''

EXAMPLES = r'''
- name: Issue every certificate the fleet needs in one task
  fleetpki.mtls.pki_leaf:
    ca_dir: "{{ playbook_dir }}/pki/ca"
    issued_dir: "{{ playbook_dir }}/pki/issued"
    certs:
      - name: redis1
        dns: [redis1, redis1.example.com]
        ip: [10.0.0.10]
        usage: both
      - name: worker1
        common_name: worker1
        usage: client
      - name: api1
        dns: [api.example.com]
        ip: [10.0.0.20]
        usage: both
        valid_days: 90
  register: leaves

- name: Renew everything that expires within 45 days, CA key encrypted
  fleetpki.mtls.pki_leaf:
    ca_dir: /srv/pki/ca
    ca_passphrase: "{{ vault_ca_passphrase }}"
    renew_days: 45
    issued_dir: /srv/pki/issued
    certs: "{{ fleet_cert_requests }}"

- name: The CA set once for every module of the group fleetpki.mtls.pki (module_defaults on a block or play)
  module_defaults:
    group/fleetpki.mtls.pki:
      ca_dir: /srv/pki/ca
      ca_passphrase: "{{ vault_ca_passphrase }}"
  block:
    - name: Make or load the CA
      fleetpki.mtls.pki_ca:
        common_name: Acme Fleet Root CA

    - name: Issue or renew the fleet's certificates
      fleetpki.mtls.pki_leaf:
        issued_dir: /srv/pki/issued
        certs: "{{ fleet_cert_requests }}"

    - name: Publish the CA's CRL
      fleetpki.mtls.pki_crl:
        crl_days: 30

- name: Re-check a large fleet and get back only what changed (the counts cover every certificate)
  fleetpki.mtls.pki_leaf:
    ca_dir: /srv/pki/ca
    issued_dir: /srv/pki/issued
    certs: "{{ fleet_cert_requests }}"
    report: changed
  register: fleet_leaves

- name: List what was re-issued and why
  ansible.builtin.debug:
    msg: "{{ leaves.certs | selectattr('changed') | map(attribute='name') | zip(leaves.certs | selectattr('changed') | map(attribute='reason')) }}"
'''

RETURN = r'''
certs:
  description:
    - One entry per requested certificate, in request order; with O(report=changed) only the entries with
      RV(certs[].changed) true.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The certificate's name.
      type: str
    changed:
      description: Whether this certificate was (or in check mode would be) issued or updated.
      type: bool
    action:
      description: C(issue) (new key and certificate), C(update) (bundle, modes or metadata fixed), C(none), or
        C(refused) (the host's request was refused, with O(refused_requests=skip); the reason says why).
      type: str
    reason:
      description: Why, for example C(missing, expires in 12 days (renew_days 30)), C(request changed, dns).
      type: str
      sample: up to date
    serial:
      description: Serial of the current certificate (upper-case hex); null in check mode for one to be issued.
      type: str
    not_after:
      description: End of validity, ISO 8601 UTC.
      type: str
    days_remaining:
      description: Whole days of validity left.
      type: int
    renew_at:
      description:
        - When the certificate is due for renewal under this run's O(renew_fraction), O(renew_days) and
          O(renew_splay), ISO 8601 UTC; a run at or after it renews it.
        - V(null) in check mode for a certificate to be issued.
      type: str
      version_added: 0.3.0
    fingerprint_sha256:
      description: SHA-256 fingerprint, colon-separated hex (with O(details=true)).
      type: str
    common_name:
      description: Subject common name (with O(details=true)).
      type: str
    dns:
      description: DNS SANs (with O(details=true)).
      type: list
      elements: str
    ip:
      description: IP SANs (with O(details=true)).
      type: list
      elements: str
    usage:
      description: server, client or both (with O(details=true)).
      type: str
    key_type:
      description: Key algorithm (with O(details=true)).
      type: str
    key_path:
      description: Path of the private key (with O(details=true)).
      type: str
    cert_path:
      description: Path of the certificate (with O(details=true)).
      type: str
    bundle_path:
      description: Path of the bundle, certificate + CA (with O(details=true)).
      type: str
issued:
  description: Number of certificates issued (or to be issued in check mode).
  returned: always
  type: int
updated:
  description: Number of valid certificates whose bundle, modes or metadata were fixed.
  returned: always
  type: int
unchanged:
  description: Number of certificates left as they were.
  returned: always
  type: int
refused:
  description: The entries whose host request was refused (O(refused_requests=skip)), each with C(name) and C(reason).
  returned: always
  type: list
  elements: dict
  version_added: 0.3.0
metadata_path:
  description: Path of metadata.json.
  returned: always
  type: str
ca_not_after:
  description:
    - End of the CA's validity, ISO 8601 UTC.
    - V(null) in check mode when the CA is not made yet.
  returned: always
  type: str
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.leaf import ISSUE, UPDATE, LeafIssuer


def argument_spec():
    """The module's options (benchmarks/bench_issue.py gives its no-work stand-in the same ones)."""
    return dict(
        ca_dir=dict(type='path', required=True),
        ca_passphrase=dict(type='str', no_log=True),
        ca_planned=dict(type='bool', default=False),
        renew_days=dict(type='int'),
        renew_fraction=dict(type='float'),
        renew_splay=dict(type='float'),
        force=dict(type='bool', default=False),
        issued_dir=dict(type='path', aliases=['dir']),
        details=dict(type='bool', default=False),
        report=dict(type='str', default='all', choices=['all', 'changed']),
        refused_requests=dict(type='str', default='fail', choices=['fail', 'skip']),
        certs=dict(type='list', elements='dict', required=True, options=dict(
            name=dict(type='str', required=True),
            dir=dict(type='path'),
            common_name=dict(type='str'),
            dns=dict(type='list', elements='str', default=[]),
            ip=dict(type='list', elements='str', default=[]),
            usage=dict(type='str', default='server', choices=list(crypto.USAGES)),
            valid_days=dict(type='int'),
            valid_hours=dict(type='raw'),  # a number or a decimal string; checked by the engine (yes is no 1 hour)
            key_type=dict(type='str', default='ec-p256', choices=list(crypto.KEY_TYPES)),
            csr=dict(type='str'),
        )),
    )


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        supports_check_mode=True,
    )
    # Found, not imported: a rerun whose files all match their recorded digests never imports it.
    if not crypto.cryptography_installed():
        module.fail_json(msg=missing_required_lib('cryptography'))

    params = module.params
    try:
        issuer = LeafIssuer(
            ca_dir=params['ca_dir'],
            certs=params['certs'],
            ca_passphrase=params['ca_passphrase'],
            renew_days=params['renew_days'],
            renew_fraction=params['renew_fraction'],
            renew_splay=params['renew_splay'],
            skip_refused=params['refused_requests'] == 'skip',
            force=params['force'],
            default_dir=params['issued_dir'],
        )
        certs = issuer.run(check_mode=module.check_mode, details=params['details'], ca_planned=params['ca_planned'])
    except crypto.CryptographyMissing:  # found, but its import failed
        module.fail_json(msg=missing_required_lib('cryptography'), exception=crypto.CRYPTOGRAPHY_IMPORT_ERROR)
    except PkiError as exc:
        module.fail_json(msg=str(exc))
    except (IOError, OSError) as exc:
        module.fail_json(msg='cannot write under %s: %s; check the directory and free space'
                         % (exc.filename or params['ca_dir'], exc.strerror))
    for warning in issuer.warnings:
        module.warn(warning)
    actions = [entry['action'] for entry in certs]
    refused = [{'name': entry['name'], 'reason': entry['reason']} for entry in certs if entry['action'] == 'refused']
    if params['report'] == 'changed':
        certs = [entry for entry in certs if entry['changed']]
    result = dict(
        changed=issuer.changed,
        certs=certs,
        issued=actions.count(ISSUE),
        updated=actions.count(UPDATE),
        unchanged=actions.count('none'),
        refused=refused,
        metadata_path=issuer.store.metadata_path,
        # None only in check mode before the CA is made.
        ca_not_after=issuer.ca_not_after(),
    )
    if module._diff:
        result['diff'] = issuer.diff()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
