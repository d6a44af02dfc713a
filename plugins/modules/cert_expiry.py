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
    description:
      - Certificate files, or directories whose C(*-cert.pem) files are read.
      - At least one of O(paths), O(endpoints) and O(crl_paths) must be given.
    type: list
    elements: path
  endpoints:
    description:
      - TLS ports whose served certificate is inspected (what clients see, not what is on disk), reported in
        RV(endpoints) in the order given.
      - The leaf is fetched on a handshake that verifies nothing (so an expired or foreign certificate is still
        seen); with O(ca_path) a second handshake verifies the chain against it, as a client does, without a host
        name check. Up to 16 endpoints are inspected at once.
      - "Status: C(unreachable) (no certificate obtained), C(broken) (does not parse, chain does not verify, not
        yet valid), C(expired), C(mismatch) (differs from O(endpoints[].cert_path)), C(expiring) (within
        O(warn_days)), C(ok)."
    type: list
    elements: dict
    version_added: 0.3.0
    suboptions:
      name:
        description: Name of the endpoint (label C(endpoint) of the metrics); unique in the list.
        type: str
        required: true
      host:
        description: Address or name to connect to.
        type: str
        required: true
      port:
        description: TCP port.
        type: int
        required: true
      server_name:
        description:
          - Name sent in SNI when it is a DNS name (an IP address is never sent). Defaults to O(endpoints[].host).
        type: str
      cert_path:
        description:
          - The certificate file the service should serve, on the machine where the module runs; compared by the
            SHA-256 of the DER of its first certificate.
          - Without it RV(endpoints[].matches_file) is null.
        type: path
      client_cert:
        description:
          - Client certificate (PEM) presented in the handshake, for a server that refuses to finish a TLS 1.2
            handshake without one. Not needed for Redis under TLS 1.3 (the client side completes first).
        type: path
      client_key:
        description:
          - Key of O(endpoints[].client_cert), a path only; the key is handed to Python's C(ssl), never read into the
            result.
        type: path
      timeout:
        description: Seconds for the connection and each handshake.
        type: float
        default: 5
  ca_path:
    description:
      - CA certificate, or a bundle of several CAs (during a rollover); chaining to any of them counts.
      - Without it the chain is not checked and RV(certs[].chains_to_ca) and RV(endpoints[].chain_verified) are null.
    type: path
  extra_ca_paths:
    description:
      - More CA certificates this host trusts beside O(ca_path), counted as O(ca_path)'s for certificates and CRLs
        (an API host's enrollment CA, which it alone trusts, for its validation routes). Needs O(ca_path).
      - A file that does not exist is skipped.
    type: list
    elements: path
    default: []
    version_added: 0.3.0
  warn_days:
    description: Certificates expiring within this many days get status C(expiring).
    type: int
    default: 30
  fail_on_warning:
    description: Fail when any certificate, CRL or endpoint is not C(ok) (expiring, expired, broken, and for an
      endpoint also mismatch or unreachable).
    type: bool
    default: false
  prometheus_path:
    description:
      - Also write the results as a Prometheus textfile there (for node_exporter's textfile collector), atomically,
        mode 0644; reported as changed only when its content changes.
      - "Metrics (gauges): C(fleetpki_cert_expiry_seconds) (notAfter, Unix time), C(fleetpki_cert_days_remaining),
        C(fleetpki_cert_broken); labels C(host), C(service), C(serial), C(path) and O(prometheus_labels).
        C(service) and C(host) come from the file name C(<service>-<host>-cert.pem)."
      - "With O(endpoints): C(fleetpki_served_cert_expiry_seconds) (notAfter of the served certificate),
        C(fleetpki_served_cert_matches_file) (1/0; only with O(endpoints[].cert_path)), C(fleetpki_served_cert_up)
        (1 when a certificate was obtained); labels C(endpoint), C(host), C(port), C(serial) (empty when
        unreachable) and O(prometheus_labels) (the endpoint's own labels win)."
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
  crl_issuer_paths:
    description:
      - Files of issuing CA certificates (two tiers; the pki role writes C(crl-issuers.pem), the API hosts get a copy)
        to check the CRLs of O(crl_paths) whose issuing CA no certificate of O(paths) carries, such as another
        site's.
      - An issuing CA counts only when a CA of O(ca_path) signed it; it is never trusted for anything else.
      - Needs O(ca_path). A file that does not exist is skipped (a host the role has not given it yet).
    type: list
    elements: path
    default: []
    version_added: 0.3.0
  renewal:
    description:
      - The renewal policy of M(fleetpki.mtls.pki_leaf) that issued the certificates (its
        O(fleetpki.mtls.pki_leaf#module:renew_days), O(fleetpki.mtls.pki_leaf#module:renew_fraction),
        O(fleetpki.mtls.pki_leaf#module:renew_splay)). With it each
        certificate and each served one gets RV(certs[].renew_at), the moment pki_leaf renews it (the splay is drawn
        from the file's name, C(<name>-cert.pem), as pki_leaf names it; a served certificate takes the name of its
        O(endpoints[].cert_path), else the endpoint's), and with O(prometheus_path) the gauges
        C(fleetpki_cert_renew_at_seconds) and C(fleetpki_served_cert_renew_at_seconds).
      - An alert on C(time() > (renew_at + expiry) / 2) fires once half the time a due certificate had is gone, for
        any validity; see C(docs/examples/prometheus-alerts.yml). A certificate that ends with its CA (one in
        O(ca_path)) gets none, as pki_leaf never renews it past the CA end.
      - Without it (the default) no renewal point is worked out.
    type: dict
    suboptions:
      renew_days:
        description: pki_leaf's fixed margin in days; empty for none.
        type: int
      renew_fraction:
        description: pki_leaf's share of the lifetime; empty for its default (1/3 when O(renewal.renew_days) is not
          set).
        type: float
      renew_splay:
        description: pki_leaf's splay; empty for its default.
        type: float
    version_added: 0.3.0
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

- name: What Redis and the API serve, compared with the control node's copies
  fleetpki.mtls.cert_expiry:
    ca_path: "{{ playbook_dir }}/pki/ca-bundle.pem"
    endpoints:
      - name: redis-redis1
        host: 10.0.0.5
        port: 6380
        server_name: redis1.example.com
        cert_path: "{{ playbook_dir }}/pki/issued/redis-redis1-cert.pem"
      - name: api-api1
        host: api1.example.com
        port: 8443
        cert_path: "{{ playbook_dir }}/pki/issued/api-api1-cert.pem"
        timeout: 3
    prometheus_path: /var/lib/prometheus/node-exporter/fleetpki_served.prom
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
    renew_at:
      description: When pki_leaf renews it under O(renewal), ISO 8601 UTC; null without O(renewal).
      type: str
      version_added: 0.3.0
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
endpoints:
  description: One entry per O(endpoints) item, in the order given.
  returned: always
  type: list
  elements: dict
  version_added: 0.3.0
  contains:
    name:
      description: O(endpoints[].name).
      type: str
    host:
      description: O(endpoints[].host).
      type: str
    port:
      description: O(endpoints[].port).
      type: int
    reachable:
      description: Whether a certificate was obtained.
      type: bool
    error:
      description: What is wrong, in words (why unreachable, broken or mismatched, or why the chain could not be
        checked); null when nothing is.
      type: str
    serial:
      description: Serial of the served certificate, upper-case hex; null when unreachable.
      type: str
    not_after:
      description: End of validity of the served certificate, ISO 8601 UTC.
      type: str
    days_remaining:
      description: Whole days of validity left (negative once expired).
      type: int
    seconds_remaining:
      description: Seconds of validity left.
      type: int
    renew_at:
      description: When pki_leaf renews the served certificate under O(renewal), ISO 8601 UTC; null without O(renewal)
        or when unreachable.
      type: str
      version_added: 0.3.0
    fingerprint_sha256:
      description: SHA-256 fingerprint of the served certificate, colon-separated hex.
      type: str
    matches_file:
      description: Whether it is the certificate of O(endpoints[].cert_path) (false when that file cannot be read);
        null without O(endpoints[].cert_path) or when unreachable.
      type: bool
    file_serial:
      description: Serial of the certificate in O(endpoints[].cert_path).
      type: str
    chain_verified:
      description: Whether the chain verifies against O(ca_path) (no host name check); null without O(ca_path), when
        unreachable, or when the second handshake failed for another reason than the chain.
      type: bool
    status:
      description: ok, expiring, expired, unreachable, mismatch or broken.
      type: str
      sample: ok
endpoint_counts:
  description: Number of endpoints per status.
  returned: always
  type: dict
  sample: {ok: 2, expiring: 0, expired: 0, unreachable: 0, mismatch: 1, broken: 0}
  version_added: 0.3.0
prometheus_path:
  description: The textfile written (or that would be, in check mode).
  returned: when O(prometheus_path) is set
  type: str
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.inspect import STATUSES, CertInspector
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.metrics import render, write_if_changed
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.renewal import RenewalPolicy
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.served import inspect_endpoints


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type='list', elements='path'),
            endpoints=dict(type='list', elements='dict', options=dict(
                name=dict(type='str', required=True),
                host=dict(type='str', required=True),
                port=dict(type='int', required=True),
                server_name=dict(type='str'),
                cert_path=dict(type='path'),
                client_cert=dict(type='path'),
                client_key=dict(type='path', no_log=False),  # a path; ssl reads the key, nothing reports it
                timeout=dict(type='float', default=5.0),
            )),
            ca_path=dict(type='path'),
            warn_days=dict(type='int', default=30),
            fail_on_warning=dict(type='bool', default=False),
            prometheus_path=dict(type='path'),
            prometheus_labels=dict(type='dict', default={}),
            crl_paths=dict(type='list', elements='path', default=[]),
            crl_issuer_paths=dict(type='list', elements='path', default=[]),
            extra_ca_paths=dict(type='list', elements='path', default=[]),
            renewal=dict(type='dict', options=dict(
                renew_days=dict(type='int'),
                renew_fraction=dict(type='float'),
                renew_splay=dict(type='float'),
            )),
            # module_defaults for group/fleetpki.mtls.pki hands these to every module of the group
            ca_dir=dict(type='path'),
            ca_passphrase=dict(type='str', no_log=True),
        ),
        supports_check_mode=True,
    )
    if not crypto.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=crypto.CRYPTOGRAPHY_IMPORT_ERROR)

    params = module.params
    if not (params['paths'] or params['endpoints'] or params['crl_paths']):
        module.fail_json(msg='nothing to inspect: give paths (certificate files or directories), endpoints (TLS '
                             'ports) or crl_paths')
    try:
        renewal = params['renewal']
        policy = (RenewalPolicy(renewal['renew_days'], renewal['renew_fraction'], renewal['renew_splay'])
                  if renewal is not None else None)
        if params['paths'] or params['crl_paths']:
            report = CertInspector(params['paths'] or [], params['ca_path'], params['warn_days'],
                                   crl_paths=params['crl_paths'], policy=policy,
                                   crl_issuer_paths=params['crl_issuer_paths'],
                                   extra_ca_paths=params['extra_ca_paths']).inspect()
        else:
            zero = dict((status, 0) for status in STATUSES)
            report = {'certs': [], 'counts': zero, 'total': 0, 'crls': [], 'crl_counts': dict(zero)}
        report.update(inspect_endpoints(params['endpoints'] or [], params['ca_path'], params['warn_days'],
                                        policy=policy))
    except PkiError as exc:
        module.fail_json(msg=str(exc))
    report['changed'] = False
    if params['prometheus_path']:
        content = render(report['certs'], params['prometheus_labels'], report['crls'],
                         endpoints=report['endpoints'] if params['endpoints'] else None)
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
        bad = ['%s %s:%s (%s%s)' % (entry['name'], entry['host'], entry['port'], entry['status'],
                                    ': ' + entry['error'] if entry['error'] else '')
               for entry in report['endpoints'] if entry['status'] != 'ok']
        if bad:
            problems.append('%d endpoint(s) not ok: %s' % (len(bad), ', '.join(bad)))
        if problems:
            module.fail_json(msg='; '.join(problems), **report)
    module.exit_json(**report)


if __name__ == '__main__':
    main()
