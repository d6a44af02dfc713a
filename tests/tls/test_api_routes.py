"""The reference API's client-certificate policy per route, with the real fleet-api.py on loopback, real TLS and
the seed's own client (curl --cacert, no client certificate): a validation report needs no client certificate, every
other route does, a certificate that is presented is still verified, and the policy is reloaded with SIGHUP.
"""
import json
import subprocess

import pytest

from test_api_reload import Api, Pki

ROUTES = '/api/v1/validation/=optional'


@pytest.fixture
def api(tmp_path):
    """The API on the role's default policy: validation reports open, every other route requires a client
    certificate."""
    pki = Pki(tmp_path)
    pki.issue('client')
    pki.issue('api')
    work = tmp_path / 'api'
    work.mkdir()
    (work / 'api-key.pem').write_bytes((tmp_path / 'api-key.pem').read_bytes())
    (work / 'api-cert.pem').write_bytes((tmp_path / 'api-cert.pem').read_bytes())
    running = Api(work, pki)
    running.write_env(API_CLIENT_CERT_ROUTES=ROUTES)
    assert 'validation/ optional, other routes required' in running.reload()
    yield running
    running.stop()


def curl(api, method, path, *extra):
    """curl as the seed's validation image calls the API: --cacert, host name checked; (HTTP status, body)."""
    proc = subprocess.run(['curl', '-sS', '--cacert', str(api.pki.dir / 'ca-cert.pem'), '-X', method,
                           '-H', 'Content-Type: application/json', '-d', json.dumps({'serial': 'SN123', 'ok': True}),
                           '-w', '\n%{http_code}'] + list(extra) + ['https://localhost:%d%s' % (api.port, path)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=30,
                          check=False)
    body, dummy, status = proc.stdout.rpartition('\n')
    return (int(status) if status.isdigit() else None), body


def test_the_seeds_curl_posts_a_validation_report_without_a_client_certificate(api):
    status, body = curl(api, 'POST', '/api/v1/validation/report')
    assert status == 202, body
    assert json.loads(body) == {'accepted': True, 'client': None}


def test_every_other_route_refuses_a_request_without_a_client_certificate(api):
    for method, path in (('POST', '/callback/report'), ('GET', '/health')):
        status, body = curl(api, method, path)
        assert status == 403, body
        assert json.loads(body) == {'error': 'a client certificate is required for %s' % path}


def test_a_client_certificate_is_accepted_on_every_route(api):
    with_cert = ('--cert', str(api.pki.dir / 'client-cert.pem'), '--key', str(api.pki.dir / 'client-key.pem'))
    status, body = curl(api, 'POST', '/callback/report', *with_cert)
    assert status == 202 and json.loads(body)['client'] == 'commonName=client', body
    status, body = curl(api, 'POST', '/api/v1/validation/report', *with_cert)
    assert status == 202 and json.loads(body)['client'] == 'commonName=client', body


def test_a_certificate_presented_to_an_open_route_is_still_verified(api, tmp_path):
    """Optional is not unchecked: a certificate of another CA, or a revoked one, ends the handshake."""
    (tmp_path / 'stranger').mkdir()
    stranger = Pki(tmp_path / 'stranger')
    stranger.issue('intruder')
    status, body = curl(api, 'POST', '/api/v1/validation/report', '--cert', str(stranger.dir / 'intruder-cert.pem'),
                        '--key', str(stranger.dir / 'intruder-key.pem'))
    assert status in (None, 0), body
    revoked = api.pki.issue('revoked')
    api.pki.crl(api.work / 'crl.pem', [revoked])
    api.write_env(API_CLIENT_CERT_ROUTES=ROUTES, API_TLS_CRL=str(api.work / 'crl.pem'))
    assert 'reloaded' in api.reload()
    status, body = curl(api, 'POST', '/api/v1/validation/report', '--cert', str(api.pki.dir / 'revoked-cert.pem'),
                        '--key', str(api.pki.dir / 'revoked-key.pem'))
    assert status in (None, 0), body
    assert curl(api, 'POST', '/api/v1/validation/report')[0] == 202


def test_without_routes_the_whole_api_requires_a_client_certificate_in_the_handshake(api):
    api.write_env()
    assert 'other routes required' in api.reload()
    status, body = curl(api, 'POST', '/api/v1/validation/report')
    assert status in (None, 0), body  # refused in the handshake, as before per-route policies
    assert api.served_serial() is not None  # with a client certificate it answers


def test_a_bad_route_policy_is_refused_at_reload_and_the_running_one_kept(api):
    api.write_env(API_CLIENT_CERT_ROUTES='/api/v1/validation/=sometimes')
    log = api.reload()
    assert 'reload failed' in log and "'/api/v1/validation/=sometimes' is not" in log, log
    assert curl(api, 'POST', '/api/v1/validation/report')[0] == 202
    assert curl(api, 'GET', '/health')[0] == 403


def test_a_prefix_covers_whole_path_segments_only(api):
    """/api/v1/validation (no slash) opens that route and what is under it, never /api/v1/validation-admin."""
    api.write_env(API_CLIENT_CERT_ROUTES='/api/v1/validation=optional')
    assert 'reloaded' in api.reload()
    assert curl(api, 'POST', '/api/v1/validation/report')[0] == 202
    assert curl(api, 'POST', '/api/v1/validation-admin/report')[0] == 403


def test_path_tricks_do_not_reach_a_route_that_requires_a_certificate(api):
    for path in ('//callback/report', '/api/v1/validation/../../callback/report',
                 '/api/v1/validation/%2e%2e/%2e%2e/callback/report', '/API/v1/validation/report'):
        status, body = curl(api, 'POST', path, '--path-as-is')
        assert status in (403, 404), (path, status, body)


def test_a_body_over_256_kib_is_refused(api, tmp_path):
    big = tmp_path / 'big.json'
    big.write_text('{"blob": "%s"}' % ('x' * 300000))
    proc = subprocess.run(['curl', '-sS', '--cacert', str(api.pki.dir / 'ca-cert.pem'), '-X', 'POST', '-H',
                           'Content-Type: application/json', '--data-binary', '@%s' % big, '-o', '/dev/null', '-w',
                           '%{http_code}', 'https://localhost:%d/api/v1/validation/report' % api.port],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=30,
                          check=False)
    assert proc.stdout.strip().endswith('413'), proc.stdout
