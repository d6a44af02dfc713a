"""fleetpki.mtls.init from the installed tarball writes a project that works: inventory, encrypted vault, preflight.

The collection comes from the built tarball (test_renewal_timer_installed.installed_collection); every command
runs from the new project with its own ansible.cfg and nothing from this checkout. No fleet host is contacted: the
PKI play runs on the control node, and the hosts filled in are never reached.
"""
import os
import stat

import yaml

from test_renewal_timer_installed import BIN, ROOT, clean_env, installed_collection, run


def init(tmp_path, *extra, check=False):
    collections = installed_collection()
    env = clean_env(ANSIBLE_COLLECTIONS_PATH=str(collections), HOME=str(tmp_path / 'home'))
    argv = [BIN / 'ansible-playbook', 'fleetpki.mtls.init', '-e', 'dest=%s' % (tmp_path / 'prod')] + list(extra)
    if check:
        argv.append('--check')
    return run(argv, tmp_path, env)


def in_project(proj, tmp_path, argv):
    return run(argv, proj, clean_env(HOME=str(tmp_path / 'home')))


def test_init_writes_a_project_whose_vault_and_inventory_work(tmp_path):
    (tmp_path / 'home').mkdir()
    rc, output = init(tmp_path, check=True)
    assert rc == 0, output[-3000:]
    assert not (tmp_path / 'prod').exists(), 'check mode wrote the project'
    rc, output = init(tmp_path)
    assert rc == 0, output[-3000:]
    proj = tmp_path / 'prod'
    inventory = proj / 'inventories' / 'prod'
    password_file = tmp_path / 'home' / '.fleetpki' / 'prod.vault-pass'
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(password_file.parent.stat().st_mode) == 0o700
    password = password_file.read_text().strip()
    assert len(password) >= 32
    vault = inventory / 'group_vars' / 'all' / 'vault.yml'
    assert vault.read_text().startswith('$ANSIBLE_VAULT;1.1;AES256')
    assert stat.S_IMODE(vault.stat().st_mode) == 0o600
    config = (proj / 'ansible.cfg').read_text()
    assert 'inject_facts_as_vars = False' in config and 'collections_path = %s' % installed_collection() in config
    assert 'pipelining = true' in config and 'ControlPersist' in config
    assert str(ROOT) not in config
    # No secret in the run's output.
    rc, output = in_project(proj, tmp_path, [BIN / 'ansible-vault', 'view', '--vault-password-file', password_file,
                                             vault])
    assert rc == 0, output
    secrets = yaml.safe_load(output)
    assert set(secrets) >= {'vault_pki_ca_passphrase', 'vault_pki_backup_passphrase'}
    assert all(len(value) >= 32 for value in secrets.values())
    rc, run_output = init(tmp_path)
    assert not any(value in run_output for value in list(secrets.values()) + [password])
    # Idempotent: the second run changes nothing and keeps the vault.
    assert rc == 0 and 'changed=0' in run_output[run_output.rindex('PLAY RECAP'):], run_output[-3000:]
    assert 'kept as they were' in run_output
    rc, output = in_project(proj, tmp_path, [BIN / 'ansible-inventory', '--graph'])
    assert rc == 0 and 'WARNING' not in output, output
    for group in ['redis_servers', 'workers', 'api_servers', 'pki_clients', 'redis_clients']:
        assert '@%s:' % group in output, output
    assert not (inventory / 'pki').exists()


def fill_hosts(proj, hosts):
    """The operator's step: hosts in the inventory (names no lab has: nothing is reached)."""
    path = proj / 'inventories' / 'prod' / 'hosts.yml'
    data = yaml.safe_load(path.read_text())
    for group, names in hosts.items():
        data['fleet']['children'][group]['hosts'] = {name: {'ansible_host': '192.0.2.%d' % (10 + i)}
                                                     for i, name in enumerate(names)}
    path.write_text(yaml.safe_dump(data))


def test_the_pki_play_runs_on_the_new_project_once_the_hosts_are_filled_in(tmp_path):
    (tmp_path / 'home').mkdir()
    rc, output = init(tmp_path)
    assert rc == 0, output[-3000:]
    proj = tmp_path / 'prod'
    fill_hosts(proj, {'redis_servers': ['redis-01.fleet.test'], 'workers': ['worker-01.fleet.test'],
                      'api_servers': ['api-01.fleet.test'], 'pki_clients': ['pxe-01.fleet.test']})
    rc, output = in_project(proj, tmp_path, [BIN / 'ansible-playbook', 'fleetpki.mtls.pki'])
    assert rc == 0, output[-3000:]
    rc, output = in_project(proj, tmp_path, [BIN / 'ansible-playbook', 'fleetpki.mtls.pki', '--check'])
    assert rc == 0 and 'changed=0' in output[output.rindex('PLAY RECAP'):], output[-3000:]
    assert (proj / 'pki' / 'prod' / 'ca' / 'ca-cert.pem').is_file()
    assert not (proj / 'inventories' / 'prod' / 'pki').exists()
    assert os.path.isfile(str(proj / 'pki' / 'prod' / 'issued' / 'worker-worker-01.fleet.test-cert.pem'))
