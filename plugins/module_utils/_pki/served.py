# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The certificate a service presents on a TLS port (backend of cert_expiry's ``endpoints``).

The leaf is fetched on a connection that verifies nothing (so an expired, mismatched or foreign certificate is still
seen and reported), and the chain is then verified by a second handshake against the CA bundle, as a client would,
without a host-name check. Runs on the control node and on fleet hosts with Debian 12's python3-cryptography 38.0.4.
Key files are only paths handed to ``ssl``; nothing read from them is kept or reported.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto, files
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.renewal import cert_name, renew_at_of

STATUSES = ('ok', 'expiring', 'expired', 'unreachable', 'mismatch', 'broken')
DEFAULT_TIMEOUT = 5.0
# Endpoints inspected at once: a fleet's unreachable hosts each cost up to two timeouts, not one after the other.
PARALLEL = 16
# OpenSSL's X509_V_ERR_CERT_HAS_EXPIRED: the chain was built and its signatures checked before the time check.
_X509_V_ERR_CERT_HAS_EXPIRED = 10


class Unreachable(Exception):
    """No certificate was obtained from the endpoint (connection, handshake or client identity failed)."""


def _context(endpoint, ca_path=None):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    if ca_path:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=ca_path)
    else:
        context.verify_mode = ssl.CERT_NONE
    if endpoint.get('client_cert'):
        try:
            context.load_cert_chain(endpoint['client_cert'], endpoint.get('client_key') or None)
        except (ssl.SSLError, IOError, OSError) as exc:
            # The message names the paths only; ssl never puts key material in its errors.
            raise Unreachable('client_cert %s / client_key %s cannot be loaded (%s)'
                              % (endpoint['client_cert'], endpoint.get('client_key'), _reason(exc)))
    return context


def _reason(exc):
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or str(exc)
    if isinstance(exc, socket.timeout):
        return 'timed out'
    if isinstance(exc, ssl.SSLError):
        return exc.reason or str(exc)
    if isinstance(exc, (IOError, OSError)) and exc.strerror:
        return exc.strerror
    return str(exc) or exc.__class__.__name__


def _server_hostname(endpoint):
    name = endpoint.get('server_name') or endpoint['host']
    return name.rstrip('.') if crypto.is_hostname(name) else None  # SNI carries DNS names only, never an IP


def handshake(endpoint, ca_path=None):
    """One TLS handshake; returns the DER of the leaf the server presented. With ``ca_path``, the chain must verify
    against it (ssl.SSLCertVerificationError otherwise)."""
    context = _context(endpoint, ca_path)
    timeout = float(endpoint.get('timeout') or DEFAULT_TIMEOUT)
    sock = socket.create_connection((endpoint['host'], int(endpoint['port'])), timeout=timeout)
    try:
        sock.settimeout(timeout)
        with context.wrap_socket(sock, server_hostname=_server_hostname(endpoint)) as tls:
            der = tls.getpeercert(binary_form=True)
    finally:
        sock.close()
    if not der:
        raise Unreachable('the server presented no certificate')
    return der


def fetch(endpoint):
    """The DER of the served leaf, verifying nothing; Unreachable when there is none."""
    try:
        return handshake(endpoint)
    except Unreachable:
        raise
    except (ssl.SSLError, socket.timeout, IOError, OSError, ValueError) as exc:
        raise Unreachable('%s:%s: %s' % (endpoint['host'], endpoint['port'], _reason(exc)))


def verify_chain(endpoint, ca_path, leaf, cas):
    """(verified, problem): a second handshake that verifies the chain against ``ca_path`` (no host-name check).

    OpenSSL checks validity dates too: a leaf refused only because it expired is judged by its signature alone, so
    that its status says expired, not broken. A handshake that fails for another reason than the chain (the server
    refusing the client after the first handshake) leaves the answer unknown (None)."""
    try:
        handshake(endpoint, ca_path)
        return True, None
    except ssl.SSLCertVerificationError as exc:
        if exc.verify_code == _X509_V_ERR_CERT_HAS_EXPIRED:
            if any(crypto.signed_by(leaf, ca) for ca in cas):
                return True, None
        return False, 'chain does not verify against %s: %s' % (ca_path, _reason(exc))
    except Unreachable as exc:
        return None, 'chain not checked: %s' % exc
    except (ssl.SSLError, socket.timeout, IOError, OSError, ValueError) as exc:
        return None, 'chain not checked: the second handshake failed: %s' % _reason(exc)


def file_cert(cert_path):
    """The first certificate of a PEM file (a file may hold the leaf and its chain): (DER, serial hex)."""
    try:
        cert = crypto.load_cert_bundle(files.read_bytes(cert_path), cert_path)[0]
    except (IOError, OSError) as exc:
        raise PkiError('cert_path %s cannot be read: %s' % (cert_path, exc.strerror or exc))
    return cert.public_bytes(crypto.serialization.Encoding.DER), crypto.serial_hex(cert)


def _empty(endpoint):
    return {
        'name': endpoint['name'], 'host': endpoint['host'], 'port': int(endpoint['port']), 'reachable': False,
        'error': None, 'serial': None, 'not_after': None, 'days_remaining': None, 'seconds_remaining': None,
        'fingerprint_sha256': None, 'matches_file': None, 'file_serial': None, 'chain_verified': None,
        'renew_at': None, 'status': 'unreachable',
    }


def inspect_endpoint(endpoint, ca_path=None, cas=None, warn_days=30, now=None, policy=None):
    """One result entry (see cert_expiry's RETURN ``endpoints``); ``policy``: pki_leaf's renewal.RenewalPolicy, for
    the served certificate's renew_at (its name: the cert_path file's, else the endpoint's)."""
    now = now or crypto.utcnow()
    entry = _empty(endpoint)
    try:
        der = fetch(endpoint)
    except Unreachable as exc:
        entry['error'] = str(exc)
        return entry
    entry['reachable'] = True
    try:
        leaf = crypto.x509.load_der_x509_certificate(der)
    except ValueError as exc:
        entry.update(status='broken', error='the served certificate does not parse: %s' % exc)
        return entry
    end = crypto.not_after(leaf)
    seconds = int((end - now).total_seconds())
    entry.update({
        'serial': crypto.serial_hex(leaf), 'not_after': crypto.iso8601(end),
        'days_remaining': crypto.days_remaining(leaf, now), 'seconds_remaining': seconds,
        'fingerprint_sha256': crypto.fingerprint_sha256(leaf),
    })
    if policy is not None:
        name = cert_name(endpoint['cert_path']) if endpoint.get('cert_path') else endpoint['name']
        renew_at = renew_at_of(policy, crypto.not_before(leaf), end, name, entry['serial'],
                               [crypto.not_after(ca) for ca in cas or ()])
        entry['renew_at'] = crypto.iso8601(renew_at) if renew_at else None
    problems, mismatch, notes = [], [], []
    if endpoint.get('cert_path'):
        try:
            file_der, entry['file_serial'] = file_cert(endpoint['cert_path'])
        except PkiError as exc:
            entry['matches_file'] = False
            mismatch.append(str(exc))
        else:
            entry['matches_file'] = hashlib.sha256(file_der).digest() == hashlib.sha256(der).digest()
            if not entry['matches_file']:
                mismatch.append('serves serial %s, not the one of %s (serial %s)'
                                % (entry['serial'], endpoint['cert_path'], entry['file_serial']))
    if ca_path:
        entry['chain_verified'], problem = verify_chain(endpoint, ca_path, leaf, cas or [])
        if problem:
            (problems if entry['chain_verified'] is False else notes).append(problem)
    if crypto.not_before(leaf) > now:
        problems.append('not valid before %s' % crypto.iso8601(crypto.not_before(leaf)))
    # Broken before expired (as for files); an expired leaf is refused now, a mismatch is a roll not done yet.
    if problems:
        entry['status'] = 'broken'
    elif seconds <= 0:
        entry['status'] = 'expired'
    elif mismatch:
        entry['status'] = 'mismatch'
    elif seconds < warn_days * 86400:
        entry['status'] = 'expiring'
    else:
        entry['status'] = 'ok'
    texts = problems + mismatch + notes
    entry['error'] = '; '.join(texts) if texts else None
    return entry


def check_endpoints(endpoints):
    """Refuse what cannot be inspected before any connection (messages name the option)."""
    seen = set()
    for index, endpoint in enumerate(endpoints):
        for option in ('name', 'host', 'port'):
            if endpoint.get(option) in (None, ''):
                raise PkiError('endpoints[%d] has no %s; give name, host and port' % (index, option))
        if endpoint['name'] in seen:
            raise PkiError('endpoints: name %s is given twice; each endpoint needs a name of its own'
                           % endpoint['name'])
        seen.add(endpoint['name'])
        if not 0 < int(endpoint['port']) < 65536:
            raise PkiError('endpoints[%d] (%s): port %s is not a TCP port'
                           % (index, endpoint['name'], endpoint['port']))
        if endpoint.get('client_key') and not endpoint.get('client_cert'):
            raise PkiError('endpoints[%d] (%s): client_key without client_cert; give both or neither'
                           % (index, endpoint['name']))
        if endpoint.get('timeout') is not None and float(endpoint['timeout']) <= 0:
            raise PkiError('endpoints[%d] (%s): timeout must be more than 0' % (index, endpoint['name']))


def inspect_endpoints(endpoints, ca_path=None, warn_days=30, now=None, policy=None):
    """{'endpoints': [entry, ...] in request order, 'endpoint_counts': {status: n}}."""
    check_endpoints(endpoints)
    if warn_days is None or warn_days < 0:
        raise PkiError('warn_days must be 0 or more, not %r' % (warn_days,))
    cas = None
    if ca_path and endpoints:
        try:
            cas = crypto.load_cert_bundle(files.read_bytes(ca_path), ca_path)
        except (IOError, OSError):
            raise PkiError('ca_path %s does not exist or is not a file; point it at the CA certificate or trust bundle'
                           % ca_path)
    now = now or crypto.utcnow()
    if len(endpoints) > 1:
        with ThreadPoolExecutor(max_workers=min(PARALLEL, len(endpoints))) as pool:
            found = list(pool.map(lambda endpoint: inspect_endpoint(endpoint, ca_path, cas, warn_days, now, policy),
                                  endpoints))
    else:
        found = [inspect_endpoint(endpoint, ca_path, cas, warn_days, now, policy) for endpoint in endpoints]
    counts = dict((status, 0) for status in STATUSES)
    for entry in found:
        counts[entry['status']] += 1
    return {'endpoints': found, 'endpoint_counts': counts}
