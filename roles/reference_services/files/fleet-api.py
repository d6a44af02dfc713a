"""Reference callback API: Flask over HTTPS with the certificate from its .env, client certs optional or required.

.env: API_BIND, API_PORT, API_USE_TLS, API_TLS_CERT, API_TLS_KEY, API_TLS_CA, API_REQUIRE_CLIENT_CERT, API_TLS_CRL
(a PEM file with one CRL per trusted CA: client certificates are then checked against it, and a revoked one is
refused in the handshake).
  GET  /health            {"status": "ok", "client": <client cert subject or null>}
  POST /callback/report   validation reports from booted servers; answers 202
SIGHUP is not needed: systemd restarts it (a restart costs a second; workers retry callbacks).
"""
import argparse
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


def tls_context(env):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
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
    context = tls_context(env) if truthy(env.get('API_USE_TLS', 'true')) else None
    app.run(host=env.get('API_BIND', '0.0.0.0'), port=int(env.get('API_PORT', '8443')), ssl_context=context,
            threaded=True, use_reloader=False)
    return 0


if __name__ == '__main__':
    sys.exit(main())
