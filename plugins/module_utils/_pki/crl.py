# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Revocation and the CA's CRL (backend of the pki_crl module).

In the CA directory: ``revoked.json`` records every revocation (serial, name, time, reason) and the CRL number;
``crl.pem`` is the CRL signed by the CA. The CRL is re-signed only when it is missing or unreadable, not signed by
this CA, out of step with revoked.json, at half its validity or later, or when forced.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import os

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto, store
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.ca import load_ca
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.crypto import normalise_serial
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError

REASONS = ('unspecified', 'key_compromise', 'ca_compromise', 'affiliation_changed', 'superseded',
           'cessation_of_operation', 'certificate_hold', 'privilege_withdrawn', 'aa_compromise')


_crl_time = crypto.crl_time


class CrlManager:
    """Plans and applies revocations and the CRL. ``plan()`` decides everything; ``apply()`` only writes."""

    def __init__(self, ca_dir, passphrase=None, revoke_serials=None, revoke_names=None, reason='unspecified',
                 crl_days=30, force=False, now=None, revoke_ca_dirs=None):
        self.ca_dir = ca_dir
        self.passphrase = passphrase
        self.revoke_serials = list(revoke_serials or [])
        self.revoke_names = list(revoke_names or [])
        # Issuing CAs this CA (a root) signed: a compromised site's CA, every leaf below it refused at once.
        self.revoke_ca_dirs = list(revoke_ca_dirs or [])
        self.reason = reason
        self.crl_days = crl_days
        self.force = force
        self.now = now or crypto.utcnow()
        self.store = store.CaStore(ca_dir)
        self.crl_path = self.store.crl_path
        self.ca = None
        self.record = None
        self.new_entries = []
        self.current_crl = None
        self.resign_reason = None
        self.written_crl = None

    def validate(self):
        if self.reason not in REASONS:
            raise PkiError('reason must be one of %s, not %r' % (', '.join(REASONS), self.reason))
        if self.crl_days is None or self.crl_days < 2:
            raise PkiError('crl_days must be at least 2 (the CRL is re-signed at half of it), not %r'
                           % (self.crl_days,))

    def plan(self):
        """Decide what to revoke and whether to re-sign, from the files as they are now.

        apply() calls it again under the CA directory's lock, so it starts from scratch each time.
        """
        self.validate()
        self.new_entries = []
        self.current_crl = None
        self.ca = load_ca(self.ca_dir, self.passphrase, need_key=False, dir_option='ca_dir')
        self.record = self.store.read_revoked()
        known = set(entry['serial'] for entry in self.record['revoked'])
        for serial, name in self._targets():
            if serial not in known:
                known.add(serial)
                self.new_entries.append({'serial': serial, 'name': name, 'reason': self.reason,
                                         'revoked_at': crypto.iso8601(self.now)})
        self.resign_reason = self._resign_reason(known)
        return self.resign_reason

    def plan_before_the_ca(self):
        """Check mode only, when the CA is not made yet (pki_ca reported it would make it): the CRL would then be
        signed. Nothing can be revoked from a CA that issued nothing, so revocations still fail."""
        self.validate()
        if self.revoke_serials or self.revoke_names or self.revoke_ca_dirs:
            raise PkiError('no CA in %s yet, so nothing it issued can be revoked (revoke_serials / revoke_names / '
                           'revoke_ca_dirs); '
                           'point ca_dir at the CA that issued the certificates' % self.ca_dir)
        self.record = {'crl_number': 0, 'revoked': []}
        self.new_entries = []
        self.current_crl = None
        self.resign_reason = 'no CA in %s yet: signed once the CA is made' % self.ca_dir
        return self.resign_reason

    def _targets(self):
        """(serial, name) of every serial and name to revoke, each checked against metadata.json."""
        targets = self._issued_ca_targets()
        if not (self.revoke_serials or self.revoke_names):
            return targets
        metadata = self.store.metadata()
        by_serial = metadata.serial_owners()
        for name in self.revoke_names:
            serials = metadata.unexpired_serials(name, self.now)
            if not serials:
                raise PkiError('revoke_names: no certificate named %r in %s; the names there are %s'
                               % (name, self.store.metadata_path, ', '.join(metadata.names()) or 'none'))
            targets.extend((serial, name) for serial in serials)
        for value in self.revoke_serials:
            serial = normalise_serial(value)
            if serial not in by_serial:
                raise PkiError('revoke_serials: serial %s was not issued by the CA in %s (it is not in %s); check the '
                               'serial, or the CA directory during a rollover'
                               % (serial, self.ca_dir, store.METADATA_NAME))
            targets.append((serial, by_serial[serial]))
        return targets

    def _issued_ca_targets(self):
        """(serial, name) of every certificate, not yet expired, of each issuing CA in revoke_ca_dirs: its current
        one and those its renewals kept under retired/ (the same key, each valid until it ends). Each must have been
        signed by this CA; a root or another CA's issuing CA is refused, so a wrong directory revokes nothing."""
        targets = []
        for directory in self.revoke_ca_dirs:
            issued = load_ca(directory, need_key=False, dir_option='revoke_ca_dirs')
            if os.path.realpath(directory) == os.path.realpath(self.ca_dir) or crypto.is_self_signed(issued.cert) \
                    or not crypto.signed_by(issued.cert, self.ca.cert):
                raise PkiError('revoke_ca_dirs: the CA in %s (%s, issued by %s) was not issued by the CA in ca_dir %s '
                               '(%s); give the directory of an issuing CA that this root signed'
                               % (directory, issued.cert.subject.rfc4514_string(), issued.cert.issuer.rfc4514_string(),
                                  self.ca_dir, self.ca.cert.subject.rfc4514_string()))
            name = 'ca:%s' % crypto.common_name(issued.cert)
            retired = [crypto.load_cert(data, path) for path, data in store.CaStore(directory).read_retired_certs()]
            certs = [issued.cert] + [cert for cert in retired if crypto.signed_by(cert, self.ca.cert)]
            targets.extend((crypto.serial_hex(cert), name) for cert in certs if crypto.not_after(cert) > self.now)
        return targets

    def _resign_reason(self, wanted_serials):
        if self.force:
            return 'force'
        data = self.store.read_crl()
        if data is None:
            return 'missing'
        try:
            crl = crypto.x509.load_pem_x509_crl(data)
        except ValueError:
            return 'unreadable'
        self.current_crl = crl
        if crl.issuer != self.ca.cert.subject or not crl.is_signature_valid(self.ca.cert.public_key()):
            return 'not signed by the current CA'
        if set('%X' % item.serial_number for item in crl) != wanted_serials:
            return 'revocations changed'
        this_update, next_update = _crl_time(crl, 'last_update'), _crl_time(crl, 'next_update')
        if next_update is None or self.now >= this_update + (next_update - this_update) / 2:
            return 'half its validity passed'
        return None

    @property
    def changed(self):
        return self.resign_reason is not None

    def apply(self):
        """Re-plan under the CA directory's lock, then write: a run that waited for the lock adds its revocations
        to those another run recorded meanwhile, never over them."""
        if not self.changed:
            return self.result()
        with self.store.lock():
            self.plan()
            if not self.changed:
                return self.result()
            ca = load_ca(self.ca_dir, self.passphrase, passphrase_option='ca_passphrase', dir_option='ca_dir')
            record = {'crl_number': int(self.record.get('crl_number', 0)) + 1,
                      'revoked': self.record['revoked'] + self.new_entries}
            crl = self._build(ca, record)
            self.store.write_revocations(record, crl.public_bytes(crypto.serialization.Encoding.PEM))
        self.record = record
        self.written_crl = crl
        return self.result()

    def _build(self, ca, record):
        x509 = crypto.x509
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.cert.subject)
            .last_update(self.now - store.BACKDATE)
            .next_update(self.now + datetime.timedelta(days=self.crl_days))
            .add_extension(x509.CRLNumber(record['crl_number']), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier(ca.key_identifier, None, None), critical=False)
        )
        for entry in record['revoked']:
            revoked = (x509.RevokedCertificateBuilder()
                       .serial_number(int(entry['serial'], 16))
                       .revocation_date(crypto.parse_iso8601(entry['revoked_at'])))
            if entry.get('reason', 'unspecified') != 'unspecified':
                revoked = revoked.add_extension(x509.CRLReason(getattr(x509.ReasonFlags, entry['reason'])),
                                                critical=False)
            builder = builder.add_revoked_certificate(revoked.build())
        return crypto.sign(builder, ca.key)

    def result(self):
        written = self.written_crl is not None  # (a CRL with no entries is falsy: it has a length)
        crl = self.written_crl if written else self.current_crl
        revoked = list(self.record['revoked']) + ([] if written else self.new_entries)
        return {
            'changed': self.changed,
            'crl_path': self.crl_path,
            'revoked': revoked,
            'revoked_now': [entry['serial'] for entry in self.new_entries],
            'resign_reason': self.resign_reason,
            'crl_number': (self.record.get('crl_number') if written or not self.changed
                           else int(self.record.get('crl_number', 0)) + 1),
            'this_update': crypto.iso8601(_crl_time(crl, 'last_update')) if crl is not None else None,
            'next_update': crypto.iso8601(_crl_time(crl, 'next_update')) if crl is not None else None,
        }

    def diff(self):
        """Before and after, computed by plan() (call it before apply())."""
        before = sorted(entry['serial'] for entry in self.record['revoked'])
        after = sorted(before + [entry['serial'] for entry in self.new_entries])
        return {'before': {'revoked': before}, 'after': {'revoked': after, 'resign_reason': self.resign_reason}}
