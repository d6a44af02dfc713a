# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Enrollment of PXE-booted validation machines: one-time tokens bound to a machine, and the client certificate
the API host's enrollment CA signs for a machine that presents its token with a certificate request.

The one owner of the rules both sides share: module enrollment_token (the control node mints a token and the API
hosts keep only its SHA-256) and the reference API (installed beside it as fleet_enroll.py; it imports nothing
from Ansible). cryptography is imported only when a certificate is signed.

A token is a random URL-safe string (43 characters, 256 bits). The one API host it is granted on keeps
``<tokens dir>/<sha256>.json``, {"machine": ..., "expires": <epoch seconds>}; the token itself is never stored
there. Redeeming it signs the certificate, then renames the record into ``used/`` (one rename wins, so a token works
once even under concurrent requests) before the certificate is handed out.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import datetime
import hashlib
import json
import os
import re
import threading
import time

MAC = re.compile(r'^[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}$')
# A machine's serial number: letters, digits and inner "-", compared without case; with its "sn-" prefix it is one DNS
# label of the machine's certificate name.
SERIAL = re.compile(r'^[a-z0-9]([a-z0-9-]{0,58}[a-z0-9])?$')
TOKEN = re.compile(r'^[A-Za-z0-9_-]{32,128}$')
# How long a token and a certificate may last at most: a token is for one boot, a certificate for one validation run.
MAX_TOKEN_SECONDS = 86400
MAX_CERT_HOURS = 24


class EnrollError(Exception):
    """A refused enrollment: ``status`` is the HTTP status, the message is the client's (and the log's) reason."""

    def __init__(self, status, message):
        super(EnrollError, self).__init__(message)
        self.status = status


def machine_id(value):
    """The machine's identity in its one form: a MAC (aa:bb:cc:dd:ee:ff, lower case) or a serial (lower case).
    ValueError names the forms when it is neither (quoting at most 40 characters of what was given)."""
    text = (value if isinstance(value, str) else '').strip().lower()
    if MAC.match(text):
        return text.replace('-', ':')
    if SERIAL.match(text):
        return text
    shown = repr(value[:40]) if isinstance(value, str) else type(value).__name__
    raise ValueError('a machine is named by its MAC address (aa:bb:cc:dd:ee:ff) or its serial number (letters, '
                     'digits and inner "-", 60 at most), not %s' % shown)


def machine_label(machine):
    """The DNS label naming a machine in its certificate: mac-<12 hex digits> or sn-<serial>, so that neither a MAC
    and a serial of the same digits, nor a machine and a fleet host, ever share a name."""
    return 'mac-' + machine.replace(':', '') if MAC.match(machine) else 'sn-' + machine


def new_token():
    """A new token: 256 random bits, URL-safe (it goes on a kernel command line)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode('ascii').rstrip('=')


def token_digest(token):
    return hashlib.sha256(token.encode('ascii')).hexdigest()


def token_record(machine, expires):
    """What the API hosts keep of a token (its file's content, under the token's digest)."""
    return json.dumps({'machine': machine, 'expires': int(expires)}, sort_keys=True) + '\n'


def _utc(cert, name):
    """A certificate's not_valid_before/after as naive UTC: cryptography 38 (Debian 12's, on the API host) has only
    those; newer ones deprecate them for the *_utc properties."""
    aware = getattr(cert, name + '_utc', None)
    return aware.replace(tzinfo=None) if aware is not None else getattr(cert, name)


class Enrollment:
    """The API host's side: checks a token against the store and signs the machine's request with the enrollment CA
    (read at each enrollment, so a renewed CA is used without a reload). The certificate's name is
    <machine label>.<the DNS suffix the CA's name constraints permit>."""

    def __init__(self, tokens_dir, ca_cert_path, ca_key_path, cert_hours=4, routes=(), issuer=None):
        """``routes``: the path prefixes an enrolled machine's certificate may call (API_ENROLL_ROUTES); ``issuer``:
        the enrollment CA's subject as the API's TLS layer shows a peer's issuer, to tell those certificates apart."""
        self.tokens_dir = tokens_dir
        self.ca_cert_path, self.ca_key_path = ca_cert_path, ca_key_path
        self.routes, self.issuer = list(routes), issuer
        if not all(isinstance(route, str) and route.startswith('/') for route in self.routes):
            raise ValueError('API_ENROLL_ROUTES is a comma-separated list of path prefixes, not %r'
                             % ','.join(str(route) for route in self.routes))
        if self.routes and not issuer:
            # The routes hold enrolled certificates by their issuer: without it they would hold none (fail open).
            raise ValueError('the routes of enrolled certificates need the enrollment CA\'s issuer to tell them apart')
        try:
            self.cert_hours = float(cert_hours)
        except (TypeError, ValueError):
            self.cert_hours = 0
        if not 0 < self.cert_hours <= MAX_CERT_HOURS:
            raise ValueError('API_ENROLL_CERT_HOURS is %r; a certificate of an enrolled machine lasts more than 0 '
                             'and at most %d hours' % (cert_hours, MAX_CERT_HOURS))
        self.lock = threading.Lock()

    def enroll(self, body, now=None):
        """(PEM of the machine's certificate and the enrollment CA's, machine, serial in hex) for a request body
        {"token", "machine", "csr"}; EnrollError otherwise. The token is used up only once the certificate is
        signed: a refused request (its own fault or the API host's) leaves it as it was."""
        now = time.time() if now is None else now
        if not isinstance(body, dict):
            raise EnrollError(400, 'the body is a JSON object: {"token": ..., "machine": ..., "csr": ...}')
        try:
            machine = machine_id(body.get('machine'))
        except ValueError as exc:
            raise EnrollError(400, str(exc))
        token = body.get('token')
        if not isinstance(token, str) or not TOKEN.match(token):
            raise EnrollError(400, 'token is missing or not a fleetpki enrollment token')
        digest = token_digest(token)
        path = os.path.join(self.tokens_dir, digest + '.json')
        used = os.path.join(self.tokens_dir, 'used', digest + '.json')
        with self.lock:
            expires, owner = self._record(path, used, digest)
            if expires <= now:
                raise EnrollError(403, 'token %s expired at %s; mint a new one (playbooks/enrollment_token.yml)'
                                  % (digest[:12], _iso(expires)))
            if owner != machine:
                raise EnrollError(403, 'token %s is bound to another machine, not %s' % (digest[:12], machine))
            public_key = self._requested_key(body.get('csr'))
            pem, serial = self._sign(machine, public_key, now)
            try:
                # Another API process may make it at the same moment: that is no failure.
                os.makedirs(os.path.dirname(used), 0o700, exist_ok=True)
                # One rename wins, across processes too: the loser's certificate is never handed out.
                os.rename(path, used)
            except FileNotFoundError:
                raise EnrollError(409, 'token %s was already used' % digest[:12])
        return pem, machine, serial

    @staticmethod
    def _record(path, used, digest):
        """(expiry, machine) of the token's record."""
        try:
            with open(path) as handle:
                record = json.load(handle)
        except FileNotFoundError:
            if os.path.exists(used):
                raise EnrollError(409, 'token %s was already used; a token enrolls one boot only' % digest[:12])
            raise EnrollError(403, 'unknown token %s (never minted, replaced by a newer token for its machine, or '
                                   'minted for another API host)' % digest[:12])
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get('expires'), int) or \
                not isinstance(record.get('machine'), str):
            raise EnrollError(403, 'token %s has an unreadable record on the API host; mint a new one' % digest[:12])
        return record['expires'], record['machine']

    @staticmethod
    def _requested_key(csr_text):
        """The public key of a well-formed, self-signed request (PEM, or base64 DER as a shell can send it)."""
        from cryptography import x509
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        if not isinstance(csr_text, str) or not csr_text.strip() or len(csr_text) > 16384:
            raise EnrollError(400, 'csr is missing: a PKCS#10 request, PEM or base64 DER')
        try:
            if '-----BEGIN' in csr_text:
                request = x509.load_pem_x509_csr(csr_text.encode('ascii'))
            else:
                request = x509.load_der_x509_csr(base64.b64decode(csr_text, validate=True))
            signed = request.is_signature_valid
        except (ValueError, TypeError, UnicodeError, UnsupportedAlgorithm) as exc:
            raise EnrollError(400, 'csr is not a PKCS#10 request this API can check: %s' % exc)
        if not signed:
            raise EnrollError(400, 'csr is not signed by its own key, or with an algorithm this API does not take '
                                   '(sign it with SHA-256)')
        key = request.public_key()
        if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in ('secp256r1', 'secp384r1'):
            return key
        if isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
            return key
        raise EnrollError(400, 'csr key must be EC P-256 or P-384, or RSA of 2048 bits or more')

    def _load_ca(self, now):
        """(certificate PEM, certificate, key, DNS suffix) of the enrollment CA, fit to sign now; EnrollError 503
        naming the fix otherwise (the token is not used up)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.x509.oid import ExtendedKeyUsageOID
        try:
            with open(self.ca_cert_path, 'rb') as handle:
                ca_pem = handle.read()
            with open(self.ca_key_path, 'rb') as handle:
                ca_key = serialization.load_pem_private_key(handle.read(), password=None)
            ca_cert = x509.load_pem_x509_certificate(ca_pem)
        except (OSError, ValueError, TypeError) as exc:
            raise EnrollError(503, 'the enrollment CA (%s, %s) cannot be loaded on the API host: %s; run site.yml'
                              % (self.ca_cert_path, self.ca_key_path, exc))
        numbers = ca_key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
        if numbers != ca_cert.public_key().public_bytes(serialization.Encoding.DER,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo):
            raise EnrollError(503, 'the enrollment CA key %s is not the key of %s; run site.yml'
                              % (self.ca_key_path, self.ca_cert_path))
        moment = datetime.datetime.utcfromtimestamp(int(now))
        if _utc(ca_cert, 'not_valid_after') <= moment + datetime.timedelta(minutes=10):
            raise EnrollError(503, 'the enrollment CA %s expires at %s: renew it (playbooks/ca_renew.yml)'
                              % (self.ca_cert_path, _utc(ca_cert, 'not_valid_after').strftime('%Y-%m-%dT%H:%M:%SZ')))
        try:
            usage = ca_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            constraints = ca_cert.extensions.get_extension_for_class(x509.NameConstraints).value
        except x509.ExtensionNotFound:
            usage, constraints = [], None
        suffixes = [tree.value for tree in (constraints.permitted_subtrees or []) if isinstance(tree, x509.DNSName)] \
            if constraints is not None else []
        if list(usage) != [ExtendedKeyUsageOID.CLIENT_AUTH] or len(suffixes) != 1:
            raise EnrollError(503, 'the certificate %s is not an enrollment CA (client usage only, one permitted DNS '
                                   'suffix); run site.yml with fleetpki_enrollment' % self.ca_cert_path)
        return ca_pem, ca_cert, ca_key, suffixes[0]

    def _sign(self, machine, public_key, now):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
        ca_pem, ca_cert, ca_key, suffix = self._load_ca(now)
        moment = datetime.datetime.utcfromtimestamp(int(now))
        not_after = min(moment + datetime.timedelta(hours=self.cert_hours), _utc(ca_cert, 'not_valid_after'))
        ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        label = machine_label(machine)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, label)]))
            .issuer_name(ca_cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(moment - datetime.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False),
                critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName('%s.%s' % (label, suffix))]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        pem = cert.public_bytes(serialization.Encoding.PEM) + ca_pem.rstrip(b'\n') + b'\n'
        return pem.decode('ascii'), '%x' % cert.serial_number


def _iso(epoch):
    return datetime.datetime.utcfromtimestamp(int(epoch)).strftime('%Y-%m-%dT%H:%M:%SZ')
