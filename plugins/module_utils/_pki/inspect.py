# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read-only inspection of certificates (backend of the cert_expiry module).

Runs on the control node and on fleet hosts with Debian 12's python3-cryptography 38.0.4.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fnmatch
import os

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto, files
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.renewal import cert_name, renew_at_of

STATUSES = ('ok', 'expiring', 'expired', 'broken')
CERT_GLOB = '*-cert.pem'
KEY_MODE = 0o600


def find_cert_files(paths):
    """Files named in ``paths`` as they are; in directories only ``*-cert.pem`` (bundles, keys, CRLs skipped)."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            for name in sorted(os.listdir(path)):
                full = os.path.join(path, name)
                if fnmatch.fnmatch(name, CERT_GLOB) and os.path.isfile(full):
                    found.append(full)
        else:
            found.append(path)
    seen = set()
    return [path for path in found if not (path in seen or seen.add(path))]


def key_path_for(cert_path):
    """The key that belongs beside a cert: name-cert.pem -> name-key.pem, name.crt -> name.key."""
    directory, name = os.path.split(cert_path)
    if name.endswith('-cert.pem'):
        return os.path.join(directory, name[:-len('-cert.pem')] + '-key.pem')
    stem = os.path.splitext(name)[0]
    for suffix in ('.key', '-key.pem', '.key.pem'):
        candidate = os.path.join(directory, stem + suffix)
        if os.path.exists(candidate):
            return candidate
    return None


def load_ca_bundle(ca_path):
    if not os.path.isfile(ca_path):
        raise PkiError('ca_path %s does not exist or is not a file; point it at the CA certificate or trust bundle'
                       % ca_path)
    return crypto.load_cert_bundle(files.read_bytes(ca_path), ca_path)


def inspect_crls(paths, cas=None, now=None):
    """Every CRL in the files ``paths`` (a CRL bundle holds one per trusted CA): its issuer and nextUpdate, and a
    status: ok, expiring (past half its validity, when pki_crl re-signs it), expired (a service that checks CRLs
    then refuses every client of that CA), broken (does not parse, or no CA of ``cas`` signed it)."""
    now = now or crypto.utcnow()
    found = []
    for path in paths:
        base = {'path': path, 'status': 'broken', 'problems': [], 'issuer': None, 'crl_number': None,
                'last_update': None, 'next_update': None, 'seconds_remaining': None, 'days_remaining': None}
        try:
            crls = crypto.load_crl_bundle(files.read_bytes(path), path)
        except (IOError, OSError) as exc:
            found.append(dict(base, problems=['cannot read: %s' % exc.strerror]))
            continue
        except PkiError as exc:
            found.append(dict(base, problems=[str(exc)]))
            continue
        for crl in crls:
            entry = dict(base, problems=[], issuer=crl.issuer.rfc4514_string())
            last, end = crypto.crl_time(crl, 'last_update'), crypto.crl_time(crl, 'next_update')
            entry['last_update'] = crypto.iso8601(last)
            try:
                entry['crl_number'] = crl.extensions.get_extension_for_class(crypto.x509.CRLNumber).value.crl_number
            except crypto.x509.ExtensionNotFound:
                pass
            if cas is not None and not any(crl.is_signature_valid(ca.public_key()) for ca in cas
                                           if ca.subject == crl.issuer):
                entry['problems'].append('not signed by any CA of the trust bundle')
            if end is None:
                entry['problems'].append('no nextUpdate')
            else:
                seconds = int((end - now).total_seconds())
                entry.update(next_update=crypto.iso8601(end), seconds_remaining=seconds,
                             days_remaining=int(seconds // 86400))
            if entry['problems']:
                entry['status'] = 'broken'
            elif entry['seconds_remaining'] <= 0:
                entry['status'] = 'expired'
            elif now >= last + (end - last) / 2:
                entry['status'] = 'expiring'
            else:
                entry['status'] = 'ok'
            found.append(entry)
    return found


class CertInspector:
    def __init__(self, paths, ca_path=None, warn_days=30, now=None, crl_paths=None, policy=None,
                 crl_issuer_paths=None, extra_ca_paths=None):
        """``policy``: pki_leaf's renewal.RenewalPolicy, for each certificate's renew_at (None: not worked out)."""
        if not paths and not crl_paths:
            raise PkiError('paths is empty: list certificate files or directories to inspect')
        if warn_days is None or warn_days < 0:
            raise PkiError('warn_days must be 0 or more, not %r' % (warn_days,))
        self.paths = paths
        self.ca_path = ca_path
        self.warn_days = warn_days
        self.now = now or crypto.utcnow()
        self.cas = load_ca_bundle(ca_path) if ca_path else None
        # More anchors this host trusts beside the bundle (an API host's enrollment CA, for its validation routes);
        # a file not there yet is skipped.
        if self.cas is not None:
            for path in extra_ca_paths or []:
                if os.path.isfile(path):
                    self.cas = self.cas + load_ca_bundle(path)
        # Issuing CAs found after a certificate in its file (two tiers) and signed by a CA of the bundle: they
        # complete that certificate's chain, and sign CRLs of their own.
        self.intermediates = []
        self.crl_paths = crl_paths or []
        self.policy = policy
        for path in crl_issuer_paths or []:
            self._add_crl_issuers(path)

    def inspect(self):
        certs = [self.inspect_one(path) for path in find_cert_files(self.paths)]
        counts = dict((status, 0) for status in STATUSES)
        for entry in certs:
            counts[entry['status']] += 1
        crls = inspect_crls(self.crl_paths, None if self.cas is None else self.cas + self.intermediates, self.now)
        crl_counts = dict((status, 0) for status in STATUSES)
        for entry in crls:
            crl_counts[entry['status']] += 1
        return {'certs': certs, 'counts': counts, 'total': len(certs), 'crls': crls, 'crl_counts': crl_counts}

    def inspect_one(self, path):
        entry = {
            'path': path, 'status': 'broken', 'problems': [], 'subject': None, 'issuer': None, 'serial': None,
            'dns': [], 'ip': [], 'not_before': None, 'not_after': None, 'days_remaining': None,
            'seconds_remaining': None, 'fingerprint_sha256': None, 'chains_to_ca': None, 'key_path': None,
            'key_matches': None, 'key_mode': None, 'key_mode_ok': None, 'renew_at': None,
        }
        try:
            data = files.read_bytes(path)
            cert = crypto.load_cert(data, path)
        except (IOError, OSError) as exc:
            entry['problems'].append('cannot read: %s' % exc.strerror)
            return entry
        except PkiError:
            entry['problems'].append('not a valid PEM certificate')
            return entry
        dns, ips = crypto.sans(cert)
        end = crypto.not_after(cert)
        seconds = int((end - self.now).total_seconds())
        entry.update({
            'subject': crypto.subject_string(cert), 'issuer': cert.issuer.rfc4514_string(),
            'serial': crypto.serial_hex(cert), 'dns': dns, 'ip': ips,
            'not_before': crypto.iso8601(crypto.not_before(cert)), 'not_after': crypto.iso8601(end),
            'days_remaining': crypto.days_remaining(cert, self.now), 'seconds_remaining': seconds,
            'fingerprint_sha256': crypto.fingerprint_sha256(cert),
        })
        if self.policy is not None:
            renew_at = renew_at_of(self.policy, crypto.not_before(cert), end, cert_name(path), entry['serial'],
                                   [crypto.not_after(ca) for ca in self.cas or ()])
            entry['renew_at'] = crypto.iso8601(renew_at) if renew_at else None
        problems = entry['problems']
        if self.cas is not None:
            entry['chains_to_ca'] = any(crypto.signed_by(cert, ca) for ca in self.cas) or \
                self._chains_through_its_file(cert, data, path)
            if not entry['chains_to_ca']:
                problems.append('not signed by any CA in %s' % self.ca_path)
        self._check_key(cert, path, entry)
        if crypto.not_before(cert) > self.now:
            problems.append('not valid before %s' % entry['not_before'])
        if problems:
            entry['status'] = 'broken'
        elif seconds <= 0:
            entry['status'] = 'expired'
        elif seconds < self.warn_days * 86400:
            entry['status'] = 'expiring'
        else:
            entry['status'] = 'ok'
        if entry['key_mode_ok'] is False:
            # Reported, but a readable key is a hardening finding, not a broken cert.
            entry['problems'].append('key mode %s, expected 0600' % entry['key_mode'])
        return entry

    def _add_crl_issuers(self, path):
        """The issuing CAs of a bundle (pki role: crl-issuers.pem), to check CRLs that no certificate file here
        leads to (another site's). Only a CA that a CA of the trust bundle signed counts; it is never trusted."""
        if self.cas is None:
            raise PkiError('crl_issuer_paths needs ca_path: an issuing CA counts only when a CA there signed it')
        if not os.path.exists(path):
            return  # a host not rolled since the file came in (site.yml ships it): its CRLs are checked as before
        try:
            certs = crypto.load_cert_bundle(files.read_bytes(path), path)
        except (IOError, OSError) as exc:
            raise PkiError('crl_issuer_paths: cannot read %s: %s' % (path, exc.strerror))
        for issuing in certs:
            if crypto.is_ca(issuing) and not crypto.is_self_signed(issuing) and \
                    any(crypto.signed_by(issuing, ca) for ca in self.cas):
                self._remember_intermediate(issuing)

    def _remember_intermediate(self, issuing):
        if not any(known.fingerprint(crypto.hashes.SHA256()) == issuing.fingerprint(crypto.hashes.SHA256())
                   for known in self.intermediates):
            self.intermediates.append(issuing)

    def _chains_through_its_file(self, cert, data, path):
        """Two tiers: the certificate is followed in its file by its issuing CA's, which a CA of the bundle
        signed."""
        try:
            following = crypto.load_cert_bundle(data, path)[1:]
        except PkiError:
            return False
        for issuing in following:
            if crypto.is_ca(issuing) and crypto.signed_by(cert, issuing) and \
                    any(crypto.signed_by(issuing, ca) for ca in self.cas) and \
                    crypto.not_before(issuing) <= self.now < crypto.not_after(issuing):
                self._remember_intermediate(issuing)
                return True
        return False

    @staticmethod
    def _check_key(cert, path, entry):
        key_path = key_path_for(path)
        if not key_path or not os.path.exists(key_path):
            return
        entry['key_path'] = key_path
        mode = files.file_mode(key_path)
        entry['key_mode'] = '%04o' % mode
        entry['key_mode_ok'] = mode == KEY_MODE
        try:
            data = files.read_bytes(key_path)
            if b'ENCRYPTED' in data:
                return  # e.g. a CA key made with a passphrase: not comparable without it, so key_matches stays null
            key = crypto.load_private_key(data, key_path)
        except (IOError, OSError, PkiError):
            entry['key_matches'] = False
            entry['problems'].append('key %s unreadable' % key_path)
            return
        entry['key_matches'] = crypto.key_matches_cert(key, cert)
        if not entry['key_matches']:
            entry['problems'].append('key %s does not match the certificate' % key_path)
