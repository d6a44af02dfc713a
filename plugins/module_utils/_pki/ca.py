# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The internal root CA: create, load, validate (backend of the pki_ca module)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import os

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import constraints, crypto, hsm, store, validate
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.store import CA_CERT_NAME, CA_KEY_NAME

SUBJECT_FIELDS = ('country', 'state_or_province', 'locality', 'organization', 'organizational_unit')


def ca_paths(directory):
    ca_store = store.CaStore(directory)
    return ca_store.key_path, ca_store.cert_path


class LoadedCa:
    """A CA read from its directory: certificate, optional private key, and facts about both."""

    def __init__(self, directory, cert, key=None, encrypted=False, cert_pem=None, token=None):
        self.directory = directory
        self.token = token  # {module, token_label, key_label} when the key lives in a PKCS#11 token
        self.key_path, self.cert_path = ca_paths(directory)
        self.cert = cert
        self.key = key
        self.encrypted = encrypted
        self.cert_pem = cert_pem if cert_pem is not None else crypto.cert_pem(cert)
        self.not_after = crypto.not_after(cert)
        self.key_identifier = crypto.subject_key_identifier(cert)

    def info(self, now=None):
        basic = crypto.extension_value(self.cert, crypto.x509.BasicConstraints)
        return {
            'dir': self.directory,
            'key_path': self.key_path,
            'cert_path': self.cert_path,
            'subject': crypto.subject_string(self.cert),
            'common_name': crypto.common_name(self.cert),
            'serial': crypto.serial_hex(self.cert),
            'fingerprint_sha256': crypto.fingerprint_sha256(self.cert),
            'not_before': crypto.iso8601(crypto.not_before(self.cert)),
            'not_after': crypto.iso8601(self.not_after),
            'days_remaining': crypto.days_remaining(self.cert, now),
            'key_type': crypto.key_type_of(self.cert.public_key()),
            'encrypted': self.encrypted,
            'path_length': basic.path_length if basic is not None else None,
            'name_constraints': constraints.summary(self.cert),
            'self_signed': crypto.is_self_signed(self.cert),
            'issuer': self.cert.issuer.rfc4514_string(),
            'pkcs11': dict(self.token) if self.token else None,
        }

    def is_expired(self, now=None):
        return self.not_after <= (now or crypto.utcnow())


def load_ca(directory, passphrase=None, need_key=True, passphrase_option='ca_passphrase', dir_option='ca_dir'):
    """Load and validate the CA in ``directory``; every failure is a PkiError naming the fix."""
    ca_store = store.CaStore(directory)
    key_path, cert_path = ca_store.key_path, ca_store.cert_path
    cert_data = ca_store.read_ca_cert()
    if cert_data is None:
        raise PkiError('no CA in %s (%s is missing): create it first with fleetpki.mtls.pki_ca, or point %s '
                       'at the directory that holds %s and %s' % (directory, CA_CERT_NAME, dir_option,
                                                                  CA_KEY_NAME, CA_CERT_NAME))
    cert = crypto.load_cert(cert_data, cert_path)
    if not crypto.is_ca(cert):
        raise PkiError('%s is not a CA certificate (BasicConstraints CA:TRUE is missing); point %s at a CA '
                       'directory' % (cert_path, dir_option))
    key = None
    encrypted = False
    token = ca_store.read_ca_key_ref()
    if need_key and token is not None:
        # The key in a PKCS#11 token: the CA's secret (ca_passphrase) is the token's user PIN.
        if not passphrase:
            raise PkiError('the CA key of %s is in PKCS#11 token %r (key %r): give the token\'s user PIN in %s'
                           % (directory, token['token_label'], token['key_label'], passphrase_option))
        key = hsm.open_key(hsm.TokenSpec(token['module'], token['token_label'], token['key_label']), passphrase,
                           'CA %s' % directory, pin_option=passphrase_option)
        if not crypto.key_matches_cert(key, cert):
            raise PkiError('the key %r of PKCS#11 token %r does not match %s (another key under that label?); point '
                           '%s at the token key of this CA'
                           % (token['key_label'], token['token_label'], cert_path, store.CA_KEY_REF_NAME))
    elif need_key:
        key_data = ca_store.read_ca_key()
        if key_data is None:
            raise PkiError('%s is missing beside %s: restore the CA key from a backup (a new key would be a new '
                           'CA)' % (key_path, cert_path))
        encrypted = b'ENCRYPTED' in key_data
        key = crypto.load_private_key(key_data, key_path, passphrase, passphrase_option)
        if not crypto.key_matches_cert(key, cert):
            raise PkiError('%s does not match %s (the key belongs to another certificate); restore the matching '
                           'pair from a backup' % (key_path, cert_path))
    return LoadedCa(directory, cert, key, encrypted, cert_pem=cert_data, token=token)


def check_ca_usable(ca, now=None):
    """Refuse to sign with an expired CA."""
    if ca.is_expired(now):
        raise PkiError('the CA certificate %s expired on %s; renew the CA (pki_ca with force: true makes a new '
                       'one) before issuing certificates' % (ca.cert_path, crypto.iso8601(ca.not_after)))


# pki_ca's usage: the ExtendedKeyUsage a CA certificate carries. A verifier that checks a purpose (every TLS client
# and server with OpenSSL does) holds every certificate below a CA to its EKU: a chain through a client-only CA fails
# a server's purpose check, so it limits what the CA can sign.
CA_USAGES = {
    'server': ('SERVER_AUTH',),
    'client': ('CLIENT_AUTH',),
    'both': ('SERVER_AUTH', 'CLIENT_AUTH'),
}


def usage_extension(usage):
    """The ExtendedKeyUsage value for pki_ca's usage, or None for a CA unlimited by usage."""
    if not usage:
        return None
    return crypto.x509.ExtendedKeyUsage([getattr(crypto.ExtendedKeyUsageOID, name) for name in CA_USAGES[usage]])


def build_ca_cert(key, subject, valid_days, path_length, now, name_constraints=None, issuer=None,
                  extended_key_usage=None):
    """A CA certificate for ``key``: self-signed, or issued by ``issuer`` (a LoadedCa with its key: an issuing CA
    under a root), never beyond the issuer's own end."""
    ski = crypto.x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    not_after = now + datetime.timedelta(days=valid_days)
    if issuer is not None:
        not_after = min(not_after, issuer.not_after)
        authority = crypto.x509.AuthorityKeyIdentifier(issuer.key_identifier, None, None)
    else:
        authority = crypto.x509.AuthorityKeyIdentifier(ski.digest, None, None)
    builder = (
        crypto.x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(crypto.random_serial())
        .not_valid_before(now - store.BACKDATE)
        .not_valid_after(not_after)
        .add_extension(crypto.x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(crypto.x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
        .add_extension(ski, critical=False)
        .add_extension(authority, critical=False)
    )
    if name_constraints is not None:
        # Critical, as RFC 5280 requires: a client that does not understand it must not trust the CA unbounded.
        builder = builder.add_extension(name_constraints, critical=True)
    if extended_key_usage is not None:
        builder = builder.add_extension(extended_key_usage, critical=False)
    return crypto.sign(builder, issuer.key if issuer is not None else key)


class CaManager:
    """Plans and applies the pki_ca state. ``plan()`` decides everything; ``apply()`` only writes."""

    def __init__(self, directory, common_name='Internal Root CA', subject_fields=None, key_type='ec-p256',
                 valid_days=3650, passphrase=None, force=False, path_length=None, now=None, renew_days=0,
                 name_constraints_permitted_dns=None, name_constraints_permitted_ip=None, encrypt_existing_key=False,
                 pkcs11=None, issuer_dir=None, issuer_passphrase=None, replace_revoked=False,
                 name_constraints_excluded_ip=None, usage=None):
        self.directory = directory
        # The key in a PKCS#11 token ({module, token_label, key_label}; the PIN is ``passphrase``), or a file.
        self.token = hsm.TokenSpec(pkcs11.get('module'), pkcs11.get('token_label'), pkcs11.get('key_label')) \
            if pkcs11 else None
        # An issuing CA: signed by the CA in issuer_dir (a root), not by itself.
        self.issuer_dir = issuer_dir
        self.issuer_passphrase = issuer_passphrase
        # An issuing CA its root revoked (a compromised site) is replaced by a new one, with a new key, instead of
        # refused: the root's revocation was the operator's decision.
        self.replace_revoked = replace_revoked
        self.issuer = None
        self.common_name = common_name
        self.subject_fields = dict((k, v) for k, v in (subject_fields or {}).items() if v)
        self.key_type = key_type
        self.valid_days = valid_days
        self.passphrase = passphrase
        self.force = force
        self.encrypt_existing_key = encrypt_existing_key
        self.encrypt_key = False  # plan(): the existing unencrypted key is to be encrypted with the passphrase
        # An issuing CA signs leaves only (pathLen 0) unless told otherwise.
        self.path_length = 0 if path_length is None and issuer_dir else path_length
        self.renew_days = renew_days or 0
        self.name_constraints_permitted_dns = list(name_constraints_permitted_dns or [])
        self.name_constraints_permitted_ip = list(name_constraints_permitted_ip or [])
        self.permitted_dns, self.permitted_ip = [], []
        # Address ranges the CA may never vouch for (0.0.0.0/0 and ::/0: no address at all), and the EKU that
        # limits it to client or server certificates (CA_USAGES): the enrollment CA on an API host has both.
        self.name_constraints_excluded_ip = list(name_constraints_excluded_ip or [])
        self.excluded_ip = []
        self.usage = usage
        self.now = now or crypto.utcnow()
        self.previous_cert_path = None
        self.store = store.CaStore(directory)
        self.key_path, self.cert_path = self.store.key_path, self.store.cert_path
        self.existing = None
        self.replaced = None
        self.action = None
        self.warnings = []

    def validate(self):
        crypto.check_key_type(self.key_type, 'key_type')
        validate.check_valid_days('CA %s' % self.directory, self.valid_days, validate.CA_VALID_DAYS)
        if not self.common_name:
            raise PkiError('common_name must not be empty; name the CA, for example "Acme Internal Root CA"')
        validate.check_subject_value('CA %s' % self.directory, 'common_name', self.common_name)
        for field in SUBJECT_FIELDS:
            if self.subject_fields.get(field):
                validate.check_subject_value('CA %s' % self.directory, field, self.subject_fields[field])
        if self.renew_days < 0:
            raise PkiError('renew_days must be 0 (never) or more, not %r' % (self.renew_days,))
        if self.path_length is not None and self.path_length < 0:
            raise PkiError('path_length must be 0 or more (or omitted for no limit), not %r' % (self.path_length,))
        crypto.build_name(self.common_name, self.subject_fields)  # raises on a bad country code
        self.permitted_dns, self.permitted_ip = constraints.parse_permitted(
            'CA %s' % self.directory, self.name_constraints_permitted_dns, self.name_constraints_permitted_ip)
        dummy, self.excluded_ip = constraints.parse_permitted(
            'CA %s' % self.directory, [], self.name_constraints_excluded_ip, ip_option='name_constraints_excluded_ip')
        if self.usage is not None and self.usage not in CA_USAGES:
            raise PkiError('usage %r: one of %s, or omitted for a CA unlimited by usage'
                           % (self.usage, ', '.join(sorted(CA_USAGES))))
        if self.token is not None:
            self.token.check('CA %s' % self.directory, self.passphrase)
            if self.key_type not in hsm.TOKEN_KEY_TYPES:
                raise PkiError('key_type %s cannot be made in a PKCS#11 token; use one of %s'
                               % (self.key_type, ', '.join(hsm.TOKEN_KEY_TYPES)))
        if self.issuer_dir is not None and (os.path.realpath(self.issuer_dir) == os.path.realpath(self.directory)):
            raise PkiError('issuer_dir %s is ca_dir itself; an issuing CA lives in a directory of its own, beside '
                           'its root\'s' % self.issuer_dir)
        if self.issuer_dir is not None and self.path_length != 0:
            raise PkiError('path_length %s: an issuing CA under issuer_dir signs leaves only (path length 0); omit '
                           'path_length' % self.path_length)
        if self.issuer_dir is not None and not (self.permitted_dns or self.permitted_ip):
            raise PkiError('an issuing CA under issuer_dir needs the names of its site: set '
                           'name_constraints_permitted_dns and/or name_constraints_permitted_ip (its hosts\' DNS '
                           'suffixes and address ranges); without them it could vouch for any name')

    def plan(self):
        """Decide the action: create, replace, fix_mode, encrypt_key, renew, or None (nothing to do).

        apply() calls it again under the directory's lock, so it starts from scratch each time.
        """
        self.validate()
        self.existing = self.replaced = self.action = None
        self.encrypt_key = False
        self.warnings = []
        key_exists, cert_exists = self.store.ca_files_present()
        if key_exists or cert_exists:
            if self.force:
                self.action = 'replace'
                self._load_replaced_for_diff()
            elif not (key_exists and cert_exists):
                present, absent = (self.key_path, self.cert_path) if key_exists else (self.cert_path, self.key_path)
                raise PkiError('%s exists but %s is missing (an interrupted copy?); restore the missing file, or '
                               'set force: true to replace it with a new CA' % (present, absent))
            else:
                self.existing = self._load_existing()
                if self.existing.is_expired(self.now) and not self.renew_days:
                    raise PkiError('the CA certificate %s expired on %s; its key is sound: renew it with the same key '
                                   '(renew_days, playbooks/ca_renew.yml), or set force: true to make a new CA (every '
                                   'leaf must then be re-issued)'
                                   % (self.cert_path, crypto.iso8601(self.existing.not_after)))
                if self.existing.is_expired(self.now):
                    # A fleet back from a long shutdown: the same key and subject make leaves signed by it validate
                    # again once hosts have the new CA certificate.
                    self.warnings.append('the CA certificate %s expired on %s; it is renewed with the same key'
                                         % (self.cert_path, crypto.iso8601(self.existing.not_after)))
                self._warn_if_request_differs()
                self.action = None if self.store.key_mode_ok() else 'fix_mode'
                if self.encrypt_key:
                    self.action = 'encrypt_key'  # written at mode 0600, so it fixes the mode too
                if self.existing.not_after - self.now < datetime.timedelta(days=self.renew_days):
                    self.action = 'renew'
        else:
            self.action = 'create'
        if (self.action in ('create', 'replace') and self.token is None) or self.encrypt_key:
            validate.check_new_key_passphrase('ca_passphrase', self.passphrase)
        elif self.existing is not None and self.existing.encrypted and validate.passphrase_too_short(self.passphrase):
            self.warnings.append('the CA key %s is encrypted with a passphrase shorter than %d characters; its PBKDF2 '
                                 'wrapping (2048 rounds) is cheap to guess: re-encrypt the key with a passphrase of at least 16 '
                                 'characters (openssl pkcs8 -topk8 -v2 aes-256-cbc -iter 600000), or roll over to a new '
                                 'CA with one (playbooks/ca_rollover.yml)'
                                 % (self.key_path, validate.MIN_PASSPHRASE_LENGTH))
        if self.action in ('create', 'replace', 'renew') or self.issuer_dir is not None:
            self._load_issuer()
        if self.action in ('create', 'replace') and self.token is not None:
            # A key pair already in the token under the label is checked before anything is written.
            existing_key = hsm.open_key(self.token, self.passphrase, 'CA %s' % self.directory, missing_ok=True)
            if existing_key is not None:
                self._refuse_a_key_in_use(existing_key)
        if self.action in ('create', 'replace', 'renew', 'encrypt_key'):
            reason = self.store.unwritable_reason()
            if reason:
                raise PkiError('ca_dir %s cannot hold the CA: %s; choose a writable directory'
                               % (self.directory, reason))
        return self.action

    def _load_issuer(self):
        """The CA that signs this one: the root in issuer_dir for an issuing CA (its key: a file or a token), or
        none for a root. An issuing CA already there is checked against its root's certificate on every run; the
        root's key (its passphrase or its token's PIN) is opened only to sign: create, replace, renew. An issuing CA
        is renewed by the root that issued it."""
        self.issuer = None
        self_signed = self.existing is not None and crypto.is_self_signed(self.existing.cert)
        issued = self.existing is not None and self.action != 'replace' and not self_signed
        if self.issuer_dir is None:
            if issued and self.action == 'renew':
                raise PkiError('the CA in %s is issued by %s: give its root\'s directory in issuer_dir to renew it'
                               % (self.directory, self.existing.cert.issuer.rfc4514_string()))
            return
        if self_signed and self.action != 'replace':
            raise PkiError('the CA in %s is a self-signed root, not an issuing CA of the root in issuer_dir %s: '
                           'leaves it signed would be refused by hosts that trust that root alone. Omit issuer_dir '
                           'to keep it as it is, or move the fleet under the root with playbooks/ca_rollover.yml'
                           % (self.directory, self.issuer_dir))
        if issued and crypto.serial_hex(self.existing.cert) in store.CaStore(self.issuer_dir).revoked_serials():
            if not self.replace_revoked:
                raise PkiError('the CA in %s was revoked by its root in issuer_dir %s (its revoked.json): every host '
                               'that checks the root\'s CRL refuses what it signs. Make the site a new issuing CA with '
                               'a new key (force: true, or replace_revoked: true; its leaves are then re-issued), or '
                               'take the site out of the inventory' % (self.directory, self.issuer_dir))
            self.warnings.append('the CA in %s was revoked by its root: it is replaced by a new issuing CA with a new '
                                 'key (the revoked one is kept under retired/)' % self.directory)
            if self.token is None:
                validate.check_new_key_passphrase('ca_passphrase', self.passphrase)
            self.action, self.replaced, self.existing, issued = 'replace', self.existing, None, False
        signing = self.action in ('create', 'replace', 'renew')
        issuer = load_ca(self.issuer_dir, self.issuer_passphrase, need_key=signing,
                         passphrase_option='issuer_passphrase', dir_option='issuer_dir')
        check_ca_usable(issuer, self.now)
        basic = crypto.extension_value(issuer.cert, crypto.x509.BasicConstraints)
        if basic is not None and basic.path_length is not None and basic.path_length < 1:
            raise PkiError('the CA in issuer_dir %s has path length %d: it may sign leaves only, not an issuing CA; '
                           'make a root without path_length (or with 1) to sign issuing CAs'
                           % (self.issuer_dir, basic.path_length))
        if issued and not crypto.signed_by(self.existing.cert, issuer.cert):
            raise PkiError('the CA in %s (issued by %s) was not signed by the CA in issuer_dir %s (%s, fingerprint '
                           '%s); point issuer_dir at its own root, or re-issue it under this one (force: true)'
                           % (self.directory, self.existing.cert.issuer.rfc4514_string(), self.issuer_dir,
                              issuer.cert.subject.rfc4514_string(), crypto.fingerprint_sha256(issuer.cert)))
        if self.action in ('create', 'replace') and crypto.build_name(self.common_name, self.subject_fields) == \
                issuer.cert.subject:
            raise PkiError('common_name %r is the root\'s own subject (%s): an issuing CA needs a name of its own '
                           '(such as "Site A Issuing CA"), or clients take it for the root'
                           % (self.common_name, issuer.cert.subject.rfc4514_string()))
        if self.action == 'renew' and self.existing.not_after >= min(
                issuer.not_after, self.now + datetime.timedelta(days=self.valid_days)):
            # Capped at the root's end already: a new certificate would not last a day longer.
            raise PkiError('the CA in %s already ends with its root (%s): renewing it gains nothing. Renew the root '
                           'in issuer_dir first (same key: pki_ca renew_days there), then this CA'
                           % (self.directory, crypto.iso8601(issuer.not_after)))
        if signing and self.now + datetime.timedelta(days=self.valid_days) > issuer.not_after:
            self.warnings.append('the CA in %s ends with its root on %s, before the %d days asked: a CA never '
                                 'outlives the CA that signed it' % (self.directory, crypto.iso8601(issuer.not_after),
                                                                     self.valid_days))
        self.issuer = issuer

    def _load_existing(self):
        """The CA there, loaded with the passphrase; an unencrypted key given a passphrase is refused, or planned for
        encryption in place with encrypt_existing_key (a key written unencrypted while a passphrase was meant)."""
        key_data = self.store.read_ca_key()
        if not self.passphrase or key_data is None or b'ENCRYPTED' in key_data:
            return load_ca(self.directory, self.passphrase)
        existing = load_ca(self.directory, None)  # a corrupt or mismatched key fails here, as without a passphrase
        if not self.encrypt_existing_key:
            raise PkiError('%s is not encrypted but ca_passphrase was given; omit ca_passphrase to use this key as it '
                           'is, or set encrypt_existing_key: true to encrypt it in place with ca_passphrase'
                           % self.key_path)
        self.encrypt_key = True
        return existing

    def _encrypt_existing_key(self):
        """The same key, encrypted with the passphrase: a temp file at mode 0600 renamed over the old one (atomic;
        no unencrypted copy is kept under retired/)."""
        self.store.remove_stale_temps()
        self.store.install(self.store.stage_ca(key_pem=crypto.private_key_pem(self.existing.key, self.passphrase)))
        self.existing.encrypted = True

    def _load_replaced_for_diff(self):
        """The CA being replaced, for the diff's "before"; its key is not needed (and may not load)."""
        try:
            self.replaced = load_ca(self.directory, need_key=False)
        except PkiError:
            self.replaced = None

    def _warn_if_request_differs(self):
        cert = self.existing.cert
        differences = []
        if crypto.common_name(cert) != self.common_name:
            differences.append('common_name %r' % crypto.common_name(cert))
        existing_type = crypto.key_type_of(cert.public_key())
        if existing_type != self.key_type:
            differences.append('key_type %s' % existing_type)
        if self.permitted_dns or self.permitted_ip:
            current = constraints.summary(cert) or {}
            wanted = (self.permitted_dns, self.permitted_ip)
            if (current.get('permitted_dns', []), current.get('permitted_ip', [])) != wanted or \
                    current.get('excluded_ip', []) != self.excluded_ip:
                differences.append('name constraints %s' % (
                    'permitted DNS %s, IP %s' % (current['permitted_dns'] or 'any', current['permitted_ip'] or 'any')
                    if current else 'none'))
        if self.usage is not None and crypto.extension_value(cert, crypto.x509.ExtendedKeyUsage) != \
                usage_extension(self.usage):
            differences.append('usage %s' % (crypto.usage_of(cert) or 'unlimited'))
        # Without pkcs11 the CA's own key is used wherever it is (a token CA's ca-key.pkcs11.json says where).
        if self.token is not None and self.existing.token != self.token.as_dict():
            self.warnings.append('the CA key of %s is %s, not the requested %s; the CA was kept as it is (its key '
                                 'stays where it is: a new key is a new CA, made by a rollover)'
                                 % (self.directory, 'a file' if self.existing.token is None else
                                    hsm.TokenSpec(**self.existing.token), self.token))
        if differences:
            self.warnings.append('the existing CA in %s was kept as it is (%s differ from the request); set '
                                 'force: true to replace it' % (self.directory, ', '.join(differences)))

    @property
    def changed(self):
        return self.action is not None

    def apply(self):
        """Re-plan under the directory's lock, then write: of two runs at once, only the first creates (or
        renews) the CA; the second finds it made and reports no change."""
        if self.action is None:
            return self.result()
        if self.action == 'create':
            self.store.create()
        with self.store.lock():
            self.plan()
            if self.action == 'fix_mode':
                self.store.fix_key_mode()
            elif self.action == 'encrypt_key':
                self._encrypt_existing_key()
            elif self.action == 'renew':
                if self.encrypt_key:
                    self._encrypt_existing_key()
                self._renew()
            elif self.action in ('create', 'replace'):
                self._create()
        return self.result()

    def _create(self):
        self.store.remove_stale_temps()
        subject = crypto.build_name(self.common_name, self.subject_fields)
        if self.token is not None:
            key = hsm.open_key(self.token, self.passphrase, 'CA %s' % self.directory, create_key_type=self.key_type,
                               pin_option='ca_passphrase')
            self._refuse_a_key_in_use(key)
            if key.existed:
                self.warnings.append('the CA in %s uses the key pair already in %s' % (self.directory, self.token))
            key_files = {'key_ref': self.token.as_dict()}
        else:
            key = crypto.generate_key(self.key_type)
            key_files = {'key_pem': crypto.private_key_pem(key, self.passphrase)}
        cert = build_ca_cert(key, subject, self.valid_days, self.path_length, self.now,
                             constraints.extension(self.permitted_dns, self.permitted_ip, self.excluded_ip),
                             issuer=self.issuer, extended_key_usage=usage_extension(self.usage))
        staged = self.store.stage_ca(cert_pem=crypto.cert_pem(cert), **key_files)
        if self.action == 'replace':
            # Keep the replaced CA under retired/ (its leaves may still be in use), never delete it.
            self.store.retire((self.key_path, self.store.key_ref_path, self.cert_path), self.now)
        self.store.install(staged)
        self.existing = LoadedCa(self.directory, cert, key, bool(self.passphrase) and self.token is None,
                                 token=self.token.as_dict() if self.token is not None else None)

    def _refuse_a_key_in_use(self, key):
        """A token key that already signs another CA here is refused: the root's (an issuing CA under the root's
        own key would put the root online for every leaf), or the replaced CA's (force is for a new key)."""
        public = crypto.public_key_der(key)
        if self.issuer is not None and public == crypto.public_key_der(self.issuer.cert.public_key()):
            raise PkiError('%s is the key of the root in issuer_dir %s: an issuing CA needs a key of its own (another '
                           'pkcs11 key_label)' % (self.token, self.issuer_dir))
        if self.replaced is not None and public == crypto.public_key_der(self.replaced.cert.public_key()):
            raise PkiError('%s is the key of the CA force replaces: a replacement needs a new key (another pkcs11 '
                           'key_label); to keep the key and renew the certificate, use renew_days' % self.token)

    def _renew(self):
        """Same key, same subject, same extensions; a new serial and validity. Leaves keep validating: their AKI
        names the key. The previous certificate is kept under retired/."""
        old = self.existing
        self.store.remove_stale_temps()
        basic = crypto.extension_value(old.cert, crypto.x509.BasicConstraints)
        path_length = basic.path_length if basic is not None else self.path_length
        cert = build_ca_cert(old.key, old.cert.subject, self.valid_days, path_length, self.now,
                             crypto.extension_value(old.cert, crypto.x509.NameConstraints), issuer=self.issuer,
                             extended_key_usage=crypto.extension_value(old.cert, crypto.x509.ExtendedKeyUsage))
        staged = self.store.stage_ca(cert_pem=crypto.cert_pem(cert))
        self.previous_cert_path = self.store.retire((self.cert_path,), self.now)
        self.store.install(staged)
        self.existing = LoadedCa(self.directory, cert, old.key, old.encrypted, token=old.token)

    def result(self):
        """Facts of the CA as it is after apply(); in check mode only the paths of one still to be made."""
        if self.existing is not None:
            info = self.existing.info(self.now)
        else:
            info = {'dir': self.directory, 'key_path': self.key_path, 'cert_path': self.cert_path}
        info['changed'] = self.changed
        info['action'] = self.action or 'none'
        if self.previous_cert_path:
            info['previous_cert_path'] = self.previous_cert_path
        return info

    def summary_for_diff(self):
        current = self.existing if self.existing is not None else self.replaced
        if current is None:
            return {}
        info = current.info(self.now)
        return dict((k, info[k]) for k in ('subject', 'serial', 'fingerprint_sha256', 'not_after', 'key_type'))
