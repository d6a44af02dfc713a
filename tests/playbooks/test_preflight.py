"""site.yml stops with a clear message before anything changes, on the bad inputs an operator can make.

Each case runs the real site.yml against a small inventory whose hosts cannot be reached (docker connection to
containers that do not exist): the preflight must fail first, and the PKI directory must not be created.
"""
import os
import pathlib
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def inventory(tmp_path, groups, all_vars=None):
    """A fake fleet: its hosts do not exist, so their keys are the control node's (fleetpki_host_keys: []); keys
    born on their hosts are tested against the lab (molecule, the install path)."""
    fleet = {'vars': dict({'ansible_connection': 'community.docker.docker',
                           'fleetpki_pki_dir': str(tmp_path / 'pki'), 'fleetpki_host_keys': [],
                           'fleetpki_redis_password': 'preflight-test-password'}, **(all_vars or {})),
             'children': {group: {'hosts': {host: None for host in hosts}} for group, hosts in groups.items()}}
    path = tmp_path / 'hosts.yml'
    path.write_text(yaml.safe_dump({'fleet': fleet}))
    return path


def run_playbook(inventory_path, path, *extra):
    """ansible-playbook PATH against the inventory, from the project root; returns (rc, output)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1')
    proc = subprocess.run(['ansible-playbook', '-i', str(inventory_path), str(path)] + list(extra),
                          cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300, check=False)
    return proc.returncode, proc.stdout


def site(inventory_path, *extra):
    return run_playbook(inventory_path, ROOT / 'site.yml', *extra)


def playbook(inventory_path, name, *extra):
    """One of playbooks/."""
    return run_playbook(inventory_path, ROOT / 'playbooks' / name, *extra)


# Names no lab or molecule container has: a run that got past the preflight must not reach a real host.
FLEET = {'redis_servers': ['pf-redis1'], 'workers': ['pf-worker1', 'pf-worker2'], 'api_servers': ['pf-api1'],
         'pki_clients': ['pf-pxe1']}


def assert_stopped_before_any_change(tmp_path, rc, output, message):
    assert rc != 0
    assert message in ' '.join(output.split()), output[-2500:]
    assert not (tmp_path / 'pki').exists(), 'the PKI was touched before the preflight failed'
    assert 'changed=1' not in output


def test_empty_worker_group(tmp_path):
    groups = dict(FLEET, workers=[])
    rc, output = site(inventory(tmp_path, groups))
    assert_stopped_before_any_change(tmp_path, rc, output, 'needs at least one host in redis_servers and one in workers')


@pytest.mark.parametrize('password', ['\\x41\\x41\\x41-long-enough-pw', 'has-a-"quote"-long-enough',
                                      'has-a-$dollar-long-enough', 'has-a-`backtick`-long-enough',
                                      'has-a-\\backslash-long-enough', "has a space long enough", 'short'])
def test_a_redis_password_that_would_not_survive_every_client_is_refused(tmp_path, password):
    """Passwords reach module arguments and .env lines: a charset that survives both unchanged, else a refusal
    before any change (today's \\x41 was decoded by redis.conf at the next restart)."""
    rc, output = site(inventory(tmp_path, FLEET, {'fleetpki_redis_acl_passwords': {'worker1': password},
                                                  'fleetpki_redis_admin_password': password}))
    assert_stopped_before_any_change(tmp_path, rc, output, 'fleetpki_redis_acl_passwords[worker1] must be 16 to 128')
    assert 'fleetpki_redis_admin_password must be 16 to 128' in output
    assert len(password) < 8 or password not in output


def test_redis_host_not_in_the_redis_certificate(tmp_path):
    rc, output = site(inventory(tmp_path, FLEET), '-e', 'worker_tls_redis_host=redis.elsewhere.example')
    assert_stopped_before_any_change(tmp_path, rc, output, 'REDIS_HOST redis.elsewhere.example must be one of')


def test_callback_api_host_not_in_the_api_certificate(tmp_path):
    rc, output = site(inventory(tmp_path, FLEET), '-e', 'worker_tls_callback_api_url=https://api.elsewhere:8443/x')
    assert_stopped_before_any_change(tmp_path, rc, output, 'callback API host api.elsewhere')


def test_two_certificates_with_the_same_name(tmp_path):
    groups = dict(FLEET, workers=['pf-worker1', 'PF-WORKER1'])
    rc, output = site(inventory(tmp_path, groups))
    assert_stopped_before_any_change(tmp_path, rc, output, 'two certificates named worker-pf-worker1')


def test_inventory_name_that_cannot_be_a_san(tmp_path):
    groups = dict(FLEET, workers=['pf_worker1'])
    rc, output = site(inventory(tmp_path, groups))
    assert_stopped_before_any_change(tmp_path, rc, output,
                                     "inventory host 'pf_worker1' is neither a host name nor an IP address, so it cannot be")


@pytest.mark.parametrize('limit', ['pf-worker1', 'pf-redis1'])
def test_preflight_checks_the_whole_fleet_under_limit(tmp_path, limit):
    """--limit keeps the checks: they read the whole inventory, not only the limited hosts."""
    rc, output = site(inventory(tmp_path, FLEET), '--limit', limit, '-e', 'worker_tls_redis_host=nowhere.example')
    assert_stopped_before_any_change(tmp_path, rc, output, 'REDIS_HOST nowhere.example must be one of')


def test_limit_issues_only_the_limited_hosts_certificates(tmp_path):
    """The PKI step runs inside the fleet play, so --limit neither skips it nor issues for other hosts."""
    rc, output = site(inventory(tmp_path, FLEET), '--limit', 'pf-redis1')
    # The run then fails to reach the (absent) container: after the PKI play, as it should.
    assert rc != 0
    issued = sorted(p.name for p in (tmp_path / 'pki' / 'issued').glob('*-cert.pem'))
    assert issued == ['redis-pf-redis1-cert.pem'], output[-2500:]


@pytest.mark.parametrize('name', ['pki.yml', 'roll.yml'])
def test_a_fleet_without_hosts_is_named_with_where_to_add_them(tmp_path, name):
    """A fresh project's groups are empty: the first task says so and names the inventory file (one task file, used
    by pki.yml and by roll.yml run alone), before a lookup fails for want of a host to find the PKI by."""
    path = inventory(tmp_path, {group: [] for group in FLEET})
    rc, output = playbook(path, name)
    assert_stopped_before_any_change(tmp_path, rc, output, "There is no host in the fleet's groups (redis_servers, "
                                     "workers, api_servers, pki_clients) of the inventory %s: add the hosts to %s "
                                     "(uncomment and rename its examples), then run again." % (path, path))
    assert 'no inventory host to find the fleet by' not in output
