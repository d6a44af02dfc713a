# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""X.509 primitives on top of ``cryptography``.

Works with cryptography 38.0.4 (Debian 12's python3-cryptography, used when
cert_expiry runs on a fleet host) and with the control node's pinned release:
it avoids ``not_valid_after_utc``, ``verify_directly_issued_by`` and
``load_pem_x509_certificates``, which 38 lacks.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import binascii
import datetime
import importlib.util
import ipaddress
import re
import traceback

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError

# cryptography is imported on first use, not with this module: pki_leaf's rerun of a fleet whose files all match
# their recorded digests parses nothing, and the import was a twentieth of such a run. Until then each name below
# stands in for the module or class of the same name; the first attribute read on one imports them all (_load) and
# binds the real objects here, so later calls cost nothing extra.


class CryptographyMissing(ImportError):
    """cryptography could not be imported when it was first needed (CRYPTOGRAPHY_IMPORT_ERROR has the traceback)."""


class _NotLoadedYet(Exception):
    """Stands for cryptography's exception classes until the import: nothing raises them before it."""


class _Deferred:
    """One of cryptography's modules or classes, imported on the first attribute read."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        return getattr(_load()[self._name], attr)


cryptography = _Deferred('cryptography')
x509 = _Deferred('x509')
hashes = _Deferred('hashes')
serialization = _Deferred('serialization')
ec = _Deferred('ec')
ed25519 = _Deferred('ed25519')
padding = _Deferred('padding')
rsa = _Deferred('rsa')
ExtendedKeyUsageOID = _Deferred('ExtendedKeyUsageOID')
NameOID = _Deferred('NameOID')
InvalidSignature = UnsupportedAlgorithm = _NotLoadedYet
_LOADED = {}


def _load():
    """Import cryptography (once) and bind its names in this module; raises CryptographyMissing without it."""
    if not _LOADED:
        global HAS_CRYPTOGRAPHY, CRYPTOGRAPHY_IMPORT_ERROR, CRYPTOGRAPHY_VERSION
        try:
            import cryptography as real_cryptography
            from cryptography import x509 as real_x509
            from cryptography import exceptions
            from cryptography.hazmat.primitives import hashes as real_hashes, serialization as real_serialization
            from cryptography.hazmat.primitives.asymmetric import ec as real_ec, ed25519 as real_ed25519
            from cryptography.hazmat.primitives.asymmetric import padding as real_padding, rsa as real_rsa
            from cryptography.x509 import oid
        except ImportError:
            HAS_CRYPTOGRAPHY, CRYPTOGRAPHY_IMPORT_ERROR, CRYPTOGRAPHY_VERSION = False, traceback.format_exc(), None
            raise CryptographyMissing('cryptography is needed and could not be imported')
        _LOADED.update(
            cryptography=real_cryptography, x509=real_x509, hashes=real_hashes, serialization=real_serialization,
            ec=real_ec, ed25519=real_ed25519, padding=real_padding, rsa=real_rsa,
            ExtendedKeyUsageOID=oid.ExtendedKeyUsageOID, NameOID=oid.NameOID,
            InvalidSignature=exceptions.InvalidSignature, UnsupportedAlgorithm=exceptions.UnsupportedAlgorithm)
        globals().update(_LOADED)
        HAS_CRYPTOGRAPHY, CRYPTOGRAPHY_IMPORT_ERROR = True, None
        CRYPTOGRAPHY_VERSION = real_cryptography.__version__
    return _LOADED


def __getattr__(name):
    """HAS_CRYPTOGRAPHY, CRYPTOGRAPHY_IMPORT_ERROR and CRYPTOGRAPHY_VERSION: known once the import was tried, so
    reading one tries it (the modules other than pki_leaf check HAS_CRYPTOGRAPHY first thing, as before)."""
    if name in ('HAS_CRYPTOGRAPHY', 'CRYPTOGRAPHY_IMPORT_ERROR', 'CRYPTOGRAPHY_VERSION'):
        try:
            _load()
        except CryptographyMissing:
            pass
        return globals()[name]
    raise AttributeError('module %r has no attribute %r' % (__name__, name))


def cryptography_installed():
    """Whether cryptography can be found, without importing it (pki_leaf's early check)."""
    return HAS_CRYPTOGRAPHY if 'HAS_CRYPTOGRAPHY' in globals() else importlib.util.find_spec('cryptography') is not None


UTC = datetime.timezone.utc

KEY_TYPES = ('ec-p256', 'ec-p384', 'rsa2048', 'rsa3072', 'rsa4096', 'ed25519')
USAGES = ('server', 'client', 'both')

_PEM_CERT_RE = re.compile(
    br'-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----', re.DOTALL)
# RFC 1123 label; a leading "*." wildcard is accepted for DNS SANs only.
_LABEL_RE = re.compile(r'^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$')


def utcnow():
    return datetime.datetime.now(UTC)


# The time and serial formats of every record and result (metadata.json, revoked.json, module results).
TIME_FORMAT = '%Y-%m-%dT%H:%M:%SZ'
# Time stamps in file names (retired CA files, backups).
STAMP_FORMAT = '%Y%m%dT%H%M%SZ'


def iso8601(moment):
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def parse_iso8601(text):
    return datetime.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=UTC)


def file_stamp(moment):
    return moment.astimezone(UTC).strftime(STAMP_FORMAT)


def not_before(cert):
    value = getattr(cert, 'not_valid_before_utc', None)
    if value is None:  # cryptography < 42
        value = cert.not_valid_before.replace(tzinfo=UTC)
    return value


def not_after(cert):
    value = getattr(cert, 'not_valid_after_utc', None)
    if value is None:  # cryptography < 42
        value = cert.not_valid_after.replace(tzinfo=UTC)
    return value


def crl_time(crl, name):
    """A CRL's last_update or next_update as an aware UTC datetime (None when the CRL has no nextUpdate)."""
    value = getattr(crl, name + '_utc', None)
    if value is None:  # cryptography < 42
        value = getattr(crl, name)
        value = value.replace(tzinfo=UTC) if value is not None else None
    return value


def load_crl_bundle(data, path):
    """Every PEM CRL in a file (a CRL bundle holds one per trusted CA)."""
    marker = b'-----BEGIN X509 CRL-----'
    blocks = [marker + block for block in to_bytes(data).split(marker)[1:]]
    if not blocks:
        raise PkiError('%s holds no PEM CRL' % path)
    crls = []
    for block in blocks:
        try:
            crls.append(x509.load_pem_x509_crl(block))
        except ValueError as exc:
            raise PkiError('%s: a CRL does not parse: %s' % (path, exc))
    return crls


def days_remaining(cert, now=None):
    """Whole days left, rounded down (negative once expired)."""
    delta = not_after(cert) - (now or utcnow())
    return int(delta.total_seconds() // 86400)


def check_key_type(key_type, what):
    if key_type not in KEY_TYPES:
        raise PkiError('%s: unknown key type %r; use one of %s' % (what, key_type, ', '.join(KEY_TYPES)))


def generate_key(key_type):
    check_key_type(key_type, 'key_type')
    if key_type == 'ec-p256':
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == 'ec-p384':
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == 'ed25519':
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[3:]))


def key_type_of(key):
    """The fleetpki key type name of a public or private key, or None when it is of another kind."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return {'secp256r1': 'ec-p256', 'secp384r1': 'ec-p384'}.get(key.curve.name)
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        name = 'rsa%d' % key.key_size
        return name if name in KEY_TYPES else None
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return 'ed25519'
    return None


def signing_hash(key):
    """Hash used when ``key`` (private, or the public half of an external key) signs: None for Ed25519, SHA-384
    with P-384, SHA-256 otherwise."""
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return None
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def private_key_pem(key, passphrase=None):
    if passphrase:
        encryption = serialization.BestAvailableEncryption(to_bytes(passphrase))
    else:
        encryption = serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def to_bytes(value):
    return value if isinstance(value, bytes) else value.encode('utf-8')


def load_private_key(data, path, passphrase=None, passphrase_option='passphrase'):
    """Load a PEM private key; errors name the file and the option to fix, never the passphrase."""
    password = to_bytes(passphrase) if passphrase else None
    try:
        return serialization.load_pem_private_key(data, password=password)
    except TypeError as exc:
        if 'not encrypted' in str(exc):
            raise PkiError('%s is not encrypted but %s was given; omit %s to use this key as it is'
                           % (path, passphrase_option, passphrase_option))
        raise PkiError('%s is encrypted; give its passphrase in %s' % (path, passphrase_option))
    except ValueError:
        if password is not None and b'ENCRYPTED' in data:
            raise PkiError('cannot decrypt %s: %s is wrong; give the passphrase the key was encrypted with'
                           % (path, passphrase_option))
        raise PkiError('%s is not a valid PEM private key (corrupt or truncated); restore it from a backup'
                       % path)
    except UnsupportedAlgorithm:
        raise PkiError('%s holds a key of an unsupported kind; use one of %s' % (path, ', '.join(KEY_TYPES)))


def load_cert(data, path):
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise PkiError('%s is not a valid PEM certificate (corrupt or truncated); restore it from a backup'
                       % path)


def load_cert_bundle(data, path):
    """All certificates of a PEM bundle (cryptography 38 has no load_pem_x509_certificates)."""
    blocks = _PEM_CERT_RE.findall(data)
    if not blocks:
        raise PkiError('%s holds no PEM certificate; point it at a CA certificate or bundle' % path)
    return [load_cert(block, path) for block in blocks]


def public_key_der(key):
    if hasattr(key, 'public_key'):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches_cert(key, cert):
    return public_key_der(key) == public_key_der(cert.public_key())


_KEY_PROOF_MESSAGE = b'fleetpki: this key belongs to this certificate'


def key_signs_for(key, public_key):
    """True when ``key``'s private part makes signatures ``public_key`` verifies.

    Comparing public keys is not enough: cryptography 38 loads a PKCS#8 EC key with the public key stored beside
    its private scalar, so a damaged scalar still "matches" the cert while every handshake with it would fail.
    """
    try:
        if isinstance(key, ExternalKey):
            return verify_signature(public_key, key.sign_digest_input(_KEY_PROOF_MESSAGE, signing_hash(public_key)),
                                    _KEY_PROOF_MESSAGE)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            algorithm = ec.ECDSA(hashes.SHA256())
            public_key.verify(key.sign(_KEY_PROOF_MESSAGE, algorithm), _KEY_PROOF_MESSAGE, algorithm)
        elif isinstance(key, rsa.RSAPrivateKey):
            signature = key.sign(_KEY_PROOF_MESSAGE, padding.PKCS1v15(), hashes.SHA256())
            public_key.verify(signature, _KEY_PROOF_MESSAGE, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            public_key.verify(key.sign(_KEY_PROOF_MESSAGE), _KEY_PROOF_MESSAGE)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def fingerprint_sha256(cert):
    digest = binascii.hexlify(cert.fingerprint(hashes.SHA256())).decode('ascii').upper()
    return ':'.join(digest[i:i + 2] for i in range(0, len(digest), 2))


def serial_hex(cert):
    """A certificate's serial as fleetpki writes it everywhere: upper-case hex, no colons, no leading zeros."""
    return '%X' % cert.serial_number


def normalise_serial(value, option='revoke_serials'):
    """'4f:2a:0C' or '0x04F2A0C' -> '4F2A0C', the form of serial_hex()."""
    text = str(value).strip().upper().replace(':', '')
    if text.startswith('0X'):
        text = text[2:]
    text = text.lstrip('0') or '0'
    try:
        int(text, 16)
    except ValueError:
        raise PkiError('%s: %r is not a hexadecimal serial (such as 4F2A9C0D...); see the serial of a certificate '
                       'with cert_expiry or in metadata.json' % (option, value))
    return text


def subject_string(cert):
    return cert.subject.rfc4514_string()


def common_name(cert):
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return attrs[0].value if attrs else None


def extension_value(cert, ext_class):
    try:
        return cert.extensions.get_extension_for_class(ext_class).value
    except x509.ExtensionNotFound:
        return None


def subject_key_identifier(cert):
    ski = extension_value(cert, x509.SubjectKeyIdentifier)
    if ski is not None:
        return ski.digest
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def sans(cert):
    """(sorted DNS names, sorted IP strings) of a certificate's SubjectAltName."""
    ext = extension_value(cert, x509.SubjectAlternativeName)
    if ext is None:
        return [], []
    dns = sorted(ext.get_values_for_type(x509.DNSName))
    ips = sorted(str(ip) for ip in ext.get_values_for_type(x509.IPAddress))
    return dns, ips


def usage_of(cert):
    """server, client, both, or None from the cert's ExtendedKeyUsage."""
    eku = extension_value(cert, x509.ExtendedKeyUsage)
    if eku is None:
        return None
    server = ExtendedKeyUsageOID.SERVER_AUTH in eku
    client = ExtendedKeyUsageOID.CLIENT_AUTH in eku
    if server and client:
        return 'both'
    if server:
        return 'server'
    if client:
        return 'client'
    return None


def is_ca(cert):
    constraints = extension_value(cert, x509.BasicConstraints)
    return bool(constraints is not None and constraints.ca)


def is_self_signed(cert):
    """A root names itself as its issuer (fleetpki never gives an issuing CA its root's subject: pki_ca refuses)."""
    return cert.issuer == cert.subject


def signed_by(cert, issuer, issuer_subject=None, issuer_key=None):
    """True when ``issuer``'s key signed ``cert`` and the names chain.

    Same check as verify_directly_issued_by (cryptography >= 40), done by hand for 38. A caller checking many
    certs against one issuer passes its subject and public key, which cryptography rebuilds on every access.
    """
    if cert.issuer != (issuer_subject if issuer_subject is not None else issuer.subject):
        return False
    public_key = issuer_key if issuer_key is not None else issuer.public_key()
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                              cert.signature_hash_algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(cert.signature, cert.tbs_certificate_bytes,
                              ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def is_hostname(value):
    if not value or len(value) > 253 or is_ip(value):  # 10.0.0.1 is made of valid labels, but is an IP
        return False
    labels = value.rstrip('.').split('.')
    if labels[0] == '*' and len(labels) > 1:
        labels = labels[1:]
    return all(_LABEL_RE.match(label) for label in labels)


_IPV4_CHARACTERS = frozenset('0123456789.')


def is_ip(value):
    text = u'%s' % value
    # An IPv6 address always has a ':' and an IPv4 one only digits and dots: a host name is answered without
    # ipaddress's parse-and-raise (four of them per requested name, on every run of a 1000-cert request).
    if ':' not in text and not _IPV4_CHARACTERS.issuperset(text):
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def normalise_ip(value):
    return str(ipaddress.ip_address(u'%s' % value))


def build_name(common_name_value, fields=None):
    """An X.509 Name from a CN and optional subject fields (country, organization, ...)."""
    oids = [
        ('country', NameOID.COUNTRY_NAME),
        ('state_or_province', NameOID.STATE_OR_PROVINCE_NAME),
        ('locality', NameOID.LOCALITY_NAME),
        ('organization', NameOID.ORGANIZATION_NAME),
        ('organizational_unit', NameOID.ORGANIZATIONAL_UNIT_NAME),
    ]
    attributes = []
    for field, oid in oids:
        value = (fields or {}).get(field)
        if value:
            if field == 'country' and len(value) != 2:
                raise PkiError('country must be a two-letter ISO 3166 code (such as DE or US), not %r' % value)
            attributes.append(x509.NameAttribute(oid, value))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name_value))
    return x509.Name(attributes)


class ExternalKey:
    """A private key held outside this process (a PKCS#11 token: module_utils/_pki/hsm.py). It signs bytes and
    shows its public key; its private part is never here. sign() below builds the certificate or CRL with
    cryptography and has the key sign only the to-be-signed bytes."""

    def public_key(self):
        raise NotImplementedError

    def sign_digest_input(self, data, algorithm):
        """The X.509 signature value of ``data`` with hash ``algorithm`` (DER ECDSA, or PKCS#1 v1.5 RSA)."""
        raise NotImplementedError


# A software key of the external key's kind, made once per process: only its algorithm identifier ends up in the
# to-be-signed bytes (the subject's and issuer's keys come from the builder), so one per kind serves every build.
_STAND_INS = {}


def _stand_in_key(public_key):
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        kind = 'ec-p384' if public_key.curve.key_size >= 384 else 'ec-p256'
    elif isinstance(public_key, rsa.RSAPublicKey):
        kind = 'rsa2048'  # the key size does not show in sha256WithRSAEncryption
    else:
        raise PkiError('an external key of type %s cannot sign here; use an EC (P-256, P-384) or RSA key'
                       % type(public_key).__name__)
    if kind not in _STAND_INS:
        _STAND_INS[kind] = generate_key(kind)
    return _STAND_INS[kind]


def _der_length(length):
    if length < 0x80:
        return bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, 'big')
    return bytes([0x80 | len(octets)]) + octets


def _der_element(data, offset):
    """(end, header length) of the DER element at ``offset`` (definite lengths, as DER has)."""
    if offset + 2 > len(data):
        raise ValueError('truncated DER')
    first = data[offset + 1]
    if first < 0x80:
        return offset + 2 + first, 2
    count = first & 0x7F
    if not 0 < count <= 4 or offset + 2 + count > len(data):
        raise ValueError('bad DER length')
    return offset + 2 + count + int.from_bytes(data[offset + 2:offset + 2 + count], 'big'), 2 + count


def split_signed(der):
    """(to-be-signed, signatureAlgorithm, signatureValue) of a signed X.509 structure (certificate or CRL)."""
    end, header = _der_element(der, 0)
    if der[0] != 0x30 or end != len(der):
        raise ValueError('not one DER SEQUENCE')
    parts, offset = [], header
    while offset < end:
        element_end = _der_element(der, offset)[0]
        parts.append(der[offset:element_end])
        offset = element_end
    if offset != end or len(parts) != 3 or [part[0] for part in parts] != [0x30, 0x30, 0x03]:
        raise ValueError('not a signed X.509 structure')
    return parts


def join_signed(tbs, algorithm_identifier, signature):
    bit_string = b'\x03' + _der_length(len(signature) + 1) + b'\x00' + signature
    body = tbs + algorithm_identifier + bit_string
    return b'\x30' + _der_length(len(body)) + body


def _sign_with_external_key(builder, key):
    """The builder's certificate or CRL, encoded by cryptography, signed by ``key`` over its to-be-signed bytes,
    and checked against the key's public key before it is returned."""
    public_key = key.public_key()
    draft = builder.sign(private_key=_stand_in_key(public_key), algorithm=signing_hash(public_key))
    tbs, algorithm_identifier, dummy = split_signed(draft.public_bytes(serialization.Encoding.DER))
    der = join_signed(tbs, algorithm_identifier, key.sign_digest_input(tbs, signing_hash(public_key)))
    if isinstance(builder, x509.CertificateRevocationListBuilder):
        signed = x509.load_der_x509_crl(der)
        valid = signed.is_signature_valid(public_key)
    else:
        signed = x509.load_der_x509_certificate(der)
        valid = verify_signature(public_key, signed.signature, signed.tbs_certificate_bytes)
    if not valid:
        raise PkiError('the signature the external key made does not verify with its public key; check that the '
                       'key label names the CA\'s key pair (private and public key of the same label)')
    return signed


def verify_signature(public_key, signature, data):
    """Whether ``signature`` over ``data`` verifies with ``public_key`` (EC, RSA PKCS#1 v1.5, Ed25519)."""
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(signing_hash(public_key)))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def sign(builder, private_key):
    if isinstance(private_key, ExternalKey):
        return _sign_with_external_key(builder, private_key)
    return builder.sign(private_key=private_key, algorithm=signing_hash(private_key))


def random_serial():
    """159 random bits: above the 64 bits CA/B baseline, below the 20-octet limit."""
    return x509.random_serial_number()
