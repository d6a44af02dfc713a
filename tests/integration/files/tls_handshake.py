# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One real mutual-TLS handshake and a small echo over 127.0.0.1, with the standard library only.

The server listens on an ephemeral port with the given certificate and key and requires a client certificate
signed by --server-ca. The client trusts --client-ca, checks the server's name against --hostname
(check_hostname=True) and presents its own certificate and key.

Exit status: 0 when both handshakes and the echo succeed; 1 when either side fails with a TLS or connection
error (each side's exception class and message are printed); 3 on a timeout; 2 on bad arguments.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import socket
import ssl
import sys
import threading

TIMEOUT = 5.0
PAYLOAD = b'fleetpki-mtls-echo\n'


def describe(exc):
    return '%s: %s' % (type(exc).__name__, exc)


def server_context(cert, key, ca):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(cert, key)
    context.load_verify_locations(cafile=ca)
    return context


def client_context(cert, key, ca):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=ca)
    context.load_cert_chain(cert, key)
    return context


def serve_once(listener, context, outcome):
    """Accept one connection, complete the handshake, echo one line back."""
    try:
        conn, _address = listener.accept()
        conn.settimeout(TIMEOUT)
        with context.wrap_socket(conn, server_side=True) as tls:
            outcome['server_version'] = tls.version()
            peer = tls.getpeercert()
            outcome['client_subject'] = dict(item[0] for item in peer.get('subject', ()))
            data = b''
            while not data.endswith(b'\n'):
                chunk = tls.recv(1024)
                if not chunk:
                    break
                data += chunk
            tls.sendall(data)
        outcome['server'] = 'ok'
    except Exception as exc:  # pylint: disable=broad-except
        outcome['server'] = exc


def connect(port, context, hostname, outcome):
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT) as raw:
            with context.wrap_socket(raw, server_hostname=hostname) as tls:
                outcome['client_version'] = tls.version()
                tls.sendall(PAYLOAD)
                # In TLS 1.3 the server checks the client certificate after the client's handshake is done:
                # its rejection only shows up here, as an alert on the first read.
                data = b''
                while not data.endswith(b'\n'):
                    chunk = tls.recv(1024)
                    if not chunk:
                        break
                    data += chunk
        if data != PAYLOAD:
            raise ConnectionError('echo mismatch: sent %r, got %r' % (PAYLOAD, data))
        outcome['client'] = 'ok'
    except Exception as exc:  # pylint: disable=broad-except
        outcome['client'] = exc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--server-cert', required=True)
    parser.add_argument('--server-key', required=True)
    parser.add_argument('--server-ca', required=True, help='CA the server trusts for client certificates')
    parser.add_argument('--client-cert', required=True)
    parser.add_argument('--client-key', required=True)
    parser.add_argument('--client-ca', required=True, help='CA the client trusts for the server certificate')
    parser.add_argument('--hostname', default='localhost', help='name the client expects the server to have')
    args = parser.parse_args(argv)

    try:
        server_ctx = server_context(args.server_cert, args.server_key, args.server_ca)
        client_ctx = client_context(args.client_cert, args.client_key, args.client_ca)
    except (ssl.SSLError, OSError) as exc:
        print('setup failed: %s' % describe(exc))
        return 2

    outcome = {}
    port = None
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(('127.0.0.1', 0))
        listener.listen(1)
        listener.settimeout(TIMEOUT)
        port = listener.getsockname()[1]
        server = threading.Thread(target=serve_once, args=(listener, server_ctx, outcome))
        server.daemon = True
        server.start()
        connect(port, client_ctx, args.hostname, outcome)
        server.join(TIMEOUT * 2)
        if server.is_alive():
            outcome['server'] = TimeoutError('server thread still running after %.0f s' % (TIMEOUT * 2))
    finally:
        listener.close()

    print('port: %s, expected hostname: %s' % (port, args.hostname))
    timed_out = False
    for side in ('server', 'client'):
        result = outcome.get(side, 'no result')
        if isinstance(result, BaseException):
            timed_out = timed_out or isinstance(result, (socket.timeout, TimeoutError))
            print('%s: FAILED %s' % (side, describe(result)))
        else:
            print('%s: %s (%s)' % (side, result, outcome.get(side + '_version')))
    if outcome.get('server') == 'ok' and outcome.get('client') == 'ok':
        print('handshake ok: mutual TLS with %s, client %s'
              % (outcome.get('client_version'), outcome.get('client_subject')))
        return 0
    if timed_out:
        print('handshake TIMEOUT')
        return 3
    print('handshake FAILED')
    return 1


if __name__ == '__main__':
    sys.exit(main())
