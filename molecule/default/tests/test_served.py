"""What the lab's services serve on their TLS ports, seen from the control node (playbooks/expiry_report.yml and
fleetpki.mtls.cert_expiry endpoints): every Redis and API host serves the control node's copy of its certificate."""
import json
import re

import yaml

from fleetlab import PKI_DIR, run_playbook

SERVED = re.compile(r'^fleetpki_served_cert_(up|matches_file|expiry_seconds)\{endpoint="([^"]+)",host="([^"]+)",'
                    r'port="(\d+)",serial="([0-9A-F]*)"\} (\d+)$')


def test_expiry_report_finds_every_redis_and_api_endpoint_serving_its_copy(fleet, tmp_path):
    prom = tmp_path / 'fleetpki.prom'
    rc, output = run_playbook('playbooks/expiry_report.yml', '-e', 'expiry_report_prom_path=%s' % prom,
                              '-e', 'expiry_report_fail_on_warning=true')
    assert rc == 0, output[-4000:]
    found = {}
    for line in prom.read_text().splitlines():
        match = SERVED.match(line)
        if match:
            metric, endpoint, host, port, serial, value = match.groups()
            found.setdefault(endpoint, {}).update({metric: int(value), 'address': '%s:%s' % (host, port),
                                                   'serial': serial})
    assert sorted(found) == ['api-api1', 'redis-redis1'], found
    assert found['redis-redis1']['address'] == '172.30.98.11:6379'
    assert found['api-api1']['address'] == '172.30.98.14:8443'
    for endpoint, metrics in found.items():
        assert metrics['up'] == 1 and metrics['matches_file'] == 1, (endpoint, metrics)
        assert metrics['expiry_seconds'] > 0 and metrics['serial'], (endpoint, metrics)
    assert re.search(r'served: \{\\?"ok\\?": 2, ', output), output[-3000:]


def test_a_served_certificate_other_than_the_file_is_a_mismatch(fleet, tmp_path):
    """Redis (TLS 1.3, client certificate required) compared with the API's copy: reachable without a client
    certificate, the chain verifies, and it is not that file."""
    playbook, result = tmp_path / 'served.yml', tmp_path / 'served.json'
    playbook.write_text(yaml.safe_dump([{
        'name': 'Served certificate check', 'hosts': 'localhost', 'gather_facts': False,
        'tasks': [{'name': 'Inspect', 'fleetpki.mtls.cert_expiry': {
            'ca_path': str(PKI_DIR / 'ca-bundle.pem'),
            'endpoints': [{'name': 'redis', 'host': '172.30.98.11', 'port': 6379, 'server_name': 'redis1',
                           'cert_path': str(PKI_DIR / 'issued' / 'api-api1-cert.pem')}]},
                   'register': 'served'},
                  {'name': 'Keep the result', 'ansible.builtin.copy': {
                      'content': '{{ served.endpoints | to_json }}', 'dest': str(result), 'mode': '0600'}}]}]))
    rc, output = run_playbook(str(playbook))
    assert rc == 0, output[-3000:]
    entry = json.loads(result.read_text())[0]
    assert entry['reachable'] is True and entry['chain_verified'] is True
    assert entry['matches_file'] is False and entry['status'] == 'mismatch'
    assert entry['serial'] != entry['file_serial']
