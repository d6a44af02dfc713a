"""Reference callback API: Flask over HTTPS with the certificate from its .env, client certs optional or required.

.env: API_BIND, API_PORT, API_USE_TLS, API_TLS_CERT, API_TLS_KEY, API_TLS_CA, API_REQUIRE_CLIENT_CERT, API_TLS_CRL
(a PEM file with one CRL per trusted CA: client certificates are then checked against it, and a revoked one is
refused in the handshake), and the TLS policy: API_TLS_MIN_VERSION (TLSv1.2 or TLSv1.3), API_TLS_CIPHERS (TLS 1.2
suites, OpenSSL names) and API_TLS_OPENSSL_CONF (the OpenSSL config with the key-exchange groups, which Python's
ssl before 3.13 cannot set: it must be in OPENSSL_CONF when the process starts; the unit sets it).
  GET  /health            {"status": "ok", "client": <client cert subject or null>}
  POST /callback/report   validation reports from booted servers; answers 202
SIGHUP is not needed: systemd restarts it (a restart costs a second; workers retry callbacks).
"""
import argparse
import os
import ssl
import sys

from flask import Flask, jsonify, request

from fleet_env import read_env, truthy

app = Flask(__name__)
REPORTS = []


def client_subject():
    cert = request.environ.get('fleetpki.peercert')
    if not cert:
        return None
    return ','.join('%s=%s' % pair for rdn in cert.get('subject', ()) for pair in rdn)


@app.route('/health')
def health():
    return jsonify(status='ok', client=client_subject())


@app.route('/callback/report', methods=['POST'])
def report():
    REPORTS.append(request.get_json(silent=True))
    return jsonify(accepted=True, client=client_subject()), 202


class PeerCertMiddleware:
    """Expose the verified client certificate to the views (werkzeug keeps the socket in the environ)."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        sock = environ.get('werkzeug.socket')
        try:
            environ['fleetpki.peercert'] = sock.getpeercert() if sock is not None else None
        except (AttributeError, ValueError):
            environ['fleetpki.peercert'] = None
        return self.wsgi_app(environ, start_response)


# Mozilla's "intermediate" TLS 1.2 suites without DHE: ECDHE with AES-GCM or CHACHA20-POLY1305 only. Python's own
# default list adds CBC suites; used when the .env names none.
INTERMEDIATE_CIPHERS = ('ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:'
                        'ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305')
TLS_VERSIONS = {'TLSv1.2': ssl.TLSVersion.TLSv1_2, 'TLSv1.3': ssl.TLSVersion.TLSv1_3}


def check_openssl_conf(env):
    """The key-exchange groups come from the OpenSSL config that OpenSSL read when this process started: say so
    loudly when the process was started without the one the .env names (it then offers OpenSSL's default groups,
    X448 and P-521 included)."""
    wanted = env.get('API_TLS_OPENSSL_CONF')
    if not wanted:
        return
    if os.environ.get('OPENSSL_CONF') != wanted:
        sys.stderr.write('fleet-api: WARNING: OPENSSL_CONF is %r, not %s (API_TLS_OPENSSL_CONF): the key-exchange '
                         'groups are not restricted. Set Environment=OPENSSL_CONF=%s in the unit and restart.\n'
                         % (os.environ.get('OPENSSL_CONF'), wanted, wanted))
    elif not os.path.isfile(wanted):
        sys.stderr.write('fleet-api: WARNING: %s (OPENSSL_CONF) does not exist: OpenSSL ignored it, the '
                         'key-exchange groups are not restricted.\n' % wanted)


def tls_context(env):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    version = env.get('API_TLS_MIN_VERSION') or 'TLSv1.2'
    if version not in TLS_VERSIONS:
        raise SystemExit('fleet-api: API_TLS_MIN_VERSION is %r; it must be one of %s'
                         % (version, ', '.join(sorted(TLS_VERSIONS))))
    context.minimum_version = TLS_VERSIONS[version]
    try:
        context.set_ciphers(env.get('API_TLS_CIPHERS') or INTERMEDIATE_CIPHERS)
    except ssl.SSLError:
        raise SystemExit('fleet-api: API_TLS_CIPHERS names no cipher suite OpenSSL knows: %r'
                         % env.get('API_TLS_CIPHERS'))
    context.load_cert_chain(env['API_TLS_CERT'], env['API_TLS_KEY'])
    context.load_verify_locations(env['API_TLS_CA'])
    if env.get('API_TLS_CRL'):
        # OpenSSL refuses every client whose CA has no CRL in the file: the pki role keeps one per trusted CA.
        context.load_verify_locations(env['API_TLS_CRL'])
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    context.verify_mode = ssl.CERT_REQUIRED if truthy(env.get('API_REQUIRE_CLIENT_CERT')) else ssl.CERT_OPTIONAL
    return context


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--env', default='/opt/fleet-api/.env')
    args = parser.parse_args()
    env = read_env(args.env)
    app.wsgi_app = PeerCertMiddleware(app.wsgi_app)
    context = None
    if truthy(env.get('API_USE_TLS', 'true')):
        check_openssl_conf(env)
        context = tls_context(env)
    app.run(host=env.get('API_BIND', '0.0.0.0'), port=int(env.get('API_PORT', '8443')), ssl_context=context,
            threaded=True, use_reloader=False)
    return 0


if __name__ == '__main__':
    sys.exit(main())
