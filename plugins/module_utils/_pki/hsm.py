# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A CA key in a PKCS#11 token (an HSM, or SoftHSM2): find or make it by label, sign through the token.

The key never leaves the token: it is made there sensitive and not extractable, and signs only the to-be-signed
bytes that crypto.sign() hands it (the certificate or CRL itself is built by cryptography). python-pkcs11 drives
the token; it is needed only when a token is used (``pip install python-pkcs11``).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import os
import threading
import traceback

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError

try:
    import pkcs11
    from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
    from pkcs11.exceptions import PKCS11Error
    from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters
    from pkcs11.util.rsa import encode_rsa_public_key
except ImportError:
    HAS_PKCS11, PKCS11_IMPORT_ERROR = False, traceback.format_exc()
else:
    HAS_PKCS11, PKCS11_IMPORT_ERROR = True, None

# python-pkcs11 initialises the library for one thread at a time (SoftHSM2 then runs without its own locks):
# every call into the token goes through this lock.
_TOKEN_LOCK = threading.RLock()

# What the token's error classes mean (python-pkcs11's exceptions carry no message of their own).
_ERRORS = {
    'PinIncorrect': 'the PIN is wrong',
    'PinLocked': 'the PIN is locked after too many wrong attempts: the security officer must unlock it',
    'PinLenRange': 'the PIN has a length the token refuses',
    'PinExpired': 'the PIN expired: set a new one with the token\'s own tool',
    'UserPinNotInitialized': 'the token\'s user PIN was never set (softhsm2-util --init-token sets it)',
    'UserAlreadyLoggedIn': 'another session of this process is logged in already',
    'TokenNotPresent': 'the token is not present',
    'TokenNotRecognised': 'the module does not recognise the token',
    'DeviceRemoved': 'the token was removed',
    'DeviceError': 'the token reported a device error',
    'MechanismInvalid': 'the token cannot sign with this mechanism',
    'KeyTypeInconsistent': 'the key is of another type than the mechanism needs',
    'MultipleObjectsReturned': 'several keys of the token carry this label: give each CA key a label of its own',
    'MultipleTokensReturned': 'several tokens carry this label: give the CA\'s token a label of its own',
}

# fleetpki key types a token key can have (Ed25519 is not in PKCS#11 2.40, which SoftHSM2 2.6 implements).
_EC_CURVES = {'ec-p256': 'secp256r1', 'ec-p384': 'secp384r1'}
_RSA_SIZES = {'rsa2048': 2048, 'rsa3072': 3072, 'rsa4096': 4096}
TOKEN_KEY_TYPES = tuple(_EC_CURVES) + tuple(_RSA_SIZES)
MAX_LABEL_BYTES = 32


def describe(exc):
    """A PKCS#11 error in words (the class, and what it means when known)."""
    name = type(exc).__name__
    text = _ERRORS.get(name, str(exc).strip())
    return '%s (%s)' % (text, name) if text else name


class TokenSpec:
    """Where a CA key lives: the PKCS#11 module (a shared library), the token's label, the key's label. The PIN is
    kept apart (never in a file, a result or a message)."""

    def __init__(self, module, token_label, key_label):
        self.module = module
        self.token_label = token_label
        self.key_label = key_label

    def as_dict(self):
        return {'module': self.module, 'token_label': self.token_label, 'key_label': self.key_label}

    def __str__(self):
        return 'key %r of PKCS#11 token %r (%s)' % (self.key_label, self.token_label, self.module)

    def check(self, what, pin, pin_option='ca_passphrase'):
        """Refuse an incomplete or impossible request before the token is touched."""
        if not HAS_PKCS11:
            raise PkiError('%s: a CA key in a PKCS#11 token needs the Python library python-pkcs11 on the control '
                           'node (pip install python-pkcs11)' % what)
        for option, value in (('pkcs11.module', self.module), ('pkcs11.token_label', self.token_label),
                              ('pkcs11.key_label', self.key_label)):
            if not value:
                raise PkiError('%s: %s is empty; a key in a token is named by pkcs11.module, pkcs11.token_label and '
                               'pkcs11.key_label' % (what, option))
        for option, value in (('pkcs11.token_label', self.token_label), ('pkcs11.key_label', self.key_label)):
            if len(value.encode('utf-8')) > MAX_LABEL_BYTES:
                raise PkiError('%s: %s %r is longer than the %d bytes PKCS#11 allows' % (what, option, value,
                                                                                         MAX_LABEL_BYTES))
        if not os.path.isabs(self.module) or not os.path.isfile(self.module):
            raise PkiError('%s: pkcs11.module %s is not a file; give the absolute path of the token\'s PKCS#11 '
                           'library (SoftHSM2 from Debian: /usr/lib/softhsm/libsofthsm2.so)' % (what, self.module))
        if not pin:
            raise PkiError('%s: %s is empty; give the token\'s user PIN (from the vault)' % (what, pin_option))


class TokenKey(crypto.ExternalKey):
    """A key pair of a token, in a logged-in session of this process."""

    def __init__(self, spec, session, private, public):
        self.spec = spec
        self._session = session
        self._private = private
        self._public = public
        self.key_type = crypto.key_type_of(public)
        self.existed = True  # open_key: False when it made the pair

    def public_key(self):
        return self._public

    def sign_digest_input(self, data, algorithm):
        with _TOKEN_LOCK:
            try:
                if isinstance(self._public, crypto.ec.EllipticCurvePublicKey):
                    # CKM_ECDSA over a digest made here: SoftHSM2 2.6 (and many HSMs) have no ECDSA-with-SHA-2
                    # mechanism. The token answers r || s; X.509 wants them DER-encoded.
                    digest = hashlib.new(algorithm.name, data).digest()
                    raw = self._private.sign(digest, mechanism=Mechanism.ECDSA)
                    half = len(raw) // 2
                    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
                    return encode_dss_signature(int.from_bytes(raw[:half], 'big'), int.from_bytes(raw[half:], 'big'))
                return self._private.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS)
            except PKCS11Error as exc:
                raise PkiError('%s could not sign: %s' % (self.spec, describe(exc)))

    def close(self):
        with _TOKEN_LOCK:
            if self._session is not None:
                _release(self._session)
                self._session = None


# The logged-in session of each token in this process, shared by its keys (a root and an issuing CA may share a
# token: PKCS#11 logs in once per token and application): {(library path, token label): [session, PIN digest,
# keys using it]}.
_SESSIONS = {}


def _session(library, spec, pin, what, read_write):
    # The PIN's digest, in memory only: a second key of the same token must come with the same PIN.
    pin_digest = hashlib.sha256(pin.encode('utf-8')).digest()
    slot = (os.path.realpath(spec.module), spec.token_label)
    if slot in _SESSIONS:
        entry = _SESSIONS[slot]
        if entry[1] != pin_digest:
            raise PkiError('%s: PKCS#11 token %r is open in this run with another PIN; one token has one user PIN'
                           % (what, spec.token_label))
        entry[2] += 1
        return entry[0]
    try:
        token = library.get_token(token_label=spec.token_label)
    except PKCS11Error as exc:
        if type(exc).__name__ == 'NoSuchToken':
            labels = sorted(set(slot.get_token().label for slot in library.get_slots(token_present=True)))
            raise PkiError('%s: no PKCS#11 token labelled %r in %s (tokens there: %s); initialise it first '
                           '(softhsm2-util --init-token --free --label %s asks for its PINs) or correct '
                           'pkcs11.token_label' % (what, spec.token_label, spec.module,
                                                   ', '.join(repr(label) for label in labels) or 'none',
                                                   spec.token_label))
        raise PkiError('%s: PKCS#11 token %r: %s' % (what, spec.token_label, describe(exc)))
    try:
        session = token.open(rw=read_write, user_pin=pin)
    except PKCS11Error as exc:
        raise PkiError('%s: cannot log in to PKCS#11 token %r with its user PIN: %s'
                       % (what, spec.token_label, describe(exc)))
    _SESSIONS[slot] = [session, pin_digest, 1]
    return session


def _release(session):
    for slot, entry in list(_SESSIONS.items()):
        if entry[0] is session:
            entry[2] -= 1
            if entry[2] <= 0:
                del _SESSIONS[slot]
                session.close()


def _library(spec):
    # One load per process and path (python-pkcs11 keeps it): the real path, so a link and its target are one.
    try:
        return pkcs11.lib(os.path.realpath(spec.module))
    except PKCS11Error as exc:
        raise PkiError('cannot load the PKCS#11 module %s: %s' % (spec.module, describe(exc)))


def _public_key_of(spec, public):
    encode = encode_ec_public_key if public.key_type == KeyType.EC else encode_rsa_public_key
    if public.key_type not in (KeyType.EC, KeyType.RSA):
        raise PkiError('%s is a %s key; a CA key in a token is EC (P-256, P-384) or RSA' % (spec, public.key_type))
    return crypto.serialization.load_der_public_key(encode(public))


def _find(session, object_class, label):
    """The token's object of this class and label, or None."""
    found = list(session.get_objects({Attribute.CLASS: object_class, Attribute.LABEL: label}))
    if len(found) > 1:
        raise PkiError('several %s objects of the token carry the label %r: give each CA key a label of its own'
                       % ('private key' if object_class == ObjectClass.PRIVATE_KEY else 'public key', label))
    return found[0] if found else None


def _generate(session, spec, key_type):
    if key_type not in TOKEN_KEY_TYPES:
        raise PkiError('key_type %s cannot be made in a PKCS#11 token; use one of %s'
                       % (key_type, ', '.join(TOKEN_KEY_TYPES)))
    # On the token, sensitive and never extractable: no call can read the private key out.
    private_template = {Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False, Attribute.SIGN: True, Attribute.DECRYPT: False,
                        Attribute.UNWRAP: False, Attribute.DERIVE: False}
    public_template = {Attribute.TOKEN: True, Attribute.VERIFY: True, Attribute.ENCRYPT: False,
                       Attribute.WRAP: False}
    if key_type in _EC_CURVES:
        parameters = session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(_EC_CURVES[key_type])}, local=True)
        return parameters.generate_keypair(store=True, label=spec.key_label, private_template=private_template,
                                           public_template=public_template)
    return session.generate_keypair(KeyType.RSA, _RSA_SIZES[key_type], store=True, label=spec.key_label,
                                    private_template=private_template, public_template=public_template)


def open_key(spec, pin, what, create_key_type=None, pin_option='ca_passphrase', missing_ok=False):
    """The TokenKey of ``spec``, logged in with ``pin``; a missing key pair is made when ``create_key_type`` is
    given, None with ``missing_ok``, and refused otherwise. Every failure names the token, the key and the fix,
    never the PIN."""
    spec.check(what, pin, pin_option)
    with _TOKEN_LOCK:
        # Read-write for every key: SoftHSM2 (as PKCS#11) logs a token in once per process, so a session opened
        # read-only to sign would refuse to make a second CA's key later in the same run.
        session = _session(_library(spec), spec, pin, what, True)
        try:
            private = _find(session, ObjectClass.PRIVATE_KEY, spec.key_label)
            public = _find(session, ObjectClass.PUBLIC_KEY, spec.key_label)
            made = private is None and public is None and create_key_type is not None
            if private is None and public is None and missing_ok:
                _release(session)
                return None
            if made:
                public, private = _generate(session, spec, create_key_type)
            elif private is None or public is None:
                raise PkiError('%s: the token %r has %s labelled %r; %s'
                               % (what, spec.token_label,
                                  'no key pair' if private is None and public is None else
                                  'no private key' if private is None else 'no public key',
                                  spec.key_label,
                                  'correct pkcs11.key_label' if private is None and public is None else
                                  'a CA key in a token is a pair of a private and a public key of one label'))
            # A key that was ever readable (imported from a file, or made extractable) is not an HSM key.
            if not (private[Attribute.SENSITIVE] and private[Attribute.ALWAYS_SENSITIVE]) or \
                    private[Attribute.EXTRACTABLE] or not private[Attribute.NEVER_EXTRACTABLE]:
                raise PkiError('%s: %s can be, or once could be, read out of the token (CKA_SENSITIVE, '
                               'CKA_EXTRACTABLE): a CA key in a token must be made there, never extractable; let '
                               'pki_ca make one under a new key_label' % (what, spec))
            key = TokenKey(spec, session, private, _public_key_of(spec, public))
            key.existed = not made
        except PKCS11Error as exc:
            _release(session)
            raise PkiError('%s: %s: %s' % (what, spec, describe(exc)))
        except PkiError:
            _release(session)
            raise
    if create_key_type is not None and key.key_type != create_key_type:
        key.close()
        raise PkiError('%s: the token already holds a %s key labelled %r, not %s; use that key_type, or another '
                       'pkcs11.key_label' % (what, key.key_type, spec.key_label, create_key_type))
    return key
