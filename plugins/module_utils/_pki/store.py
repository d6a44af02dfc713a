# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The CA directory and everything in it: the one owner of its files.

Names and modes of every file, the lock that serialises runs, staged (temp + rename) writes, the retired/ area,
``metadata.json`` with its journal, ``revoked.json`` and ``crl.pem``. ca, leaf, crl and backup reach the CA
directory only through this module. Time and serial formats are crypto's (``iso8601``, ``parse_iso8601``,
``file_stamp``, ``serial_hex``, ``normalise_serial``); atomic writes and the lock itself are files'.

Imports only downwards: errors, crypto, files.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import glob
import hashlib
import json
import os

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto, files
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError

CA_KEY_NAME = 'ca-key.pem'
CA_CERT_NAME = 'ca-cert.pem'
# In place of ca-key.pem when the CA key lives in a PKCS#11 token: which module, token and key label (no secret).
CA_KEY_REF_NAME = 'ca-key.pkcs11.json'
KEY_REF_FIELDS = ('module', 'token_label', 'key_label')
METADATA_NAME = 'metadata.json'
# Serials are appended here before their cert goes live, and folded into metadata.json when it is saved:
# a run killed in between loses no serial from the history (revocation needs every one).
JOURNAL_NAME = 'metadata.journal'
REVOKED_NAME = 'revoked.json'
CRL_NAME = 'crl.pem'
RETIRED_DIR = 'retired'
METADATA_FORMAT = 1

KEY_MODE = 0o600     # every private key, the CA's and each leaf's
PUBLIC_MODE = 0o644  # certificates, bundles, CRL, records
DIR_MODE = 0o700     # the CA directory and retired/

# Per cert in metadata.json: a digest of its key, cert and bundle bytes and of the CA that issued it, taken when they
# were issued or last fully checked. A rerun whose files still hash to it skips parsing them and verifying the
# signature and key (the costly part of re-checking a fleet); any changed byte, or another CA, gets the full check.
FILES_DIGEST = 'files_sha256'

# Certificates and CRLs start slightly in the past so a host whose clock lags accepts them at once.
BACKDATE = datetime.timedelta(minutes=5)


class CaStore:
    """The files of one CA directory."""

    def __init__(self, directory):
        self.directory = directory
        self.key_path = self.path(CA_KEY_NAME)
        self.key_ref_path = self.path(CA_KEY_REF_NAME)
        self.cert_path = self.path(CA_CERT_NAME)
        self.metadata_path = self.path(METADATA_NAME)
        self.revoked_path = self.path(REVOKED_NAME)
        self.crl_path = self.path(CRL_NAME)
        self.retired_dir = self.path(RETIRED_DIR)

    def path(self, name):
        return os.path.join(self.directory, name)

    # -- the directory -------------------------------------------------------------------------------------------

    def lock(self):
        """Serialises runs on this CA directory (an flock on the directory itself, no lock file)."""
        return files.DirectoryLock(self.directory)

    def create(self):
        files.ensure_dir(self.directory, DIR_MODE)

    def unwritable_reason(self):
        return files.unwritable_reason(self.directory)

    def remove_stale_temps(self):
        files.remove_stale_temps(self.directory)

    def sync(self):
        files.fsync_dir(self.directory)

    # -- the CA key and certificate ------------------------------------------------------------------------------

    def ca_files_present(self):
        """(a CA key is there: ca-key.pem or the reference to a token's key, ca-cert.pem is there)."""
        return (os.path.lexists(self.key_path) or os.path.lexists(self.key_ref_path)), os.path.lexists(self.cert_path)

    def ca_absent(self):
        """Neither the CA key nor its certificate is there: a CA not made yet (not a damaged one)."""
        return self.ca_files_present() == (False, False)

    def read_ca_cert(self):
        """The bytes of ca-cert.pem, or None when there is no such file."""
        return files.read_bytes(self.cert_path) if os.path.isfile(self.cert_path) else None

    def read_ca_key(self):
        """The bytes of ca-key.pem, or None when there is no such file."""
        return files.read_bytes(self.key_path) if os.path.isfile(self.key_path) else None

    def read_ca_key_ref(self):
        """{module, token_label, key_label} of a CA key in a PKCS#11 token, or None when the key is a file."""
        if not os.path.isfile(self.key_ref_path):
            return None
        try:
            data = json.loads(files.read_bytes(self.key_ref_path).decode('utf-8'))
        except ValueError:
            data = None
        if not isinstance(data, dict) or any(not isinstance(data.get(field), str) or not data[field]
                                             for field in KEY_REF_FIELDS):
            raise PkiError('%s does not name the CA key\'s token (a JSON object of %s); restore it from a backup'
                           % (self.key_ref_path, ', '.join(KEY_REF_FIELDS)))
        if os.path.exists(self.key_path):
            raise PkiError('%s and %s are both there: the CA key is either a file or in a token; keep the one that '
                           'matches %s' % (self.key_path, self.key_ref_path, self.cert_path))
        return dict((field, data[field]) for field in KEY_REF_FIELDS)

    def _key_file(self):
        return self.key_ref_path if os.path.lexists(self.key_ref_path) else self.key_path

    def key_mode_ok(self):
        return files.file_mode(self._key_file()) == KEY_MODE

    def fix_key_mode(self):
        os.chmod(self._key_file(), KEY_MODE)

    def stage_ca(self, key_pem=None, cert_pem=None, key_ref=None):
        """Temp files beside the CA files, at their final modes: [(temp path, final path)] for install()."""
        staged = []
        if key_pem is not None:
            staged.append((files.write_temp(self.directory, CA_KEY_NAME, key_pem, KEY_MODE), self.key_path))
        if key_ref is not None:
            text = json.dumps(dict((field, key_ref[field]) for field in KEY_REF_FIELDS), indent=2, sort_keys=True)
            staged.append((files.write_temp(self.directory, CA_KEY_REF_NAME, (text + '\n').encode(), KEY_MODE),
                           self.key_ref_path))
        if cert_pem is not None:
            staged.append((files.write_temp(self.directory, CA_CERT_NAME, cert_pem, PUBLIC_MODE), self.cert_path))
        return staged

    def install(self, staged):
        for tmp_path, path in staged:
            os.rename(tmp_path, path)
        self.sync()

    def retire(self, paths, now):
        """Move ``paths`` (CA files being replaced) under retired/ with a time stamp; never delete them.

        Returns where the last one went.
        """
        files.ensure_dir(self.retired_dir, DIR_MODE)
        base = stamp = crypto.file_stamp(now)
        count = 1
        # Two replacements within one second must not rename over (and so delete) the CA retired first.
        while any(os.path.lexists(os.path.join(self.retired_dir, '%s-%s' % (stamp, name)))
                  for name in (CA_KEY_NAME, CA_KEY_REF_NAME, CA_CERT_NAME)):
            count += 1
            stamp = '%s-%d' % (base, count)
        moved = None
        for path in paths:
            if os.path.lexists(path):
                moved = os.path.join(self.retired_dir, '%s-%s' % (stamp, os.path.basename(path)))
                os.rename(path, moved)
        return moved

    def read_retired_certs(self):
        """[(path, PEM bytes)] of the CA certificates kept under retired/ (renewed or replaced), oldest first."""
        paths = sorted(glob.glob(os.path.join(self.retired_dir, '*-' + CA_CERT_NAME)))
        return [(path, files.read_bytes(path)) for path in paths]

    # -- revocations and the CRL ---------------------------------------------------------------------------------

    def read_revoked(self):
        """revoked.json as {'crl_number': int, 'revoked': [entries]}; a missing file means nothing revoked yet."""
        path = self.revoked_path
        if not os.path.exists(path):
            return {'crl_number': 0, 'revoked': []}
        try:
            data = json.loads(files.read_bytes(path).decode('utf-8'))
        except ValueError:
            raise PkiError('%s is not valid JSON; restore it from a backup (it is the record of revocations)' % path)
        if not isinstance(data, dict) or not isinstance(data.get('revoked'), list):
            raise PkiError('%s is not a fleetpki revocation record (no "revoked" list); restore it from a backup'
                           % path)
        data.setdefault('crl_number', 0)
        return data

    def revoked_serials(self):
        return set(entry['serial'] for entry in self.read_revoked()['revoked'])

    def read_crl(self):
        """The PEM bytes of crl.pem, or None when there is none."""
        if not os.path.exists(self.crl_path):
            return None
        return files.read_bytes(self.crl_path)

    def write_revocations(self, record, crl_pem):
        """The record first: a CRL is never published for revocations that are not recorded."""
        files.atomic_write(self.revoked_path, (json.dumps(record, indent=2, sort_keys=True) + '\n').encode(),
                           PUBLIC_MODE)
        files.atomic_write(self.crl_path, crl_pem, PUBLIC_MODE)

    # -- metadata ------------------------------------------------------------------------------------------------

    def metadata(self):
        return Metadata(self.directory).load()


def files_digest(ca_file_sha256, key_data, cert_data, bundle_data):
    """SHA-256 (hex) over the SHA-256 of the issuing CA's certificate file and the exact bytes of a leaf's key, cert
    and bundle. The CA is known by its file's bytes, not its parsed fingerprint, so that a rerun whose files all
    match parses nothing (the same certificate in other bytes is taken for another CA: a full check, no harm).

    Each part is length-prefixed so no two different sets of files hash alike by moving bytes between them. One
    digest over all (not one per file): metadata.json is world-readable and holds no hash of the key alone.
    """
    digest = hashlib.sha256(b'fleetpki leaf files v1\0')
    for part in (crypto.to_bytes(ca_file_sha256), key_data, cert_data, bundle_data):
        digest.update(b'%d\0' % len(part))
        digest.update(part)
    return digest.hexdigest()


def cert_facts(cert, fingerprint=None):
    """What metadata.json records of a cert; ``fingerprint`` when the caller has it already."""
    dns, ips = crypto.sans(cert)
    return {
        'serial': crypto.serial_hex(cert),
        'subject': crypto.subject_string(cert),
        'common_name': crypto.common_name(cert),
        'dns': dns,
        'ip': ips,
        'usage': crypto.usage_of(cert),
        'key_type': crypto.key_type_of(cert.public_key()),
        'not_before': crypto.iso8601(crypto.not_before(cert)),
        'not_after': crypto.iso8601(crypto.not_after(cert)),
        'fingerprint_sha256': fingerprint or crypto.fingerprint_sha256(cert),
    }


class Metadata:
    """metadata.json in the CA dir: per cert name, the current cert and the history of every serial issued."""

    def __init__(self, ca_dir):
        self.path = os.path.join(ca_dir, METADATA_NAME)
        self.journal_path = os.path.join(ca_dir, JOURNAL_NAME)
        self.data = {'format': METADATA_FORMAT, 'certs': {}}
        self.dirty = False
        self._journal_fd = None

    def load(self):
        if os.path.exists(self.path):
            self._load_file()
        self._merge_journal()
        return self

    def _load_file(self):
        try:
            data = json.loads(files.read_bytes(self.path).decode('utf-8'))
        except ValueError:
            raise PkiError('%s is not valid JSON; restore it from a backup, or move it aside to rebuild it from '
                           'the certificates on disk (the history of revoked serials would be lost)' % self.path)
        if not isinstance(data, dict) or not isinstance(data.get('certs'), dict):
            raise PkiError('%s is not a fleetpki metadata file (no "certs" map); restore it from a backup'
                           % self.path)
        self.data = data

    def _merge_journal(self):
        """Fold in the serials a killed run issued but did not save (in memory; saved with the next write)."""
        try:
            lines = files.read_bytes(self.journal_path).splitlines()
        except (IOError, OSError):
            return
        for line in lines:
            try:
                item = json.loads(line.decode('utf-8'))
            except ValueError:
                continue  # the last line of a killed run may be cut short
            name = item.pop('name', None)
            if name and self._add_history(self.data['certs'].setdefault(name, {'history': []}), item):
                self.dirty = True

    @staticmethod
    def _add_history(entry, item):
        history = entry.setdefault('history', [])
        if any(known.get('serial') == item.get('serial') for known in history):
            return False
        history.append(item)
        return True

    @staticmethod
    def history_item(cert, ca_fingerprint, reason, issued_at, fingerprint=None, not_after=None):
        """One serial's history record; the CA's fingerprint (and the cert's, when known) computed by the caller
        once per run, not per cert; ``not_after``: iso8601() of the cert's end, when the issuer has it."""
        return {
            'serial': crypto.serial_hex(cert),
            'not_after': not_after or crypto.iso8601(crypto.not_after(cert)),
            'fingerprint_sha256': fingerprint or crypto.fingerprint_sha256(cert),
            'ca_fingerprint_sha256': ca_fingerprint,
            'issued_at': issued_at,
            'reason': reason,
        }

    def journal(self, name, item):
        """Append one issued serial to the journal (one write; survives a SIGKILL of this process)."""
        if self._journal_fd is None:
            self._journal_fd = os.open(self.journal_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PUBLIC_MODE)
        line = json.dumps(dict(item, name=name), sort_keys=True) + '\n'
        os.write(self._journal_fd, line.encode('utf-8'))

    def names(self):
        return sorted(self.data['certs'])

    def serial_owners(self):
        """{serial: name} of every serial ever recorded."""
        owners = {}
        for name, entry in self.data['certs'].items():
            for item in entry.get('history') or []:
                owners[item.get('serial')] = name
            if entry.get('serial'):
                owners[entry['serial']] = name
        return owners

    def unexpired_serials(self, name, now):
        """Every serial of ``name`` a client could still accept: its current one and each one in its history that
        has not expired (an earlier cert of the name may still sit on a host). Empty for an unknown name."""
        entry = self.data['certs'].get(name) or {}
        serials = []
        for item in entry.get('history') or []:
            serial = item.get('serial')
            if serial and serial not in serials and not _expired(item.get('not_after'), now):
                serials.append(serial)
        if entry.get('serial') and entry['serial'] not in serials:
            serials.append(entry['serial'])
        return serials

    def current_serial(self, name):
        return (self.data['certs'].get(name) or {}).get('serial')

    def entry(self, name):
        """The record of cert ``name`` (a dict, not to be changed by the caller), or None."""
        return self.data['certs'].get(name)

    def record(self, request, cert, ca_fingerprint, item, files_sha256=None, facts=None):
        """Make ``cert`` the current one of ``request.name``; ``item`` is its history_item (already journaled).

        ``files_sha256``: files_digest() of the files as written; None leaves the name without one (full check
        on the next run). ``facts``: cert_facts() of a cert this run built, when the issuer has them without
        parsing it back.
        """
        entry = self.data['certs'].get(request.name) or {'history': []}
        self._add_history(entry, item)
        history = entry['history']
        entry.update(facts or cert_facts(cert, item['fingerprint_sha256']))
        entry.update({
            'ca_fingerprint_sha256': ca_fingerprint,
            'key_path': request.key_path,
            'cert_path': request.cert_path,
            'bundle_path': request.bundle_path,
            'history': history,
        })
        if files_sha256:
            entry[FILES_DIGEST] = files_sha256
        else:
            entry.pop(FILES_DIGEST, None)
        self.data['certs'][request.name] = entry
        self.dirty = True

    def set_files_digest(self, name, files_sha256):
        """Record the digest of a cert the run fully checked and found valid; does not make the file dirty: it is
        only written along with a change (an up-to-date run writes nothing)."""
        entry = self.data['certs'].get(name)
        if entry is not None:
            entry[FILES_DIGEST] = files_sha256

    def save(self, ca):
        self.data['format'] = METADATA_FORMAT
        self.data['ca'] = {
            'subject': crypto.subject_string(ca.cert),
            'serial': crypto.serial_hex(ca.cert),
            'fingerprint_sha256': crypto.fingerprint_sha256(ca.cert),
            # pki_leaf's rerun answers ca_not_after from here, without parsing the CA, when its file has these bytes.
            'not_after': crypto.iso8601(ca.not_after),
            'cert_sha256': hashlib.sha256(ca.cert_pem).hexdigest(),
        }
        files.atomic_write(self.path, self._payload(), PUBLIC_MODE)
        self.dirty = False
        # Everything the journal held is in metadata.json now (a kill before this unlink only re-merges it).
        self.close_journal()
        if os.path.exists(self.journal_path):
            os.unlink(self.journal_path)

    def _payload(self):
        """metadata.json: one line per cert (readable and diffable) and json's C encoder (indent= would use its
        pure-Python one: a third of a 1000-cert first run)."""
        certs = self.data['certs']
        lines = ['{"certs": {']
        names = sorted(certs)
        for index, name in enumerate(names):
            lines.append('%s: %s%s' % (json.dumps(name), json.dumps(certs[name], sort_keys=True),
                                       ',' if index < len(names) - 1 else ''))
        rest = dict((key, value) for key, value in self.data.items() if key != 'certs')
        tail = json.dumps(rest, sort_keys=True)[1:]  # '"ca": {...}, "format": 1}' (or '}' when empty)
        lines.append('}' + (', ' + tail if tail != '}' else '}'))
        return ('\n'.join(lines) + '\n').encode('utf-8')

    def close_journal(self):
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None


def _expired(not_after, now):
    try:
        return crypto.parse_iso8601(not_after) <= now
    except (TypeError, ValueError):
        return False  # an unreadable date: count it as live rather than miss a revocation
