# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Batched leaf issuance (backend of the pki_leaf module).

One call checks and issues any number of certificates: ``LeafIssuer.plan()``
decides per certificate what to do and why without writing; ``apply()``
writes under the CA directory lock. Key and cert are swapped so that a run
killed at any instant leaves either the old pair, the new pair, or no cert
(which the next run re-issues), never a key with a cert it does not match.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import errno
import functools
import hashlib
import os
import re

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import (
    constraints, crypto, csr as host_csr, files, renewal, store, validate)
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.ca import check_ca_usable, load_ca
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.store import (
    FILES_DIGEST, KEY_MODE, METADATA_NAME, PUBLIC_MODE, Metadata, cert_facts, files_digest)
_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]*$')

# A cert is either re-issued (ISSUE) or, when valid, updated in place with some of the fixes below.
ISSUE = 'issue'
UPDATE = 'update'
BUNDLE = 'bundle'
CHAIN = 'chain'
MODE = 'mode'
RECORD = 'record'
STALE_KEY = 'stale key'

# The key part of the files digest of a certificate whose key is its host's: the request's exact bytes (the host
# sends the same request while its key and names stay; a new one is checked in full).
_CSR_DIGEST_PREFIX = b'fleetpki host csr\0'


class LeafRequest:
    """One validated entry of ``certs``."""

    def __init__(self, name, directory, common_name, dns, ip, usage, valid_days, key_type, where=None,
                 valid_hours=None, csr=None):
        self.name = name
        self.where = where or 'certs entry %s' % name
        self.directory = directory
        self.common_name = common_name
        self.dns = dns
        self.ip = ip
        self.usage = usage
        self.valid_days = valid_days
        self.valid_hours = valid_hours
        # What the request asks for; the certificate's own lifetime adds the backdating of notBefore.
        self.validity = (datetime.timedelta(hours=valid_hours) if valid_hours is not None
                         else datetime.timedelta(days=valid_days))
        self.validity_text = ('valid_hours %g' % valid_hours if valid_hours is not None
                              else 'valid_days %d' % valid_days)
        self.key_type = key_type
        # A key born on its host (csr given): the control node never holds it; a key file left from before is
        # stale and removed.
        self.csr = crypto.to_bytes(csr) if csr else None
        self.stale_key_path = os.path.join(directory, '%s-key.pem' % name)
        self.key_path = None if self.csr else self.stale_key_path
        self.cert_path = os.path.join(directory, '%s-cert.pem' % name)
        self.bundle_path = os.path.join(directory, '%s-bundle.pem' % name)


def parse_requests(certs, default_dir=None, renew_days=None, defaults=None, policy=None):
    """Validate every entry before anything is read or written; errors name the entry and the fix.

    ``policy``: the renewal.RenewalPolicy of the run (else one of ``renew_days`` and the defaults)."""
    if policy is None:
        policy = renewal.RenewalPolicy(renew_days=renew_days)
    if not certs:
        raise PkiError('certs is empty: list at least one certificate to issue')
    defaults = defaults or {}
    requests = []
    seen = {}
    for index, entry in enumerate(certs):
        where = 'certs[%d]' % index
        name = entry.get('name')
        if not name or not _NAME_RE.match(name):
            raise PkiError('%s: name %r is not usable as a file name; use letters, digits, ".", "_" and "-" '
                           '(not starting with "." or "-")' % (where, name))
        where = '%s (name %s)' % (where, name)
        if name in seen:
            raise PkiError('%s: the name is already used by certs[%d]; every certificate needs its own name'
                           % (where, seen[name]))
        seen[name] = index

        directory = entry.get('dir') or default_dir
        if not directory:
            raise PkiError('%s has no dir: set dir on the entry or the module option dir' % where)

        usage = entry.get('usage') or defaults.get('usage', 'server')
        if usage not in crypto.USAGES:
            raise PkiError('%s: usage %r is unknown; use one of %s' % (where, usage, ', '.join(crypto.USAGES)))
        key_type = entry.get('key_type') or defaults.get('key_type', 'ec-p256')
        crypto.check_key_type(key_type, '%s key_type' % where)

        valid_days, valid_hours = entry.get('valid_days'), entry.get('valid_hours')
        if valid_days is not None and valid_hours is not None:
            raise PkiError('%s sets both valid_days (%r) and valid_hours (%r): set one' % (where, valid_days, valid_hours))
        if valid_days is None and valid_hours is None:
            valid_hours = defaults.get('valid_hours')
            if valid_hours is None:
                valid_days = defaults.get('valid_days', 365)
        if valid_hours is not None:
            valid_hours = validate.valid_hours_value(where, valid_hours, validate.LEAF_VALID_HOURS)
            policy.check_lifetime(where, datetime.timedelta(hours=valid_hours), 'valid_hours (%g)' % valid_hours)
        else:
            validate.check_valid_days(where, valid_days, validate.LEAF_VALID_DAYS)
            policy.check_lifetime(where, datetime.timedelta(days=valid_days), 'valid_days (%d)' % valid_days)

        dns = []
        for value in entry.get('dns') or []:
            if crypto.is_ip(value):
                raise PkiError('%s: dns entry %r is an IP address; list it under ip' % (where, value))
            problem = validate.dns_name_problem(value)
            if problem:
                raise PkiError('%s: dns entry %r is neither a hostname nor an IP address: %s' % (where, value, problem))
            dns.append(value.lower())
        ips = []
        for value in entry.get('ip') or []:
            if not crypto.is_ip(value):
                raise PkiError('%s: ip entry %r is not an IP address; list host names under dns' % (where, value))
            ips.append(crypto.normalise_ip(value))

        common_name = entry.get('common_name') or (dns[0] if dns else (ips[0] if ips else None))
        if not common_name:
            raise PkiError('%s has no name to certify: give dns, ip or common_name' % where)
        if not entry.get('common_name') and len(common_name) > validate.SUBJECT_MAX_LENGTH['common_name']:
            raise PkiError('%s: common_name (the first dns entry, %r) is %d characters long; X.509 allows at most '
                           '%d: set common_name to a shorter name of the entry (the long one stays a DNS SAN)'
                           % (where, common_name, len(common_name), validate.SUBJECT_MAX_LENGTH['common_name']))
        validate.check_subject_value(where, 'common_name', common_name)
        # Modern clients ignore the CN: it must also be a SAN.
        if crypto.is_ip(common_name):
            ips.append(crypto.normalise_ip(common_name))
        elif common_name.lower() in dns:  # checked above already (the usual case: the first dns entry)
            pass
        else:
            problem = validate.dns_name_problem(common_name)
            if problem:
                raise PkiError('%s: common_name %r is neither a hostname nor an IP address, so it cannot be among '
                               'the SANs (%s); use a host name' % (where, common_name, problem))
            dns.append(common_name.lower())

        csr = entry.get('csr')
        if csr is not None and (not isinstance(csr, str) or '-----BEGIN CERTIFICATE REQUEST-----' not in csr):
            raise PkiError('%s: csr must be a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----), as '
                           'fleetpki.mtls.host_key returns it' % where)
        requests.append(LeafRequest(name, directory, common_name, sorted(set(dns)), sorted(set(ips)), usage,
                                    valid_days, key_type, where, valid_hours, csr))
    return requests


def issued_facts(request, cert, fingerprint, subject=None, not_before=None, not_after=None):
    """cert_facts() of a cert build_leaf_cert() just made from ``request``, taken from the request it was built of
    rather than parsed back from the cert (half the cost of issuing); test_leaf checks they are equal.

    ``subject``: the Name the cert was built with; ``not_before``, ``not_after``: the iso8601() of the times it was
    built with (the cert keeps whole seconds, which is all iso8601() writes), when the caller has them.
    """
    return {
        'serial': crypto.serial_hex(cert),
        'subject': (subject or crypto.build_name(request.common_name)).rfc4514_string(),
        'common_name': request.common_name,
        'dns': list(request.dns),
        'ip': list(request.ip),
        'usage': request.usage,
        'key_type': request.key_type,
        'not_before': not_before or crypto.iso8601(crypto.not_before(cert)),
        'not_after': not_after or crypto.iso8601(crypto.not_after(cert)),
        'fingerprint_sha256': fingerprint,
    }


def _fixed_extensions(ca, usage, is_rsa):
    """The extensions every leaf of this CA, usage and key kind shares, and the CA's subject."""
    eku_oids = {
        'server': [crypto.ExtendedKeyUsageOID.SERVER_AUTH],
        'client': [crypto.ExtendedKeyUsageOID.CLIENT_AUTH],
        'both': [crypto.ExtendedKeyUsageOID.SERVER_AUTH, crypto.ExtendedKeyUsageOID.CLIENT_AUTH],
    }[usage]
    return (
        ca.cert.subject,
        crypto.x509.BasicConstraints(ca=False, path_length=None),
        crypto.x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=is_rsa, data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False),
        crypto.x509.ExtendedKeyUsage(eku_oids),
        # Key identifier only: a CA cert re-issued with the same key still validates this leaf.
        crypto.x509.AuthorityKeyIdentifier(ca.key_identifier, None, None),
    )


def build_leaf_cert(request, key, ca, not_before, not_after, shared=None, subject=None):
    """``shared``: a dict the caller keeps for one CA across a batch, so what every leaf shares is built once;
    ``subject``: crypto.build_name(request.common_name) when the caller has built it already; ``key``: the
    private key, or the public key alone (a key born on its host)."""
    public_key = key.public_key() if hasattr(key, 'public_key') else key
    is_rsa = isinstance(public_key, crypto.rsa.RSAPublicKey)
    if shared is None:
        shared = {}
    fixed = shared.get((request.usage, is_rsa))
    if fixed is None:
        fixed = shared[(request.usage, is_rsa)] = _fixed_extensions(ca, request.usage, is_rsa)
    issuer_name, basic_constraints, key_usage, extended_key_usage, authority_key_identifier = fixed
    alt_names = [crypto.x509.DNSName(name) for name in request.dns]
    alt_names += [crypto.x509.IPAddress(crypto.ipaddress.ip_address(u'%s' % ip)) for ip in request.ip]
    builder = (
        crypto.x509.CertificateBuilder()
        .subject_name(subject or crypto.build_name(request.common_name))
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(crypto.random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(basic_constraints, critical=True)
        .add_extension(key_usage, critical=True)
        .add_extension(extended_key_usage, critical=False)
        .add_extension(crypto.x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(crypto.x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(authority_key_identifier, critical=False)
    )
    return crypto.sign(builder, ca.key)


def _longer_than_asked(request, lifetime):
    """A certificate that lives longer than its request now asks (valid_days 365 lowered to valid_hours 24) is
    re-issued at once rather than at its renewal point months later. notBefore is backdated by store.BACKDATE, or a
    twelfth of a validity under an hour (_issue), and as much again, up to a minute, is allowed. A shorter one
    (clamped to the CA's end, or a longer validity asked since) is not: it is renewed when due."""
    slack = min(store.BACKDATE, request.validity / 12)
    return lifetime > request.validity + slack + min(datetime.timedelta(minutes=1), slack)


# A batch's certificates share their few validity bounds (issued in the same second): parsed once each.
@functools.lru_cache(maxsize=4096)
def _parse_recorded_time(text):
    """crypto.parse_iso8601 of a time iso8601() wrote, by slicing (strptime was a tenth of a 1000-cert rerun)."""
    if len(text) != 20 or text[4] != '-' or text[10] != 'T' or text[19] != 'Z':
        return crypto.parse_iso8601(text)
    return datetime.datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]),
                             int(text[17:19]), tzinfo=crypto.UTC)


class CertPlan:
    """What one request needs, and why.

    ``recorded``: the metadata record of a cert found up to date from its files' digest, without parsing the cert
    (``cert`` is then None). ``files_sha256``: the digest of a cert fully checked and found valid, to record.
    """

    def __init__(self, request, action=None, reason='up to date', cert=None, recorded=None, renew_at=None,
                 refused=False):
        self.request = request
        self.refused = refused
        self.renew_at = renew_at
        self.action = action
        self.reason = reason
        self.cert = cert
        self.recorded = recorded
        self.new_cert = None
        self.fixes = []
        self.files_sha256 = None

    @property
    def changed(self):
        return self.action is not None

    def result(self, now, details=True, policy=None):
        """Per-cert result; without ``details`` only what a large fleet's run needs (smaller, faster output).
        ``policy``: the run's renewal.RenewalPolicy, for renew_at."""
        cert = self.new_cert or self.cert
        if cert is not None and self.action == ISSUE and self.new_cert is None:
            cert = None  # check mode: the cert on disk is not the one this run would leave
        request = self.request
        if cert is None and self.recorded is not None:
            recorded = self.recorded
            serial, not_after, fingerprint = (recorded['serial'], recorded['not_after'],
                                              recorded['fingerprint_sha256'])
            days = int((_parse_recorded_time(not_after) - now).total_seconds() // 86400)
            renew_at = self.renew_at
        elif cert is not None:
            serial, not_after, days = (crypto.serial_hex(cert), crypto.iso8601(crypto.not_after(cert)),
                                       crypto.days_remaining(cert, now))
            fingerprint = crypto.fingerprint_sha256(cert) if details else None
            renew_at = policy and policy.renew_at(crypto.not_before(cert), crypto.not_after(cert), request.name,
                                                  serial)
        else:
            serial = not_after = days = fingerprint = renew_at = None
        out = {
            'name': request.name,
            'changed': self.changed,
            'action': 'refused' if self.refused else (self.action or 'none'),
            'reason': self.reason,
            'serial': serial,
            'not_after': not_after,
            'days_remaining': days,
            'renew_at': crypto.iso8601(renew_at) if renew_at else None,
        }
        if details:
            out.update({
                'key_path': request.key_path,
                'cert_path': request.cert_path,
                'bundle_path': request.bundle_path,
                'common_name': request.common_name,
                'dns': request.dns,
                'ip': request.ip,
                'usage': request.usage,
                'key_type': request.key_type,
                'fingerprint_sha256': fingerprint,
            })
        return out


class LeafIssuer:
    """Checks and issues a batch of leaf certificates signed by the CA in ``ca_dir``."""

    def __init__(self, ca_dir, certs, ca_passphrase=None, renew_days=None, force=False, default_dir=None,
                 defaults=None, now=None, renew_fraction=None, renew_splay=None, skip_refused=False):
        # skip_refused: a host's request that asks for anything but its own names is left out (action 'refused',
        # nothing written for it) instead of stopping the batch: one tampered host cannot stop the fleet's renewal.
        self.skip_refused = skip_refused
        self.ca_dir = ca_dir
        self.store = store.CaStore(ca_dir)
        self.ca_passphrase = ca_passphrase
        self.policy = renewal.RenewalPolicy(renew_days, renew_fraction, renew_splay)
        self.force = force
        self.now = now or crypto.utcnow()
        self.requests = parse_requests(certs, default_dir, defaults=defaults, policy=self.policy)
        self.ca = None
        self.metadata = None
        self._ca_cert_data = None
        self._ca_file_sha256 = None
        self.plans = []
        self.warnings = []
        self._ca_warning_given = False
        self._ca_subject = None
        self._ca_public_key = None
        self._ca_fingerprint = None
        self._shared_extensions = {}
        self._revoked = set()
        self._time_texts = {}  # iso8601() of the few validity bounds a batch's certs share

    # -- planning (reads only) -------------------------------------------------------------------------------

    def load_ca(self):
        self.ca = load_ca(self.ca_dir, self.ca_passphrase, passphrase_option='ca_passphrase', dir_option='ca_dir')
        check_ca_usable(self.ca, self.now)

    def _ca_needed_up_front(self):
        """Whether the CA must be loaded (and its key decrypted) before any certificate is looked at: for force,
        and whenever loading it can fail on the key (a passphrase to check, an encrypted or missing key), so that a
        wrong passphrase fails every run, not only the next one that issues. Otherwise the CA is loaded only when a
        certificate needs more than its record (_need_ca)."""
        if self.force or self.ca_passphrase:
            return True
        key_data = self.store.read_ca_key()
        return key_data is None or b'ENCRYPTED' in key_data

    def preflight(self):
        """Outside the lock: fail fast (no CA, wrong passphrase) without waiting for it; parses nothing when the
        CA key is unencrypted."""
        if self.store.read_ca_cert() is None or self._ca_needed_up_front():
            self.load_ca()

    def load(self):
        self.ca = None
        self._ca_subject = None
        self._ca_cert_data = self.store.read_ca_cert()
        if self._ca_cert_data is None:
            self.load_ca()  # raises, naming the missing CA and the option to fix
        # The CA as the digests of files_sha256 know it: the bytes of its certificate file, hashed without parsing.
        self._ca_file_sha256 = hashlib.sha256(self._ca_cert_data).hexdigest()
        self.metadata = self.store.metadata()
        self._revoked = self.store.revoked_serials()
        if self._ca_needed_up_front():
            self._need_ca()

    def _need_ca(self):
        """Load and check the CA (the first use of cryptography in a run) once a certificate needs more than its
        record: a full check, an issue, an update. Every request is checked against its nameConstraints then; a
        run whose certificates all match their digests has the CA those digests were recorded with, byte for byte,
        which permitted the same requests when it issued them."""
        if self._ca_subject is not None:
            return
        if self.ca is None:
            self.load_ca()
        if self.ca.cert_pem != self._ca_cert_data:
            raise PkiError('%s changed while this run read it (another process wrote it without the CA directory '
                           'lock); run again' % self.ca.cert_path)
        self._ca_subject = self.ca.cert.subject
        self._ca_public_key = self.ca.cert.public_key()
        self._ca_fingerprint = crypto.fingerprint_sha256(self.ca.cert)
        self._shared_extensions = {}  # build_leaf_cert's, for this CA
        self._check_name_constraints()

    def ca_not_after(self):
        """End of the CA's validity, ISO 8601; from metadata.json's record of the CA when it is of these very
        bytes (a run that loaded no CA), else parsed. None in check mode before the CA is made."""
        if self.ca is not None:
            return crypto.iso8601(self.ca.not_after)
        if self._ca_file_sha256 is None:
            return None
        recorded = self.metadata.data.get('ca') or {}
        if recorded.get('cert_sha256') == self._ca_file_sha256 and recorded.get('not_after'):
            return recorded['not_after']
        return crypto.iso8601(crypto.not_after(crypto.load_cert(self._ca_cert_data, self.store.cert_path)))

    def plan(self):
        """Decide every certificate's action; raises PkiError before any write when a target is unwritable."""
        if self.metadata is None:
            self.load()
        self.plans = [self._plan_one(request) for request in self.requests]
        self._check_writable()
        self._check_ca_ending()
        return self.plans

    def _check_ca_ending(self):
        """Warn (once) when the CA ends within the renewal margin of the shortest certificate asked for: a leaf
        issued now would be clamped to the CA's end and due at once. Read from metadata.json's record of the CA on
        a run that loaded no CA."""
        ca_end = self.ca.not_after if self.ca is not None else _parse_recorded_time(self.ca_not_after())
        if ca_end - self.now < self.policy.base(min(request.validity for request in self.requests)):
            self._warn_ca_ending()

    def _check_writable(self):
        checked = set()  # a fleet's certs share one or a few directories
        for plan in self.plans:
            if plan.changed and plan.request.directory not in checked:
                checked.add(plan.request.directory)
                reason = files.unwritable_reason(plan.request.directory)
                if reason:
                    raise PkiError('certs entry %s: dir %s cannot be written: %s; choose a writable directory'
                                   % (plan.request.name, plan.request.directory, reason))

    def plan_before_the_ca(self):
        """Check mode only, when the CA is not made yet (pki_ca reported it would make it): every certificate would
        be issued by it. The CA's nameConstraints are not known yet, so only what needs no CA is checked."""
        reason = 'no CA in %s yet: issued once the CA is made' % self.ca_dir
        self.plans = [CertPlan(request, ISSUE, reason, self._current_cert(request)) for request in self.requests]
        self._check_writable()
        self.warnings.append('check mode: no CA in %s yet; fleetpki.mtls.pki_ca reported it would make it there '
                             '(ca_planned), so every certificate is reported as it would be issued by it' % self.ca_dir)
        return self.plans

    def _check_name_constraints(self):
        """Refuse, before any write, a request the CA's nameConstraints do not permit (every client would)."""
        ca_constraints = constraints.CaConstraints(self.ca.cert)
        if not ca_constraints.present:
            return
        for request in self.requests:
            violation = ca_constraints.violation(request.dns, request.ip)
            if violation:
                raise PkiError('%s: %s, so every client would refuse the certificate; remove the name from the '
                               'entry, or issue it from a CA whose %s / %s allow it (a new CA: pki_ca with force, or '
                               'a rollover)' % (request.where, violation, constraints.DNS_OPTION,
                                                constraints.IP_OPTION))

    @staticmethod
    def _current_cert(request):
        """The cert on disk, or None: only for the diff's "before" when a re-issue does not need it."""
        try:
            return crypto.load_cert(files.read_bytes(request.cert_path), request.cert_path)
        except (IOError, OSError, PkiError):
            return None

    def _plan_one(self, request):
        if request.csr is not None:
            return self._plan_from_csr(request)
        if self.force:
            return CertPlan(request, ISSUE, 'force', self._current_cert(request))
        try:
            key_data, key_mode = files.read_bytes_and_mode(request.key_path)
            cert_data, cert_mode = files.read_bytes_and_mode(request.cert_path)
        except (IOError, OSError):
            key_data = cert_data = None
        else:
            plan = self._plan_from_record(request, key_data, cert_data, key_mode, cert_mode)
            if plan is not None:
                return plan
        self._need_ca()  # the first certificate that needs more than its record loads the CA
        return self._full_check(request, key_data, cert_data)

    def _plan_from_record(self, request, key_data, cert_data, key_mode, cert_mode):
        """'up to date' from the record alone, when the files (with the bundle) are those it recorded and it shows
        the cert still wanted; None otherwise. ``key_data``: the key's part of the files digest."""
        try:
            bundle = files.read_bytes(request.bundle_path)
        except (IOError, OSError):
            return None
        entry = self.metadata.entry(request.name)
        renew_at = (entry is not None and entry.get(FILES_DIGEST)
                    and self._recorded_still_valid(request, entry, key_data, cert_data, bundle, key_mode, cert_mode))
        return CertPlan(request, None, 'up to date', recorded=entry, renew_at=renew_at) if renew_at else None

    def _recorded_still_valid(self, request, entry, key_data, cert_data, bundle, key_mode, cert_mode):
        """The moment the cert is due (true) when the files are byte for byte those recorded for this CA and the record alone shows the cert
        still wanted as it is: same request, not revoked, not yet due for renewal. Anything else (or any doubt)
        is left to the full check, which also words the reason."""
        if files_digest(self._ca_file_sha256, key_data, cert_data, bundle) != entry[FILES_DIGEST]:
            return False
        if key_mode != KEY_MODE or cert_mode != PUBLIC_MODE:
            return False
        if (entry.get('key_path'), entry.get('cert_path'), entry.get('bundle_path')) != (
                request.key_path, request.cert_path, request.bundle_path):
            return False
        if entry.get('serial') in self._revoked:
            return False
        # Due, or due within the second (the record keeps whole seconds), is left to the full check; so is a
        # certificate that lives longer than its request now asks.
        try:
            not_before, not_after = _parse_recorded_time(entry['not_before']), _parse_recorded_time(entry['not_after'])
            renew_at = self.policy.renew_at(not_before, not_after, request.name, entry['serial'])
        except (KeyError, TypeError, ValueError, PkiError):
            return False
        if renew_at - self.now <= datetime.timedelta(seconds=1) or _longer_than_asked(request, not_after - not_before):
            return False
        return renew_at if (entry.get('common_name') == request.common_name and entry.get('dns') == request.dns
                            and entry.get('ip') == request.ip and entry.get('usage') == request.usage
                            and entry.get('key_type') == request.key_type) else False

    def _csr_public_key(self, request):
        """The host's public key from its request, checked against the request's names (PkiError before any write
        when it asks for anything else); parsed once per run."""
        if getattr(request, 'csr_public_key', None) is None:
            public_key = host_csr.checked_public_key(request)
            revoked = self._revoked_serial_of_key(request.name, public_key_sha256(public_key))
            if revoked:
                raise PkiError('%s: the csr carries the key of revoked serial %s (its key may be compromised): refused; '
                               'the host must make a new key (the pki play asks it to for a certificate whose key '
                               'was revoked; or rotate.yml -e rotate_key=true --limit <host>)' % (request.where, revoked))
            request.csr_public_key = public_key
        return request.csr_public_key

    def _revoked_serial_of_key(self, name, key_sha256):
        """A revoked serial of ``name`` issued for this key, or None."""
        if not self._revoked:
            return None
        for item in (self.metadata.entry(name) or {}).get('history') or []:
            if item.get('serial') in self._revoked and item.get('public_key_sha256') == key_sha256:
                return item['serial']
        return None

    def _plan_from_csr(self, request):
        """A certificate whose key is its host's: the same checks as _plan_one / _full_check, with the request's
        public key in place of a key file."""
        key_part = _CSR_DIGEST_PREFIX + request.csr
        try:
            cert_data, cert_mode = files.read_bytes_and_mode(request.cert_path)
        except (IOError, OSError):
            cert_data = None
        if cert_data is not None and not self.force and not os.path.lexists(request.stale_key_path):
            # The same request bytes as when the certificate was issued: checked then, against the same names.
            plan = self._plan_from_record(request, key_part, cert_data, KEY_MODE, cert_mode)
            if plan is not None:
                return plan
        try:
            public_key = self._csr_public_key(request)
        except PkiError as exc:
            if not self.skip_refused:
                raise
            return CertPlan(request, None, str(exc), refused=True)
        if self.force:
            return CertPlan(request, ISSUE, 'force', self._current_cert(request))
        self._need_ca()
        if cert_data is None:
            return CertPlan(request, ISSUE, 'missing: %s' % os.path.basename(request.cert_path))
        try:
            cert = crypto.load_cert(cert_data, request.cert_path)
            cert_key = cert.public_key()
        except (PkiError, ValueError, crypto.UnsupportedAlgorithm):
            return CertPlan(request, ISSUE, 'certificate unreadable')
        if crypto.public_key_der(cert_key) != crypto.public_key_der(public_key):
            return CertPlan(request, ISSUE, 'new key from the host', cert)
        return self._check_issued(request, cert, cert_key, key_part, cert_data)

    def _full_check(self, request, key_data, cert_data):
        """Parse and verify the files: signature by the CA, key against cert, request, dates, revocation."""
        missing = [path for path in (request.cert_path, request.key_path) if not os.path.exists(path)]
        if missing:
            return CertPlan(request, ISSUE, 'missing: %s' % ', '.join(os.path.basename(p) for p in missing),
                            self._current_cert(request))
        if key_data is None or cert_data is None:  # there, but not readable as files (a directory, no permission)
            key_data, cert_data = files.read_bytes(request.key_path), files.read_bytes(request.cert_path)
        try:
            cert = crypto.load_cert(cert_data, request.cert_path)
            # cryptography parses the key only when asked: a changed byte there fails here, not in load_cert.
            public_key = cert.public_key()
        except (PkiError, ValueError, crypto.UnsupportedAlgorithm):
            return CertPlan(request, ISSUE, 'certificate unreadable')
        try:
            key = crypto.load_private_key(key_data, request.key_path)
        except PkiError:
            return CertPlan(request, ISSUE, 'key unreadable')
        if crypto.public_key_der(key) != crypto.public_key_der(public_key) or not crypto.key_signs_for(key, public_key):
            return CertPlan(request, ISSUE, 'key does not match certificate', cert)
        return self._check_issued(request, cert, public_key, key_data, cert_data)

    def _check_issued(self, request, cert, public_key, key_data, cert_data):
        """A certificate whose key is known to match: signature by the CA, revocation, request, dates, upkeep;
        ``key_data``: the key's part of the files digest."""
        if not crypto.signed_by(cert, self.ca.cert, self._ca_subject, self._ca_public_key):
            return CertPlan(request, ISSUE, 'not signed by the current CA', cert)
        if self._revoked and crypto.serial_hex(cert) in self._revoked:
            return CertPlan(request, ISSUE, 'revoked', cert)
        changes = self._request_changes(request, cert, public_key)
        if changes:
            return CertPlan(request, ISSUE, 'request changed: %s' % ', '.join(changes), cert)
        expiring = self._expiry_reason(request, cert)
        if expiring:
            return CertPlan(request, ISSUE, expiring, cert)
        plan = self._plan_upkeep(request, cert)
        # The files as the upkeep leaves them (the bundle rewritten if it was not this one).
        digest = files_digest(self._ca_file_sha256, key_data, cert_data, crypto.cert_pem(cert) + self.ca.cert_pem)
        if (self.metadata.entry(request.name) or {}).get(FILES_DIGEST) != digest:
            plan.files_sha256 = digest
        return plan

    @staticmethod
    def _request_changes(request, cert, public_key):
        dns, ips = crypto.sans(cert)
        changes = []
        if crypto.common_name(cert) != request.common_name:
            changes.append('common_name')
        if dns != request.dns:
            changes.append('dns')
        if ips != request.ip:
            changes.append('ip')
        if crypto.usage_of(cert) != request.usage:
            changes.append('usage')
        if crypto.key_type_of(public_key) != request.key_type:
            changes.append('key_type')
        if _longer_than_asked(request, crypto.not_after(cert) - crypto.not_before(cert)):
            changes.append('validity (%s)' % request.validity_text)
        return changes

    def _expiry_reason(self, request, cert):
        cert_end = crypto.not_after(cert)
        left = cert_end - self.now
        lifetime = cert_end - crypto.not_before(cert)
        threshold = self.policy.threshold(lifetime, request.name, crypto.serial_hex(cert))
        if left > threshold:
            return None
        if cert_end >= self.ca.not_after:
            # Already clamped to the CA's end: a new cert could not live longer. Do not churn (plan() warns).
            return None
        if left.total_seconds() <= 0:
            return 'expired on %s' % crypto.iso8601(cert_end)
        if self.policy.uses_days_only():
            return 'expires in %d days (renew_days %d)' % (left.days, self.policy.renew_days)
        return 'due for renewal: %s of %s left (renewed with %s left: %s)' % (
            renewal.duration_text(left), renewal.duration_text(lifetime), renewal.duration_text(threshold),
            self.policy.describe())

    def _plan_upkeep(self, request, cert):
        """A valid cert may still need its bundle rewritten, file modes fixed, or a metadata record; a key file the
        control node must not hold (the host's key, or one left from before it was) removed."""
        fixes, reasons = [], []
        if request.csr is not None and os.path.lexists(request.stale_key_path):
            fixes.append(STALE_KEY)
            reasons.append('the key is its host\'s: %s removed from the control node'
                           % os.path.basename(request.stale_key_path))
        try:
            bundle = files.read_bytes(request.bundle_path)
        except (IOError, OSError):
            bundle = None
        if bundle != crypto.cert_pem(cert) + self.ca.cert_pem:
            fixes.append(BUNDLE)
            reasons.append('bundle missing or out of date')
        if files.read_bytes(request.cert_path) != self._cert_file_data(cert):
            fixes.append(CHAIN)
            reasons.append('the issuing CA\'s certificate after the certificate is missing or out of date'
                           if self._chain() else 'a certificate after the certificate in the file')
        if (request.key_path is not None and files.file_mode(request.key_path) != KEY_MODE) \
                or files.file_mode(request.cert_path) != PUBLIC_MODE:
            fixes.append(MODE)
            reasons.append('file modes (key 0600, cert 0644)')
        if self.metadata.current_serial(request.name) != crypto.serial_hex(cert):
            fixes.append(RECORD)
            reasons.append('not recorded in %s' % METADATA_NAME)
        if not fixes:
            return CertPlan(request, None, 'up to date', cert)
        plan = CertPlan(request, UPDATE, '; '.join(reasons), cert)
        plan.fixes = fixes
        return plan

    def _warn_ca_ending(self):
        if not self._ca_warning_given:
            self._ca_warning_given = True
            margin = ('renew_days (%d)' % self.policy.renew_days if self.policy.uses_days_only()
                      else 'the renewal margin of its certificates (%s)' % self.policy.describe())
            self.warnings.append('the CA %s expires on %s, within %s: leaf certificates are clamped to that date; '
                                 'renew or roll over the CA' % (self.store.cert_path, self.ca_not_after(), margin))

    @property
    def changed(self):
        return any(plan.changed for plan in self.plans)

    # -- applying (writes) ------------------------------------------------------------------------------------

    def run(self, check_mode=False, details=True, ca_planned=False):
        """Plan and, unless in check mode, apply under the CA directory lock.

        ``ca_planned``: pki_ca of the same run reported it would make the CA in ca_dir; only then does check mode
        preview certificates of a CA that is not there (a mistyped ca_dir fails as a real run would).
        """
        if check_mode:
            if ca_planned and self.store.ca_absent():
                self.plan_before_the_ca()
            else:
                self.plan()
            return self.results(details)
        self.preflight()
        with self.store.lock():
            # Plan on what is there once the lock is ours: another run may have issued, revoked or renewed the CA
            # while this one waited.
            self.load()
            self.plan()
            self.apply()
        return self.results(details)

    def apply(self):
        issued_at = crypto.iso8601(self.now)
        touched = set()
        try:
            for plan in self.plans:
                if plan.changed:
                    if plan.request.directory not in touched:
                        files.ensure_dir(plan.request.directory)
                        files.remove_stale_temps(plan.request.directory)
                        touched.add(plan.request.directory)
                    self._apply_one(plan, issued_at)
        finally:
            # Record what was written even when a later write failed (disk full...), so no serial goes unrecorded.
            if self.metadata.dirty:
                self._need_ca()  # its record is saved along (dirty with no cert to change: a killed run's journal)
                # Digests of valid certs that had none (a PKI dir from before digests) or a stale one ride along
                # with this write; alone they never cause one (an up-to-date run writes nothing).
                for plan in self.plans:
                    if not plan.changed and plan.files_sha256:
                        self.metadata.set_files_digest(plan.request.name, plan.files_sha256)
                self.metadata.save(self.ca)
            self.metadata.close_journal()
            for directory in touched:
                files.fsync_dir(directory)

    def _apply_one(self, plan, issued_at):
        request = plan.request
        if plan.action == ISSUE:
            plan.new_cert, item, digest, facts = self._issue(request, plan.reason, issued_at)
            self.metadata.record(request, plan.new_cert, self._ca_fingerprint, item, digest, facts)
            return
        if BUNDLE in plan.fixes:
            files.atomic_write(request.bundle_path, crypto.cert_pem(plan.cert) + self.ca.cert_pem, PUBLIC_MODE)
        if CHAIN in plan.fixes:
            files.atomic_write(request.cert_path, self._cert_file_data(plan.cert), PUBLIC_MODE)
        if MODE in plan.fixes:
            if request.key_path is not None:
                os.chmod(request.key_path, KEY_MODE)
            os.chmod(request.cert_path, PUBLIC_MODE)
        if STALE_KEY in plan.fixes:
            _unlink(request.stale_key_path)
        item = Metadata.history_item(plan.cert, self._ca_fingerprint, 'recorded from disk', issued_at)
        digest = plan.files_sha256 or (self.metadata.entry(request.name) or {}).get(FILES_DIGEST)
        self.metadata.record(request, plan.cert, self._ca_fingerprint, item, digest)

    def _issue(self, request, reason, issued_at):
        wanted_end = self.now + request.validity
        not_after = min(wanted_end, self.ca.not_after)
        if wanted_end > self.ca.not_after:
            self.warnings.append('%s: validity clamped to the CA end %s (%s asked for more)'
                                 % (request.name, crypto.iso8601(self.ca.not_after), request.validity_text))
        # Backdated for clocks a little behind; by a twelfth of a short validity at most (30 s of a 6-minute
        # certificate), or the backdating would be most of the lifetime its renewal fraction is taken of
        # (_longer_than_asked allows for the same).
        not_before = max(self.now - min(store.BACKDATE, request.validity / 12), crypto.not_before(self.ca.cert))
        subject = crypto.build_name(request.common_name)
        if request.csr is not None:
            key = self._csr_public_key(request)
            key_data, key_tmp = _CSR_DIGEST_PREFIX + request.csr, None
        else:
            key = crypto.generate_key(request.key_type)
        cert = build_leaf_cert(request, key, self.ca, not_before, not_after, self._shared_extensions, subject)
        cert_data = self._cert_file_data(cert)
        bundle_data = crypto.cert_pem(cert) + self.ca.cert_pem
        directory = request.directory
        if request.csr is None:
            key_data = crypto.private_key_pem(key)
            key_tmp = files.write_temp(directory, os.path.basename(request.key_path), key_data, KEY_MODE)
        cert_tmp = files.write_temp(directory, os.path.basename(request.cert_path), cert_data, PUBLIC_MODE)
        bundle_tmp = files.write_temp(directory, os.path.basename(request.bundle_path), bundle_data, PUBLIC_MODE)
        not_before_text, not_after_text = self._time_text(not_before), self._time_text(not_after)
        item = Metadata.history_item(cert, self._ca_fingerprint, reason, issued_at, not_after=not_after_text)
        facts = issued_facts(request, cert, item['fingerprint_sha256'], subject, not_before_text, not_after_text)
        if request.csr is not None:
            # A host's key outlives its certificates (renewals keep it): each serial records its key, so a revoked
            # serial's key is never certified again (_csr_public_key).
            item['public_key_sha256'] = facts['public_key_sha256'] = public_key_sha256(key)
        self.metadata.journal(request.name, item)
        # Drop the old cert and bundle first: a kill between the renames leaves "no cert" (re-issued next run),
        # never a new key beside the old cert or the old bundle.
        # A key born on its host: no key file here, and one left from before goes (with the old cert).
        for stale in (request.cert_path, request.bundle_path) + ((request.stale_key_path,) if key_tmp is None else ()):
            _unlink(stale)
        if key_tmp is not None:
            os.rename(key_tmp, request.key_path)
        os.rename(cert_tmp, request.cert_path)
        os.rename(bundle_tmp, request.bundle_path)
        return cert, item, files_digest(self._ca_file_sha256, key_data, cert_data, bundle_data), facts

    def _chain(self):
        """What follows the certificate in its file: the issuing CA's certificate when the CA is not a root (two
        tiers), so that every service and client presents the chain up to the root the others trust; nothing under
        a self-signed root."""
        return b'' if crypto.is_self_signed(self.ca.cert) else self.ca.cert_pem

    def _cert_file_data(self, cert):
        return crypto.cert_pem(cert) + self._chain()

    def _time_text(self, moment):
        text = self._time_texts.get(moment)
        if text is None:
            text = self._time_texts[moment] = crypto.iso8601(moment)
        return text

    def results(self, details=True):
        return [plan.result(self.now, details, self.policy) for plan in self.plans]

    def diff(self):
        before, after = {}, {}
        for plan in self.plans:
            if not plan.changed:
                continue
            name = plan.request.name
            before[name] = _summary(plan.cert)
            after[name] = _summary(plan.new_cert or plan.cert) if plan.action != ISSUE or plan.new_cert else {
                'state': 'to be issued', 'dns': plan.request.dns, 'ip': plan.request.ip, 'usage': plan.request.usage}
        return {'before': before, 'after': after}


def public_key_sha256(key):
    return hashlib.sha256(crypto.public_key_der(key)).hexdigest()


def _unlink(path):
    try:
        os.unlink(path)
    except (IOError, OSError) as exc:
        if exc.errno != errno.ENOENT:
            raise


def _summary(cert):
    if cert is None:
        return {'state': 'absent'}
    facts = cert_facts(cert)
    return dict((k, facts[k]) for k in ('serial', 'not_after', 'dns', 'ip', 'usage', 'key_type'))
