"""Revoking a site, last of the scenario's tests (pytest runs the files in name order) because it cuts site-b off:
revoke.yml -e revoke_site=site-b revokes site-b's issuing CA in the root's CRL and keeps its hosts out. Then the API
refuses worker2's certificate (its CRL check runs along the chain) and Redis refuses worker2's login (its user is
off), while worker1 of site-a keeps both, Redis and the API keep their PIDs, and site-b gets a new issuing CA."""
import json

import pytest

from fleetlab import CA_BUNDLE, WORKER_CERT, assert_no_secret_in, run_playbook

from test_fleet import redis_cli

WORKER_KEY = '/etc/fleetpki/worker/client-key.pem'


def post(host):
    """A worker's report to the API with its own client certificate: the HTTP status, or None when refused."""
    result = host.run('curl -sS -o /dev/null -w "%%{http_code}" --cacert %s --cert %s --key %s -X POST -H '
                      '"Content-Type: application/json" -d %s https://api1:8443/callback/report'
                      % (CA_BUNDLE, WORKER_CERT, WORKER_KEY, "'" + json.dumps({'ok': True}) + "'"))
    return int(result.stdout) if result.stdout.isdigit() and result.stdout != '000' else None


def test_revoking_site_b_cuts_off_its_hosts_and_nothing_else(fleet, pki_dir):
    if (pki_dir / 'kept-out' / 'worker2').exists():
        pytest.skip('site-b was revoked by an earlier molecule verify of this lab: converge a new one to run it again')
    assert post(fleet['worker1']) == 202 and post(fleet['worker2']) == 202
    assert 'PONG' in redis_cli(fleet, 'worker2', 'PING').stdout
    api_pid = fleet['api1'].check_output('systemctl show -p MainPID --value fleet-api')
    redis_pid = fleet['redis1'].check_output('systemctl show -p MainPID --value redis-server')
    old_site_b = (pki_dir / 'sites' / 'site-b' / 'ca-cert.pem').read_text()

    rc, output = run_playbook('playbooks/revoke.yml', '-e', 'revoke_site=site-b')
    assert rc == 0, output[-4000:]
    assert_no_secret_in({'revoke.yml': output}, 'its output')
    assert sorted(path.name for path in (pki_dir / 'kept-out').iterdir()) == ['pxe1', 'worker2']
    assert post(fleet['worker2']) is None, 'the API still takes a certificate of the revoked site'
    assert 'PONG' not in redis_cli(fleet, 'worker2', 'PING').stdout, 'Redis still takes a host of the revoked site'
    assert post(fleet['worker1']) == 202
    assert 'PONG' in redis_cli(fleet, 'worker1', 'PING').stdout
    assert fleet['api1'].check_output('systemctl show -p MainPID --value fleet-api') == api_pid
    assert fleet['redis1'].check_output('systemctl show -p MainPID --value redis-server') == redis_pid
    assert (pki_dir / 'sites' / 'site-b' / 'ca-cert.pem').read_text() != old_site_b, 'site-b has no new issuing CA'
