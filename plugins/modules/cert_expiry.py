#!/usr/bin/python
# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: cert_expiry
short_description: Inspect certificates for expiry, chain, key match and key file mode
version_added: 0.1.0
description:
  - Reads certificates on the control node or on a fleet host and reports, per certificate, its subject, serial,
    SANs, expiry, status, whether it chains to O(ca_path), whether its key (found beside it) matches, and whether
    the key file mode is 0600. Changes nothing, except the Prometheus textfile of O(prometheus_path).
  - In a directory only C(*-cert.pem) files are read (bundles, keys and CRLs are skipped); files named
    explicitly in O(paths) are read whatever their name.
  - "Status is C(broken) for a file that does not parse, does not chain to any CA in O(ca_path) (a certificate
    bearing the CA's name but signed by another key included), is not yet valid, or whose key does not match;
    otherwise C(expired), C(expiring) (within O(warn_days)) or C(ok)."
  - Works with Debian 12's python3-cryptography 38.0.4 on fleet hosts.
author:
  - fleetpki contributors (@fleetpki)
requirements:
  - cryptography >= 38.0
attributes:
  check_mode:
    support: full
    description: Inspects as usual; the textfile of O(prometheus_path) is not written.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
extends_documentation_fragment:
  - fleetpki.mtls.pki_group
  - fleetpki.mtls.pki_group.action_group
options:
  paths:
    description: Certificate files, or directories whose C(*-cert.pem) files are read.
    type: list
    elements: path
    required: true
  ca_path:
    description:
      - CA certificate, or a bundle of several CAs (during a rollover); chaining to any of them counts.
      - Without it the chain is not checked and RV(certs[].chains_to_ca) is null.
    type: path
  warn_days:
    description: Certificates expiring within this many days get status C(expiring).
    type: int
    default: 30
  fail_on_warning:
    description: Fail when any certificate is not C(ok) (expiring, expired or broken).
    type: bool
    default: false
  prometheus_path:
    description:
      - Also write the results as a Prometheus textfile there (for node_exporter's textfile collector), atomically,
        mode 0644; reported as changed only when its content changes.
      - "Metrics (gauges): C(fleetpki_cert_expiry_seconds) (notAfter, Unix time), C(fleetpki_cert_days_remaining),
        C(fleetpki_cert_broken); labels C(host), C(service), C(serial), C(path) and O(prometheus_labels).
        C(service) and C(host) come from the file name C(<service>-<host>-cert.pem)."
    type: path
  prometheus_labels:
    description: Extra labels on every series (they override C(host) and C(service) from the file name).
    type: dict
    default: {}
  crl_paths:
    description:
      - CRL files (PEM; a bundle may hold one CRL per CA) whose nextUpdate is reported in RV(crls).
      - "A CRL is C(expiring) past half its validity (when M(fleetpki.mtls.pki_crl) re-signs it), C(expired) past its
        nextUpdate (a service that checks CRLs then refuses every client of that CA), C(broken) when it does not parse
        or, with O(ca_path), no CA there signed it. With O(prometheus_path): C(fleetpki_crl_next_update_seconds) and
        C(fleetpki_crl_expired), labels C(path) and C(issuer)."
    type: list
    elements: path
    default: []
notes:
  - The key beside C(name-cert.pem) is C(name-key.pem); beside C(name.crt) it is C(name.key).
seealso:
  - module: fleetpki.mtls.pki_leaf
'''

EXAMPLES = r'''
- name: Check the certificates a Redis host serves with
  fleetpki.mtls.cert_expiry:
    paths: [/etc/redis/tls]
    ca_path: /usr/local/share/fleetpki/ca-bundle.pem
    warn_days: 30
  register: expiry

- name: Fail the run when anything on the control node is expiring or broken
  fleetpki.mtls.cert_expiry:
    paths: ["{{ playbook_dir }}/pki/issued"]
    ca_path: "{{ playbook_dir }}/pki/ca/ca-cert.pem"
    fail_on_warning: true
  delegate_to: localhost
  run_once: true

- name: Expiry metrics of the whole fleet for node_exporter
  fleetpki.mtls.cert_expiry:
    paths: ["{{ playbook_dir }}/pki/issued"]
    ca_path: "{{ playbook_dir }}/pki/ca-bundle.pem"
    prometheus_path: /var/lib/prometheus/node-exporter/fleetpki.prom
  delegate_to: localhost
  run_once: true

- name: Print the counts
  ansible.builtin.debug:
    msg: "{{ expiry.counts }}"
'''

RETURN = r'''
certs:
  description: One entry per certificate file.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: Path of the certificate.
      type: str
    status:
      description: ok, expiring, expired or broken.
      type: str
      sample: ok
    problems:
      description: What is wrong, in words (also a key mode other than 0600, which does not make it broken).
      type: list
      elements: str
    subject:
      description: Subject (RFC 4514); null when the file does not parse.
      type: str
    issuer:
      description: Issuer (RFC 4514).
      type: str
    serial:
      description: Serial, upper-case hex.
      type: str
    dns:
      description: DNS SANs.
      type: list
      elements: str
    ip:
      description: IP SANs.
      type: list
      elements: str
    not_before:
      description: Start of validity, ISO 8601 UTC.
      type: str
    not_after:
      description: End of validity, ISO 8601 UTC.
      type: str
    days_remaining:
      description: Whole days of validity left (negative once expired).
      type: int
    seconds_remaining:
      description: Seconds of validity left, for monitoring.
      type: int
    fingerprint_sha256:
      description: SHA-256 fingerprint, colon-separated hex.
      type: str
    chains_to_ca:
      description: Whether a CA in O(ca_path) signed it; null without O(ca_path).
      type: bool
    key_path:
      description: The key found beside the certificate, or null.
      type: str
    key_matches:
      description: Whether that key matches the certificate; null when no key was found or the key is encrypted.
      type: bool
    key_mode:
      description: Octal mode of the key file, such as C(0600).
      type: str
    key_mode_ok:
      description: Whether the key file mode is 0600; null when no key was found.
      type: bool
counts:
  description: Number of certificates per status.
  returned: always
  type: dict
  sample: {ok: 3, expiring: 1, expired: 0, broken: 0}
total:
  description: Number of certificates inspected.
  returned: always
  type: int
crls:
  description: One entry per CRL in O(crl_paths).
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The file.
      type: str
    issuer:
      description: Issuer (RFC 4514).
      type: str
    status:
      description: C(ok), C(expiring), C(expired) or C(broken).
      type: str
    next_update:
      description: nextUpdate, ISO 8601 UTC.
      type: str
    days_remaining:
      description: Whole days until nextUpdate (negative once past).
      type: int
    problems:
      description: Why it is broken.
      type: list
      elements: str
crl_counts:
  description: Number of CRLs per status.
  returned: always
  type: dict
prometheus_path:
  description: The textfile written (or that would be, in check mode).
  returned: when O(prometheus_path) is set
  type: str
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.inspect import CertInspector
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.metrics import render, write_if_changed


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type='list', elements='path', required=True),
            ca_path=dict(type='path'),
            warn_days=dict(type='int', default=30),
            fail_on_warning=dict(type='bool', default=False),
            prometheus_path=dict(type='path'),
            prometheus_labels=dict(type='dict', default={}),
            crl_paths=dict(type='list', elements='path', default=[]),
            # module_defaults for group/fleetpki.mtls.pki hands these to every module of the group
            ca_dir=dict(type='path'),
            ca_passphrase=dict(type='str', no_log=True),
        ),
        supports_check_mode=True,
    )
    if not crypto.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=crypto.CRYPTOGRAPHY_IMPORT_ERROR)

    params = module.params
    try:
        report = CertInspector(params['paths'], params['ca_path'], params['warn_days'],
                               crl_paths=params['crl_paths']).inspect()
    except PkiError as exc:
        module.fail_json(msg=str(exc))
    report['changed'] = False
    if params['prometheus_path']:
        content = render(report['certs'], params['prometheus_labels'], report['crls'])
        try:
            report['changed'] = write_if_changed(params['prometheus_path'], content, module.check_mode)
        except (IOError, OSError, PkiError) as exc:
            module.fail_json(msg='prometheus_path %s cannot be written: %s; choose a writable path'
                             % (params['prometheus_path'], exc))
        report['prometheus_path'] = params['prometheus_path']
    if params['fail_on_warning']:
        problems = []
        for kind, entries in (('certificate', report['certs']), ('CRL', report['crls'])):
            bad = ['%s (%s%s)' % (entry['path'], entry['status'],
                                  ': ' + '; '.join(entry['problems']) if entry['problems'] else '')
                   for entry in entries if entry['status'] != 'ok']
            if bad:
                problems.append('%d %s(s) not ok: %s' % (len(bad), kind, ', '.join(bad)))
        if problems:
            module.fail_json(msg='; '.join(problems), **report)
    module.exit_json(**report)


if __name__ == '__main__':
    main()
