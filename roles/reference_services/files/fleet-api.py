"""Reference callback API: Flask over HTTPS with the certificate from its .env, client certs optional or required.

.env: API_BIND, API_PORT, API_USE_TLS, API_TLS_CERT, API_TLS_KEY, API_TLS_CA, API_REQUIRE_CLIENT_CERT,
API_CLIENT_CERT_ROUTES (the client-certificate policy per route, below), API_TLS_CRL
(a PEM file with one CRL per trusted CA: client certificates are then checked against it, and a revoked one is
refused in the handshake), and the TLS policy: API_TLS_MIN_VERSION (TLSv1.2 or TLSv1.3), API_TLS_CIPHERS (TLS 1.2
suites, OpenSSL names) and API_TLS_OPENSSL_CONF (the OpenSSL config with the key-exchange groups, which Python's
ssl before 3.13 cannot set: it must be in OPENSSL_CONF when the process starts; the unit sets it).
  GET  /health                      {"status": "ok", "client": <client cert subject or null>}
  POST /callback/report             reports of the fleet's own services; answers 202
  POST /api/v1/validation/report    validation reports from PXE-booted machines (the seed's image); answers 202
  POST /api/v1/enroll               enrollment of a PXE-booted machine (below); answers 201 with its certificate

Enrollment (on when API_ENROLL_CA_CERT is set): a machine posts {"token", "machine", "csr"} (its one-time token
from playbooks/enrollment_token.yml, its MAC or serial, and a PKCS#10 request, PEM or base64 DER, for a key it made
in memory) and gets a client certificate valid API_ENROLL_CERT_HOURS hours (default 4), named
mac-<12 hex digits> or sn-<serial> under the DNS suffix of the enrollment CA (API_ENROLL_CA_CERT, API_ENROLL_CA_KEY),
as PEM with that CA's certificate after it. API_ENROLL_TOKENS is the directory of the tokens' records
(fleet_enroll.py). A token works once, for its machine only, before it expires; every refusal is logged with its
reason (never the token) and answered 400 (a malformed request), 403 (unknown, expired or another machine's token),
409 (used) or 503 (the enrollment CA cannot sign: nothing is used up).
The enrollment CA is a trust anchor of its own that only this API trusts (no other host has it): its certificates
are accepted on API_ENROLL_ROUTES only (path prefixes, default /api/v1/validation), and refused (403) elsewhere.

Client certificates per route: API_CLIENT_CERT_ROUTES is a comma-separated list of "<path prefix>=required" or
"<path prefix>=optional" (whole path segments; the longest matching prefix wins); a route it does not name follows
API_REQUIRE_CLIENT_CERT. When any route is optional, the handshake asks for a client certificate without insisting
(one that is presented is still verified against the CA bundle and the CRL, and a bad one ends the handshake), and
a request without one to a route that requires it gets 403. The default of the api_tls role lets a booted machine
post /api/v1/validation/ with curl --cacert alone, while every other route needs a client certificate.

SIGHUP (systemctl reload, the unit's ExecReload) reloads the certificate, key, CA bundle and CRL and the .env's TLS
settings (API_TLS_MIN_VERSION, API_TLS_CIPHERS, API_REQUIRE_CLIENT_CERT, API_TLS_CRL on or off, the paths) without
dropping a connection or refusing a request: the new TLS context is built whole first and swapped in only when
every file loaded; new handshakes get it, connections already open keep theirs. When anything fails to load (a
missing file, a key that does not match the certificate, an unknown setting), the reason goes to stderr (the
journal) and the API keeps serving with the context it had, as Redis does. API_BIND, API_PORT, API_USE_TLS and the
OpenSSL config (OPENSSL_CONF, read by OpenSSL at process start) take a restart: a reload that sees them changed
says so on stderr and changes nothing else about them.
"""
import argparse
import collections
import os
import signal
import ssl
import sys
import threading

from werkzeug.serving import make_server

from flask import Flask, jsonify, request

from fleet_env import read_env, truthy
from fleet_enroll import EnrollError, Enrollment

app = Flask(__name__)
# A request body larger than this is refused (413): the open route takes posts from machines without a certificate.
app.config['MAX_CONTENT_LENGTH'] = 256 * 1024
# The last reports only (a reference service keeps no history; a real one stores them).
REPORTS = collections.deque(maxlen=1000)
# Set by SIGHUP (the handler does nothing else); the reload thread waits on it.
RELOAD_REQUESTED = threading.Event()


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


@app.route('/api/v1/validation/report', methods=['POST'])
def validation_report():
    REPORTS.append(request.get_json(silent=True))
    return jsonify(accepted=True, client=client_subject()), 202


@app.route('/api/v1/enroll', methods=['POST'])
def enroll():
    enrollment = ENROLLMENT[0]
    if enrollment is None:
        return jsonify(error='enrollment is off on this API host (API_ENROLL_CA_CERT is not set)'), 404
    body = request.get_json(silent=True)
    try:
        pem, machine, serial = enrollment.enroll(body)
    except EnrollError as exc:
        log('enrollment refused (%d) for %s from %s: %s'
            % (exc.status, requested_machine(body), request.remote_addr, exc))
        return jsonify(error=str(exc)), exc.status
    except (OSError, ValueError) as exc:
        log('enrollment failed for %s from %s: %s: %s'
            % (requested_machine(body), request.remote_addr, type(exc).__name__, exc))
        return jsonify(error='the API host could not sign: see its log'), 500
    log('enrolled %s from %s: certificate serial %s' % (machine, request.remote_addr, serial))
    return app.response_class(pem, status=201, mimetype='application/x-pem-file')


def requested_machine(body):
    """The machine a refused request named, printable in the log whatever it sent."""
    value = body.get('machine') if isinstance(body, dict) else None
    return repr(value[:80] if isinstance(value, str) else value)


def log(message):
    sys.stderr.write('fleet-api: %s\n' % message)
    sys.stderr.flush()


def enrollment_from(env):
    """The enrollment settings of the .env, or None when enrollment is off; ConfigError when they are incomplete.
    Also the issuer its certificates carry (as getpeercert() shows it) and the routes they may use."""
    if not env.get('API_ENROLL_CA_CERT'):
        return None
    missing = [key for key in ('API_ENROLL_CA_KEY', 'API_ENROLL_TOKENS') if not env.get(key)]
    if missing:
        raise ConfigError('API_ENROLL_CA_CERT is set but %s is not: enrollment needs all of them'
                          % ', '.join(missing))
    routes = [route.strip() for route in (env.get('API_ENROLL_ROUTES') or '/api/v1/validation').split(',')
              if route.strip()]
    try:
        return Enrollment(env['API_ENROLL_TOKENS'], env['API_ENROLL_CA_CERT'], env['API_ENROLL_CA_KEY'],
                          env.get('API_ENROLL_CERT_HOURS') or 4, routes=routes,
                          issuer=ssl._ssl._test_decode_cert(env['API_ENROLL_CA_CERT'])['subject'])  # pylint: disable=protected-access
    except ValueError as exc:
        raise ConfigError(str(exc))


# Enrollment as configured (swapped whole on reload); None when it is off.
ENROLLMENT = [None]


class RoutePolicy:
    """Which routes need a client certificate: API_CLIENT_CERT_ROUTES, else API_REQUIRE_CLIENT_CERT."""

    def __init__(self, env):
        self.default = truthy(env.get('API_REQUIRE_CLIENT_CERT'))
        self.routes = []
        for entry in (env.get('API_CLIENT_CERT_ROUTES') or '').split(','):
            if not entry.strip():
                continue
            prefix, sep, policy = entry.strip().rpartition('=')
            if not sep or not prefix.startswith('/') or policy not in ('required', 'optional'):
                raise ConfigError('API_CLIENT_CERT_ROUTES entry %r is not "<path prefix>=required" or "<path '
                                  'prefix>=optional"' % entry.strip())
            self.routes.append((prefix, policy == 'required'))
        self.routes.sort(key=lambda route: len(route[0]), reverse=True)

    def required(self, path):
        for prefix, required in self.routes:
            if covers(prefix, path):
                return required
        return self.default

    def any_optional(self):
        return not self.default or any(not required for dummy, required in self.routes)

    def describe(self):
        return ', '.join(['%s %s' % (prefix, 'required' if required else 'optional') for prefix, required in
                          self.routes] + ['other routes %s' % ('required' if self.default else 'optional')])


# The policy in force (swapped whole on reload, as the TLS context); None while TLS is off (no certificates).
POLICY = [None]


@app.before_request
def client_certificate_policy():
    policy = POLICY[0]
    peer = request.environ.get('fleetpki.peercert')
    if policy is not None and policy.required(request.path) and not peer:
        return jsonify(error='a client certificate is required for %s' % request.path), 403
    enrollment = ENROLLMENT[0]
    if peer and enrollment is not None and peer.get('issuer') == enrollment.issuer and \
            not any(covers(prefix, request.path) for prefix in enrollment.routes):
        return jsonify(error='the certificate of an enrolled machine is for %s only, not %s'
                       % (', '.join(enrollment.routes), request.path)), 403
    return None


def covers(prefix, path):
    """Whole path segments: "/api/v1/validation" covers itself and /api/v1/validation/..., never
    /api/v1/validation-admin."""
    base = prefix.rstrip('/')
    return path == base or path.startswith(base + '/')


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


class ConfigError(Exception):
    pass


def tls_context(env):
    """A whole server context from the .env's settings and files; ConfigError, ssl.SSLError or OSError if any of
    them cannot be used."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    version = env.get('API_TLS_MIN_VERSION') or 'TLSv1.2'
    if version not in TLS_VERSIONS:
        raise ConfigError('API_TLS_MIN_VERSION is %r; it must be one of %s'
                          % (version, ', '.join(sorted(TLS_VERSIONS))))
    context.minimum_version = TLS_VERSIONS[version]
    try:
        context.set_ciphers(env.get('API_TLS_CIPHERS') or INTERMEDIATE_CIPHERS)
    except ssl.SSLError:
        raise ConfigError('API_TLS_CIPHERS names no cipher suite OpenSSL knows: %r' % env.get('API_TLS_CIPHERS'))
    context.load_cert_chain(env['API_TLS_CERT'], env['API_TLS_KEY'])
    context.load_verify_locations(env['API_TLS_CA'])
    if env.get('API_ENROLL_CA_CERT'):
        # The enrollment CA: an anchor of its own, trusted here alone, for the routes of API_ENROLL_ROUTES.
        context.load_verify_locations(env['API_ENROLL_CA_CERT'])
    if env.get('API_TLS_CRL'):
        # Checked along the whole chain: a site's issuing CA revoked by the root refuses every client below it.
        # OpenSSL refuses every client of a CA (root included) that has no CRL in the file: the pki role keeps one
        # per trusted CA and the root's.
        context.load_verify_locations(env['API_TLS_CRL'])
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN
    # A route that takes requests without a client certificate makes the handshake ask without insisting; the
    # routes that require one are then held to it by client_certificate_policy().
    context.verify_mode = ssl.CERT_OPTIONAL if RoutePolicy(env).any_optional() else ssl.CERT_REQUIRED
    return context


def cert_serial(path):
    """The serial of the certificate file, in hex, for the log (best effort)."""
    try:
        return ssl._ssl._test_decode_cert(path).get('serialNumber', '?')  # pylint: disable=protected-access
    except (ssl.SSLError, OSError, AttributeError):
        return '?'


# The settings a reload cannot change: the listening socket's address and whether it speaks TLS at all.
RESTART_ONLY = ('API_BIND', 'API_PORT', 'API_USE_TLS', 'API_TLS_OPENSSL_CONF')


class Reloader:
    """The current server context, swapped whole on SIGHUP. The signal handler only sets an event; a thread of its
    own reads the files and builds the context (nothing that takes a lock or does I/O runs in the handler)."""

    def __init__(self, env_path, env, context):
        self.env_path = env_path
        self.env = env
        self.context = context
        self.lock = threading.Lock()
        self.server = None

    def current(self):
        with self.lock:
            return self.context

    def run(self):
        while True:
            RELOAD_REQUESTED.wait()
            RELOAD_REQUESTED.clear()
            self.reload()

    def reload(self):
        """Build the new context whole; swap it in only if every file and setting loaded. Returns True if it did."""
        try:
            env = read_env(self.env_path)
            context = tls_context(env)
            policy = RoutePolicy(env)
            enrollment = enrollment_from(env)
        except (ConfigError, ssl.SSLError, OSError, KeyError, ValueError) as exc:
            sys.stderr.write('fleet-api: reload failed, still serving the previous certificate and settings: %s: %s\n'
                             % (type(exc).__name__, exc))
            sys.stderr.flush()
            return False
        changed = [key for key in RESTART_ONLY if env.get(key) != self.env.get(key)]
        if changed:
            sys.stderr.write('fleet-api: WARNING: %s changed in %s: a reload cannot apply this, restart the service '
                             '(the TLS files and settings were reloaded)\n' % (', '.join(changed), self.env_path))
        with self.lock:
            self.context = context
            POLICY[0] = policy
            ENROLLMENT[0] = enrollment
            # What the process runs with: the restart-only settings stay those it started with.
            self.env = dict(env, **{key: self.env[key] for key in RESTART_ONLY if key in self.env})
            if self.server is not None:
                self.server.ssl_context = context
        sys.stderr.write('fleet-api: reloaded: certificate %s (serial %s), CA %s, CRL %s, client certificate: %s\n'
                         % (env['API_TLS_CERT'], cert_serial(env['API_TLS_CERT']), env['API_TLS_CA'],
                            env.get('API_TLS_CRL') or 'off', policy.describe()))
        sys.stderr.flush()
        return True


def tls_server(host, port, wsgi_app, reloader):
    """werkzeug's threaded server with a plain listening socket: each accepted connection is wrapped with the
    context current at that moment, and its handshake runs in the connection's own thread (never in the accept
    loop, so a slow or failing client holds up no one). server.ssl_context is the current context, so werkzeug
    still reports https and its TLS error handling applies."""
    server = make_server(host, port, wsgi_app, threaded=True)
    server.ssl_context = reloader.current()
    reloader.server = server
    plain_get_request = server.get_request
    plain_finish_request = server.finish_request

    def get_request():
        sock, address = plain_get_request()
        try:
            return reloader.current().wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address
        except (ssl.SSLError, OSError):
            sock.close()
            raise

    def finish_request(request, client_address):
        try:
            request.settimeout(30)
            request.do_handshake()
            request.settimeout(None)
        except (ssl.SSLError, OSError) as exc:
            sys.stderr.write('fleet-api: TLS handshake with %s failed: %s\n' % (client_address[0], exc))
            return
        plain_finish_request(request, client_address)

    server.get_request = get_request
    server.finish_request = finish_request
    return server


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--env', default='/opt/fleet-api/.env')
    args = parser.parse_args()
    # First: SIGHUP's default action ends the process, and systemctl reload may come at any time after the start.
    signal.signal(signal.SIGHUP, lambda signum, frame: RELOAD_REQUESTED.set())
    env = read_env(args.env)
    app.wsgi_app = PeerCertMiddleware(app.wsgi_app)
    host, port = env.get('API_BIND', '0.0.0.0'), int(env.get('API_PORT', '8443'))
    if not truthy(env.get('API_USE_TLS', 'true')):
        app.run(host=host, port=port, threaded=True, use_reloader=False)
        return 0
    check_openssl_conf(env)
    try:
        reloader = Reloader(args.env, env, tls_context(env))
        POLICY[0] = RoutePolicy(env)
        ENROLLMENT[0] = enrollment_from(env)
    except ConfigError as exc:
        raise SystemExit('fleet-api: %s' % exc)
    server = tls_server(host, port, app, reloader)
    threading.Thread(target=reloader.run, name='tls-reload', daemon=True).start()
    sys.stderr.write('fleet-api: serving https on %s:%d (pid %d; SIGHUP reloads the TLS files and settings); '
                     'client certificate: %s; enrollment %s\n'
                     % (host, port, os.getpid(), POLICY[0].describe(), 'on' if ENROLLMENT[0] else 'off'))
    sys.stderr.flush()
    server.serve_forever()
    return 0


if __name__ == '__main__':
    sys.exit(main())
