# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared fixtures: real keys and certificates made in tmp_path, snapshots of directories, module runner.

Nothing here mocks cryptography; every key is generated at test time and never leaves tmp_path.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import json
import os
import stat
import subprocess

import pytest

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import backup, crypto
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.ca import CaManager
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.leaf import LeafIssuer

UTC = datetime.timezone.utc
# Distinctive so that a leak into any message or output is found by a plain substring search.
PASSPHRASE = 'Pz7-unit-passphrase-q9XK'
WRONG_PASSPHRASE = 'Wr0ng-unit-passphrase-7TTb'


def utcnow():
    return datetime.datetime.now(UTC)


def snapshot(root):
    """{relative path: (kind, mode, content)} of everything under ``root`` (root included)."""
    root = str(root)
    state = {}
    if not os.path.lexists(root):
        return state

    def add(path):
        info = os.lstat(path)
        rel = os.path.relpath(path, root)
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISLNK(info.st_mode):
            state[rel] = ('link', mode, os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            state[rel] = ('dir', mode, None)
        else:
            with open(path, 'rb') as handle:
                state[rel] = ('file', mode, handle.read())

    add(root)
    if os.path.isdir(root):
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                add(os.path.join(dirpath, name))
    return state


def write(path, data, mode=0o644):
    path = str(path)
    with open(path, 'wb') as handle:
        handle.write(data)
    os.chmod(path, mode)


def read(path):
    with open(str(path), 'rb') as handle:
        return handle.read()


def mode_of(path):
    return stat.S_IMODE(os.stat(str(path)).st_mode)


def load_cert(path):
    return x509.load_pem_x509_certificate(read(path))


def load_key(path, passphrase=None):
    return serialization.load_pem_private_key(read(path), password=passphrase.encode() if passphrase else None)


def ext(cert, ext_class):
    return cert.extensions.get_extension_for_class(ext_class)


class Pki:
    """Helpers that build CAs and certificates for the tests (exposed as the ``pki`` fixture)."""

    PASSPHRASE = PASSPHRASE
    WRONG_PASSPHRASE = WRONG_PASSPHRASE
    snapshot = staticmethod(snapshot)
    write = staticmethod(write)
    read = staticmethod(read)
    mode_of = staticmethod(mode_of)
    load_cert = staticmethod(load_cert)
    load_key = staticmethod(load_key)
    ext = staticmethod(ext)
    now = staticmethod(utcnow)

    @staticmethod
    def make_ca(directory, **kwargs):
        """A CA made the production way (CaManager plan + apply)."""
        manager = CaManager(str(directory), **kwargs)
        manager.plan()
        manager.apply()
        return manager

    @staticmethod
    def hand_ca(directory, not_before, not_after, common_name='Hand Made CA', key=None, key_usage=True):
        """A CA built directly with cryptography (any dates), written as ca-key.pem / ca-cert.pem."""
        directory = str(directory)
        if not os.path.isdir(directory):
            os.makedirs(directory)
        key = key or ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        builder = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(ski, critical=False)
        )
        if key_usage:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
                critical=True)
        cert = crypto.sign(builder, key)
        write(os.path.join(directory, 'ca-key.pem'), crypto.private_key_pem(key), 0o600)
        write(os.path.join(directory, 'ca-cert.pem'), crypto.cert_pem(cert), 0o644)
        return key, cert

    @staticmethod
    def hand_leaf(directory, name, ca_key, ca_cert, not_before, not_after, dns=('host.example.com',),
                  key=None, usage=(ExtendedKeyUsageOID.SERVER_AUTH,)):
        """A leaf built directly with cryptography, written as <name>-cert.pem (0644) and <name>-key.pem (0600)."""
        directory = str(directory)
        if not os.path.isdir(directory):
            os.makedirs(directory)
        key = key or ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(list(usage)), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(value) for value in dns]), critical=False)
        )
        cert = crypto.sign(builder, ca_key)
        cert_path = os.path.join(directory, '%s-cert.pem' % name)
        key_path = os.path.join(directory, '%s-key.pem' % name)
        write(cert_path, crypto.cert_pem(cert), 0o644)
        write(key_path, crypto.private_key_pem(key), 0o600)
        return cert_path, key_path

    @staticmethod
    def issue(ca_dir, certs, **kwargs):
        """Run a LeafIssuer; returns (issuer, {name: result})."""
        check_mode = kwargs.pop('check_mode', False)
        ca_planned = kwargs.pop('ca_planned', False)
        issuer = LeafIssuer(str(ca_dir), certs, **kwargs)
        results = issuer.run(check_mode=check_mode, ca_planned=ca_planned)
        return issuer, dict((entry['name'], entry) for entry in results)

    @staticmethod
    def openssl_verify(ca_path, cert_path, purpose=None, strict=True):
        argv = ['openssl', 'verify']
        if strict:
            argv.append('-x509_strict')
        if purpose:
            argv += ['-purpose', purpose]
        argv += ['-CAfile', str(ca_path), str(cert_path)]
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
        return proc.returncode, proc.stdout.decode('utf-8', 'replace')

    @staticmethod
    def expect_error(action, root, *needles):
        """``action()`` must raise PkiError naming every needle, leaving ``root`` byte-identical; returns the message."""
        before = snapshot(root)
        with pytest.raises(PkiError) as caught:
            action()
        message = str(caught.value)
        for needle in needles:
            assert str(needle) in message, 'message %r lacks %r' % (message, str(needle))
        assert PASSPHRASE not in message
        assert WRONG_PASSPHRASE not in message
        assert snapshot(root) == before, 'files changed although the call failed: %s' % message
        return message


@pytest.fixture
def pki():
    return Pki()


@pytest.fixture
def fast_scrypt(monkeypatch):
    """A cheaper scrypt for the backup tests; the archive header records the cost, so reading is the same path."""
    monkeypatch.setattr(backup, 'SCRYPT_N_LOG2', 12)


@pytest.fixture
def ca_dir(tmp_path):
    """A fresh ec-p256 CA made by CaManager, as a str path."""
    directory = str(tmp_path / 'ca')
    Pki.make_ca(directory)
    return directory


@pytest.fixture
def out_dir(tmp_path):
    return str(tmp_path / 'issued')


class ModuleRun:
    def __init__(self, rc, result, stdout):
        self.rc = rc
        self.result = result
        self.stdout = stdout

    @property
    def warnings(self):
        """Warning texts: plain strings before ansible-core 2.19, WarningSummary dicts since."""
        texts = []
        for warning in self.result.get('warnings') or []:
            if isinstance(warning, dict):
                warning = (warning.get('event') or {}).get('msg', warning.get('msg'))
            texts.append(warning)
        return texts


@pytest.fixture
def run_module(capsys, monkeypatch):
    """Run a module's main() in-process with the given args; returns ModuleRun(rc, parsed JSON, raw stdout)."""
    try:
        from ansible.module_utils.testing import patch_module_args
    except ImportError:  # ansible-core < 2.19
        patch_module_args = None

    def run(module, args, check_mode=False, diff=False):
        args = dict(args)
        if check_mode:
            args['_ansible_check_mode'] = True
        if diff:
            args['_ansible_diff'] = True
        capsys.readouterr()
        # A real module run is a fresh process; in-process runs must not inherit the previous run's warnings.
        from ansible.module_utils.common import warnings as ansible_warnings
        for name in ('_global_warnings', '_global_deprecations'):
            registry = getattr(ansible_warnings, name, None)
            if registry is not None:
                registry.clear()
        # Nor is it the controller: once controller code is imported (a filter plugin's test does), 2.19 sends
        # module warnings to the controller's display instead of the module result.
        try:
            from ansible.module_utils import _internal as module_internal
        except ImportError:  # ansible-core < 2.19
            module_internal = None
        if module_internal is not None and getattr(module_internal, 'is_controller', False):
            monkeypatch.setattr(module_internal, 'is_controller', False)
        if patch_module_args is not None:
            context = patch_module_args(args)
        else:
            from unittest import mock
            from ansible.module_utils import basic
            from ansible.module_utils.common.text.converters import to_bytes
            context = mock.patch.object(basic, '_ANSIBLE_ARGS', to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': args})))
        with context:
            with pytest.raises(SystemExit) as caught:
                module.main()
        out = capsys.readouterr().out
        return ModuleRun(caught.value.code or 0, json.loads(out), out)

    return run


class TlsServer:
    """A real TLS server on 127.0.0.1 in a thread: each accepted connection does a handshake and is closed.

    ``client_ca`` set: a client certificate from that CA is required. ``max_version``: e.g. ssl.TLSVersion.TLSv1_2.
    ``seen_sni`` collects the server name each client sent (None without SNI).
    """

    def __init__(self, cert_path, key_path, client_ca=None, max_version=None):
        import socket
        import ssl
        import threading
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_path, key_path)
        if client_ca:
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.load_verify_locations(cafile=client_ca)
        if max_version is not None:
            self.context.maximum_version = max_version
        self.seen_sni = []
        self.context.sni_callback = lambda sock, name, ctx: self.seen_sni.append(name)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.handshakes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        import socket
        import ssl
        while not self._stop.is_set():
            try:
                conn, dummy = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(5)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    self.handshakes += 1
                    try:
                        tls.recv(1)  # let the client close first (TLS 1.3 tickets, a client refused after it)
                    except (ssl.SSLError, OSError):
                        pass
            except (ssl.SSLError, OSError):
                conn.close()

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self.listener.close()


@pytest.fixture
def tls_server():
    """tls_server(cert_path, key_path, client_ca=None, max_version=None) -> a started TlsServer, closed after."""
    servers = []

    def start(*args, **kwargs):
        servers.append(TlsServer(*args, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    import socket
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


# SoftHSM2 (Debian's softhsm2) for the PKCS#11 path: a token directory of the test session's own.
SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so'


def _init_token(module_path, label, so_pin, user_pin):
    """A new token in the first free slot, its PINs in this process only: softhsm2-util takes them on its command
    line or from a terminal, and python-pkcs11 has no C_InitToken, so it is called through ctypes on the library
    python-pkcs11 loaded (the same handle, already initialised)."""
    import ctypes
    import pkcs11
    from pkcs11 import TokenFlag
    library = pkcs11.lib(os.path.realpath(module_path))
    free = [slot for slot in library.get_slots(token_present=True)
            if not slot.get_token().flags & TokenFlag.TOKEN_INITIALIZED][0]
    init_token = ctypes.CDLL(os.path.realpath(module_path)).C_InitToken
    init_token.restype = ctypes.c_ulong
    init_token.argtypes = [ctypes.c_ulong, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    assert init_token(free.slot_id, so_pin.encode(), len(so_pin), label.encode().ljust(32, b' ')) == 0
    with library.get_token(token_label=label).open(rw=True, so_pin=so_pin) as session:
        session.init_pin(user_pin)


@pytest.fixture(scope='session')
def softhsm(tmp_path_factory):
    """{'module', 'pin', 'new_token'()}: SoftHSM2 with a token directory of this session (SOFTHSM2_CONF names a
    file, no secret); new_token() initialises a token of a new label and returns the label. Missing softhsm2 or
    python-pkcs11 fails the test (CI installs both: .ci/run, requirements-dev.txt)."""
    if not os.path.exists(SOFTHSM_MODULE):
        pytest.fail('%s is missing: apt-get install softhsm2' % SOFTHSM_MODULE)
    try:
        import pkcs11
    except ImportError:
        pytest.fail('python-pkcs11 is missing: pip install -r requirements-dev.txt')
    base = tmp_path_factory.mktemp('softhsm')
    (base / 'tokens').mkdir()
    conf = base / 'softhsm2.conf'
    conf.write_text('directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' % (base / 'tokens'))
    os.environ['SOFTHSM2_CONF'] = str(conf)
    # SoftHSM2 reads its configuration when initialised: once per process, so again here for this session's one.
    pkcs11.lib(os.path.realpath(SOFTHSM_MODULE)).reinitialize()
    labels = []

    def new_token():
        label = 'fleetpki-unit-%d' % len(labels)
        _init_token(SOFTHSM_MODULE, label, 'so-' + TOKEN_PIN, TOKEN_PIN)
        labels.append(label)
        return label

    return {'module': SOFTHSM_MODULE, 'pin': TOKEN_PIN, 'new_token': new_token}


# Distinctive, like PASSPHRASE: a leak into a message is found by a substring search.
TOKEN_PIN = 'Hs9-unit-token-pin-4RvQ'
