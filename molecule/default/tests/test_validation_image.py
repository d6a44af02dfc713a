"""The seed's validation image against the defaults: a PXE-booted machine with the CA certificate and no client
certificate posts its report to the API by IP address, with curl --cacert and the host name checked, exactly as the
seed's image does; the workers' routes still need a client certificate."""
import json
import shlex

from fleetlab import CA_BUNDLE, CLIENT_PEM

# api1's address on the lab network (molecule.yml): the API certificate carries it (ansible_host is a SAN).
API_IP = '172.30.98.14'
REPORT = {'serial': 'SN-LAB-0001', 'mac': '02:42:ac:1e:62:0f', 'result': 'pass'}


def seeds_curl(host, path, *extra):
    """The seed's command, as its image runs it; returns (HTTP status or None, body, curl's stderr)."""
    command = ('curl -sS --cacert %s -X POST -H "Content-Type: application/json" -d %s -w "\\n%%{http_code}" %s '
               'https://%s:8443%s' % (CA_BUNDLE, shlex.quote(json.dumps(REPORT)), ' '.join(extra), API_IP, path))
    result = host.run(command)
    body, dummy, status = result.stdout.rpartition('\n')
    return (int(status) if status.isdigit() and status != '000' else None), body, result.stderr


def test_a_validation_report_is_posted_by_ip_without_a_client_certificate(fleet):
    status, body, stderr = seeds_curl(fleet['pxe1'], '/api/v1/validation/report')
    assert status == 202, (body, stderr)
    assert json.loads(body) == {'accepted': True, 'client': None}


def test_the_workers_routes_still_need_a_client_certificate(fleet):
    status, body, stderr = seeds_curl(fleet['pxe1'], '/callback/report')
    assert status == 403, (body, stderr)
    assert 'client certificate is required' in body
    status, body, stderr = seeds_curl(fleet['pxe1'], '/callback/report', '--cert', CLIENT_PEM)
    assert status == 202 and json.loads(body)['client'], (body, stderr)


def test_the_host_name_is_checked(fleet):
    """An address the API certificate does not carry (the loopback, from the API host itself) is refused by curl."""
    result = fleet['api1'].run('curl -sS --cacert %s -X POST https://127.0.0.2:8443/api/v1/validation/report'
                               % CA_BUNDLE)
    assert result.rc != 0 and ('no alternative certificate subject name' in result.stderr
                               or 'does not match' in result.stderr), result.stderr
