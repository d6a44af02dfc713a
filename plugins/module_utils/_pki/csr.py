# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A certificate request from a host whose key was born there, checked against what the inventory gives it.

The control node signs the request's public key into a certificate it builds from the inventory alone (no name,
extension or validity of the request is ever copied). Still, a request that asks for anything but exactly the
host's own subject and names is refused and reported: a host that asks for another host's name (or a wildcard, or
one name too many) has been tampered with, and the operator must hear of it. The request's signature must verify
with the key it carries (proof that the host holds that key).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError

# What a host's request is refused for, in the message: a host may ask only for what the inventory gives it.
REFUSED = 'refused: a host may ask only for the subject and names the inventory gives it'


def _shown(value):
    """A name from a request, safe to print: a host controls it (no newline or escape sequence reaches a log)."""
    return value.encode('unicode_escape').decode('ascii')


def load_csr(data, where):
    try:
        return crypto.x509.load_pem_x509_csr(crypto.to_bytes(data))
    except ValueError:
        raise PkiError('%s: csr is not a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----): %s'
                       % (where, REFUSED))


def checked_public_key(request):
    """The public key of ``request.csr`` once the request proves it holds the key and asks for exactly the subject
    (CN), DNS names, IPs and key type of ``request``; PkiError naming the entry and the difference otherwise."""
    where = request.where
    csr = load_csr(request.csr, where)
    try:
        signature_ok = csr.is_signature_valid
    except crypto.UnsupportedAlgorithm:
        signature_ok = False
    if not signature_ok:
        raise PkiError('%s: the csr signature does not verify with the key it carries (not made with that key, or '
                       'altered): %s' % (where, REFUSED))
    subject = csr.subject.rfc4514_string()
    expected = crypto.build_name(request.common_name).rfc4514_string()
    if subject != expected:
        raise PkiError('%s: the csr asks for the subject %r, the inventory gives %r: %s'
                       % (where, _shown(subject), expected, REFUSED))
    try:
        dns, ips = crypto.sans(csr)
    except (ValueError, crypto.x509.DuplicateExtension, crypto.x509.UnsupportedGeneralNameType):
        raise PkiError('%s: the csr has a SubjectAltName that does not parse: %s' % (where, REFUSED))
    asked = set(name.lower() for name in dns) | set(crypto.normalise_ip(ip) for ip in ips)
    given = set(request.dns) | set(request.ip)
    if asked != given:
        problems = []
        if asked - given:
            problems.append('asks for %s, not given to it' % ', '.join(_shown(name) for name in sorted(asked - given)))
        if given - asked:
            problems.append('leaves out %s' % ', '.join(sorted(given - asked)))
        raise PkiError('%s: the csr %s: %s' % (where, ' and '.join(problems), REFUSED))
    public_key = csr.public_key()
    try:
        key_type = crypto.key_type_of(public_key)
    except PkiError:
        key_type = None
    if key_type != request.key_type:
        raise PkiError('%s: the csr carries a %s key, the request asks for %s: %s'
                       % (where, key_type or _describe(public_key), request.key_type, REFUSED))
    return public_key


def _describe(public_key):
    """A key of a kind fleetpki does not issue for, named for the message (EC secp521r1, RSA 1024, DSA...)."""
    curve = getattr(public_key, 'curve', None)
    if curve is not None:
        return 'EC %s' % curve.name
    size = getattr(public_key, 'key_size', None)
    kind = type(public_key).__name__.replace('PublicKey', '').lstrip('_')
    return '%s %s' % (kind, size) if size else kind
