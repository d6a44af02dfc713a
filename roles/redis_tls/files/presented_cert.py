"""Open a new mTLS connection and check the server presents the certificate in a file (standard library only).

  presented_cert.py HOST PORT CA_FILE CLIENT_CERT CLIENT_KEY EXPECTED_CERT
Exit 0 when the presented certificate is the expected one, 1 when it is another, 2 when no handshake.
"""
import hashlib
import socket
import ssl
import sys


def fingerprint(der):
    return hashlib.sha256(der).hexdigest()


def main(host, port, ca_file, cert_file, key_file, expected_file):
    with open(expected_file) as handle:
        expected = ssl.PEM_cert_to_DER_cert(handle.read())
    context = ssl.create_default_context(cafile=ca_file)
    context.check_hostname = False  # the certificate itself is compared below
    context.load_cert_chain(cert_file, key_file)
    try:
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                presented = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError) as exc:
        print('no TLS handshake with %s:%s: %s' % (host, port, exc))
        return 2
    if presented != expected:
        print('%s:%s presents sha256 %s, the file %s holds sha256 %s'
              % (host, port, fingerprint(presented), expected_file, fingerprint(expected)))
        return 1
    print('%s:%s presents %s (sha256 %s)' % (host, port, expected_file, fingerprint(expected)))
    return 0


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:7]))
