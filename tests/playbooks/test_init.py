"""fleetpki.mtls.init from the installed tarball writes a project that works: inventory, encrypted vault, preflight.

Steps 1 and 2 of README.md's operator path are run exactly as written there (read from README.md: the tarball
install into ~/fleets/prod/collections, then init with ANSIBLE_COLLECTIONS_PATH), by bash, with a HOME of the test
and an environment with nothing of this checkout; every later command runs from the new project with its own
ansible.cfg. No fleet host is contacted: the PKI play runs on the control node, and the hosts filled in are never
reached.
"""
import hashlib
import json
import os
import pathlib
import re
import shutil
import stat
import subprocess

import yaml

from test_renewal_timer_installed import BIN, ROOT, clean_env, run

STEP_1 = 'ansible-galaxy collection install '
STEP_2 = 'ANSIBLE_COLLECTIONS_PATH='


def readme_steps():
    """The install and init command lines of README.md's operator section, as written."""
    text = (ROOT / 'README.md').read_text()
    block = text[text.index('## Operators'):]
    block = block[block.index('```sh\n') + 6:]
    block = block[:block.index('```')]
    lines = [line for line in block.splitlines() if line.startswith((STEP_1, STEP_2))]
    assert [line.startswith(STEP_1) for line in lines] == [True, False], lines
    assert not any(line.endswith('\\') for line in lines), 'a continued line: extend readme_steps()'
    return lines


def operator_env(tmp_path):
    home = tmp_path / 'home'
    home.mkdir(exist_ok=True)
    return clean_env(HOME=str(home), PATH='%s:/usr/local/bin:/usr/bin:/bin' % BIN)


def tarball_dir(tmp_path, tarball):
    """A directory holding only the built tarball, as the operator downloads it."""
    dist = tmp_path / 'downloads'
    if not dist.exists():
        dist.mkdir()
        shutil.copy(str(tarball), str(dist))
    return dist


def version():
    return yaml.safe_load((ROOT / 'galaxy.yml').read_text())['version']


def readme_init(tmp_path, tarball, check=False, install=True):
    """README steps 1 and 2 by bash, exactly as written (<version> filled in); the project is ~/fleets/prod.
    install=False: step 2 only, to run it again (the operator installs once)."""
    env = operator_env(tmp_path)
    install_line, init_line = readme_steps()
    lines = [install_line.replace('<version>', version())] if install else []
    for line in lines + [init_line + (' --check' if check else '')]:
        rc, output = run(['bash', '-c', line], tarball_dir(tmp_path, tarball), env)
        if rc != 0:
            return rc, output
    return rc, output


def init_from(collections, tmp_path, dest, *extra, check=False):
    """init with the session's installed collection (cheaper than a fresh install) into DEST."""
    env = dict(operator_env(tmp_path), ANSIBLE_COLLECTIONS_PATH=str(collections))
    argv = [BIN / 'ansible-playbook', 'fleetpki.mtls.init', '-e', 'dest=%s' % dest] + list(extra)
    return run(argv + (['--check'] if check else []), tmp_path, env)


def in_project(proj, tmp_path, argv):
    return run(argv, proj, operator_env(tmp_path))


def password_file_of(tmp_path, name, dest):
    digest = hashlib.sha256(os.path.realpath(str(dest)).encode()).hexdigest()[:8]
    return tmp_path / 'home' / '.fleetpki' / ('%s-%s.vault-pass' % (name, digest))


def vault_view(proj, tmp_path, password_file, vault):
    rc, output = in_project(proj, tmp_path, [BIN / 'ansible-vault', 'view', '--vault-password-file', password_file, vault])
    assert rc == 0, output
    return yaml.safe_load(output)


def test_the_readme_steps_write_a_project_whose_vault_and_inventory_work(tmp_path, collection_tarball):
    rc, output = readme_init(tmp_path, collection_tarball, check=True)
    assert rc == 0, output[-3000:]
    proj = tmp_path / 'home' / 'fleets' / 'prod'
    assert not (proj / 'ansible.cfg').exists(), 'check mode wrote the project'
    assert 'would write it (check mode)' in output, output[-3000:]
    rc, output = readme_init(tmp_path, collection_tarball, install=False)
    assert rc == 0, output[-3000:]
    assert 'written.' in output
    inventory = proj / 'inventories' / 'prod'
    password_file = password_file_of(tmp_path, 'prod', proj)
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(password_file.parent.stat().st_mode) == 0o700
    password = password_file.read_text().strip()
    assert len(password) >= 32
    vault = inventory / 'group_vars' / 'all' / 'vault.yml'
    assert vault.read_text().startswith('$ANSIBLE_VAULT;1.1;AES256')
    assert stat.S_IMODE(vault.stat().st_mode) == 0o600
    config = (proj / 'ansible.cfg').read_text()
    assert 'inject_facts_as_vars = False' in config and 'collections_path = %s/collections' % proj in config
    assert 'pipelining = true' in config and 'ControlPersist' in config
    assert 'vault_password_file = %s' % password_file in config
    assert str(ROOT) not in config
    secrets = vault_view(proj, tmp_path, password_file, vault)
    assert set(secrets) >= {'vault_pki_ca_passphrase', 'vault_pki_backup_passphrase'}
    assert all(len(value) >= 32 for value in secrets.values())
    # The second run: no secret in its output, nothing changed, the vault kept.
    rc, run_output = readme_init(tmp_path, collection_tarball, install=False)
    assert not any(value in run_output for value in list(secrets.values()) + [password])
    assert rc == 0 and 'changed=0' in run_output[run_output.rindex('PLAY RECAP'):], run_output[-3000:]
    assert 'kept as they were' in run_output
    assert vault_view(proj, tmp_path, password_file, vault) == secrets
    rc, output = in_project(proj, tmp_path, [BIN / 'ansible-inventory', '--graph'])
    assert rc == 0 and 'WARNING' not in output, output
    for group in ['redis_servers', 'workers', 'api_servers', 'pki_clients', 'redis_clients']:
        assert '@%s:' % group in output, output
    assert not (inventory / 'pki').exists()
    # The CA's name constraints are a decision made in the open, not a commented-out line.
    settings = yaml.safe_load((inventory / 'group_vars' / 'all' / 'vars.yml').read_text())
    assert settings['pki_ca_name_constraints_permitted_dns'] == [] and settings['ca_trust_system_store'] is True


def test_the_example_hosts_once_uncommented_as_told_are_an_inventory(tmp_path, installed_collections):
    dest = tmp_path / 'prod'
    rc, output = init_from(installed_collections, tmp_path, dest)
    assert rc == 0, output[-3000:]
    hosts = dest / 'inventories' / 'prod' / 'hosts.yml'
    # The operator's edit: every commented example line under a group's "hosts:" uncommented in place.
    lines = hosts.read_text().splitlines()
    edited = [re.sub(r'^(\s*)# ', r'\1', line) if re.match(r'^ {8,}# ', line) else line for line in lines]
    assert edited != lines
    hosts.write_text('\n'.join(edited) + '\n')
    rc, output = in_project(dest, tmp_path, [BIN / 'ansible-inventory', '--list'])
    assert rc == 0 and 'WARNING' not in output, output
    listed = json.loads(output)
    for group, host in [('redis_servers', 'redis-01.example.com'), ('workers', 'worker-01.example.com'),
                        ('api_servers', 'api-01.example.com'), ('pki_clients', 'pxe-01.example.com'),
                        ('redis_clients', 'pxe-01.example.com')]:
        assert listed[group]['hosts'] == [host], listed
    assert listed['_meta']['hostvars']['api-01.example.com']['pki_extra_sans'] == ['callback.example.com']


def test_a_trailing_slash_in_dest_names_the_fleet_as_without_it(tmp_path, installed_collections):
    dest = tmp_path / 'fleets' / 'stage'
    rc, output = init_from(installed_collections, tmp_path, str(dest) + '/')
    assert rc == 0, output[-3000:]
    assert (dest / 'inventories' / 'stage' / 'hosts.yml').is_file()
    assert password_file_of(tmp_path, 'stage', dest).is_file()


def test_a_bad_name_says_which_input_and_the_fix(tmp_path, installed_collections):
    rc, output = init_from(installed_collections, tmp_path, tmp_path / 'bad!name')
    flat = ' '.join(output.split())
    assert rc != 0 and 'project_init_name "bad!name"' in flat and '-e project_init_name=<name>' in flat, flat[-2000:]
    assert 'vault password file' not in flat, 'the message blames an input that is fine'
    assert not (tmp_path / 'bad!name').exists()


def test_two_projects_with_the_same_name_get_their_own_password(tmp_path, installed_collections):
    for parent in ['a', 'b']:
        rc, output = init_from(installed_collections, tmp_path, tmp_path / parent / 'prod')
        assert rc == 0, output[-3000:]
    first, second = (password_file_of(tmp_path, 'prod', tmp_path / parent / 'prod') for parent in ['a', 'b'])
    assert first != second and first.read_text() != second.read_text()
    for parent, password_file in [('a', first), ('b', second)]:
        proj = tmp_path / parent / 'prod'
        assert vault_view(proj, tmp_path, password_file, proj / 'inventories/prod/group_vars/all/vault.yml')


def test_an_existing_password_file_others_can_read_is_made_private(tmp_path, installed_collections):
    password_file = tmp_path / 'secrets' / 'prod.pass'
    password_file.parent.mkdir()
    password_file.write_text('an-existing-vault-password\n')
    os.chmod(str(password_file), 0o644)
    dest = tmp_path / 'prod'
    rc, output = init_from(installed_collections, tmp_path, dest, '-e', 'project_init_vault_password_file=%s' % password_file)
    assert rc == 0, output[-3000:]
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert password_file.read_text() == 'an-existing-vault-password\n', 'an existing password file was rewritten'
    assert vault_view(dest, tmp_path, password_file, dest / 'inventories/prod/group_vars/all/vault.yml')


def fill_hosts(proj, hosts):
    """The operator's step: hosts in the inventory (names no lab has: nothing is reached)."""
    path = proj / 'inventories' / 'prod' / 'hosts.yml'
    data = yaml.safe_load(path.read_text())
    for group, names in hosts.items():
        data['fleet']['children'][group]['hosts'] = {name: {'ansible_host': '192.0.2.%d' % (10 + i)}
                                                     for i, name in enumerate(names)}
    path.write_text(yaml.safe_dump(data))


def test_the_pki_play_runs_on_the_new_project_once_the_hosts_are_filled_in(tmp_path, installed_collections):
    proj = tmp_path / 'prod'
    rc, output = init_from(installed_collections, tmp_path, proj)
    assert rc == 0, output[-3000:]
    # A fresh scaffold: site says the fleet's groups are empty and where to add the hosts.
    rc, output = in_project(proj, tmp_path, [BIN / 'ansible-playbook', 'fleetpki.mtls.site'])
    flat = ' '.join(output.split())
    assert rc != 0 and 'no host in the fleet\'s groups' in flat and 'inventories/prod/hosts.yml' in flat, flat[-3000:]
    assert 'no inventory host to find the fleet by' not in flat
    fill_hosts(proj, {'redis_servers': ['redis-01.fleet.test'], 'workers': ['worker-01.fleet.test'],
                      'api_servers': ['api-01.fleet.test'], 'pki_clients': ['pxe-01.fleet.test']})
    # Keys born on their hosts (the scaffold's default): hosts that do not answer stop the run before any change.
    rc, output = in_project(proj, tmp_path, [BIN / 'ansible-playbook', 'fleetpki.mtls.pki'])
    flat = ' '.join(output.split())
    assert rc != 0 and 'no host of this run answered with the request of its key' in flat, flat[-3000:]
    assert not (proj / 'pki' / 'prod' / 'ca').exists()
    # With keys made on the control node, the PKI play needs no host.
    local_keys = ['-e', '{"fleetpki_host_keys": []}']
    rc, output = in_project(proj, tmp_path, [BIN / 'ansible-playbook', 'fleetpki.mtls.pki'] + local_keys)
    assert rc == 0, output[-3000:]
    rc, output = in_project(proj, tmp_path, [BIN / 'ansible-playbook', 'fleetpki.mtls.pki', '--check'] + local_keys)
    assert rc == 0 and 'changed=0' in output[output.rindex('PLAY RECAP'):], output[-3000:]
    assert (proj / 'pki' / 'prod' / 'ca' / 'ca-cert.pem').is_file()
    assert not (proj / 'inventories' / 'prod' / 'pki').exists()
    assert os.path.isfile(str(proj / 'pki' / 'prod' / 'issued' / 'worker-worker-01.fleet.test-cert.pem'))


def test_readme_installs_nothing_but_the_collection_in_the_project(tmp_path):
    """Step 1 as written puts the collection where step 2's ANSIBLE_COLLECTIONS_PATH and the project look."""
    install, init_line = readme_steps()
    target = re.search(r' -p (\S+)', install).group(1)
    assert re.match(r'ANSIBLE_COLLECTIONS_PATH=%s ' % re.escape(target), init_line), (install, init_line)
    dest = re.search(r'-e dest=(\S+)', init_line).group(1)
    assert target == dest + '/collections', (target, dest)
    assert pathlib.PurePosixPath(target).name == 'collections'
    assert subprocess.run(['bash', '-n', '-c', init_line], check=False).returncode == 0


VAULT = 'inventories/prod/group_vars/all/vault.yml'


def config_password_file(proj):
    return re.search(r'^vault_password_file = (.*)$', (proj / 'ansible.cfg').read_text(), re.M).group(1)


def vault_opens_from_the_project(proj, tmp_path):
    """ansible-vault as the operator's next run uses it: the password file the project's ansible.cfg names."""
    rc, output = in_project(proj, tmp_path, [BIN / 'ansible-vault', 'view', VAULT])
    assert rc == 0, output
    return yaml.safe_load(output)


def test_a_moved_project_rewritten_with_force_keeps_the_password_file_of_its_vault(tmp_path, installed_collections):
    old, proj = tmp_path / 'a' / 'prod', tmp_path / 'b' / 'prod'
    rc, output = init_from(installed_collections, tmp_path, old)
    assert rc == 0, output[-3000:]
    secrets = vault_opens_from_the_project(old, tmp_path)
    proj.parent.mkdir()
    shutil.move(str(old), str(proj))
    rc, output = init_from(installed_collections, tmp_path, proj, '-e', 'project_init_force=true')
    assert rc == 0, output[-3000:]
    assert config_password_file(proj) == str(password_file_of(tmp_path, 'prod', old))
    assert vault_opens_from_the_project(proj, tmp_path) == secrets
    assert not password_file_of(tmp_path, 'prod', proj).exists(), 'a password file no vault uses was made'
    assert str(password_file_of(tmp_path, 'prod', old)) in output


def test_a_project_of_an_older_init_keeps_its_name_vault_pass_file(tmp_path, installed_collections):
    """An older init wrote ~/.fleetpki/<name>.vault-pass; the project's ansible.cfg may be gone too."""
    proj = tmp_path / 'prod'
    rc, output = init_from(installed_collections, tmp_path, proj)
    assert rc == 0, output[-3000:]
    secrets = vault_opens_from_the_project(proj, tmp_path)
    legacy = tmp_path / 'home' / '.fleetpki' / 'prod.vault-pass'
    password_file_of(tmp_path, 'prod', proj).rename(legacy)
    config = (proj / 'ansible.cfg').read_text()
    (proj / 'ansible.cfg').write_text(config.replace(str(password_file_of(tmp_path, 'prod', proj)), str(legacy)))
    rc, output = init_from(installed_collections, tmp_path, proj, '-e', 'project_init_force=true')
    assert rc == 0, output[-3000:]
    assert config_password_file(proj) == str(legacy)
    assert vault_opens_from_the_project(proj, tmp_path) == secrets
    (proj / 'ansible.cfg').unlink()
    rc, output = init_from(installed_collections, tmp_path, proj)
    assert rc == 0, output[-3000:]
    assert config_password_file(proj) == str(legacy)
    assert not password_file_of(tmp_path, 'prod', proj).exists(), 'a password file no vault uses was made'


def test_a_vault_no_password_file_opens_is_refused_before_anything_changes(tmp_path, installed_collections):
    proj = tmp_path / 'prod'
    rc, output = init_from(installed_collections, tmp_path, proj)
    assert rc == 0, output[-3000:]
    password_file = password_file_of(tmp_path, 'prod', proj)
    password_file.write_text('not-the-password-of-this-vault\n')
    hosts = proj / 'inventories' / 'prod' / 'hosts.yml'
    hosts.write_text(hosts.read_text() + '# the operator\'s edit\n')
    before = {path: path.read_bytes() for path in [proj / 'ansible.cfg', hosts, proj / VAULT, password_file]}
    for check in (True, False):
        rc, output = init_from(installed_collections, tmp_path, proj, '-e', 'project_init_force=true', check=check)
        flat = ' '.join(output.split())
        assert rc != 0, flat[-3000:]
        message = re.search(r'"msg": "(The vault .*?)"', flat)
        assert message and 'The vault %s' % (proj / VAULT) in flat, flat[-3000:]
        assert message.group(1).count(str(password_file)) == 1, 'a file tried is named twice: %s' % message.group(1)
        assert str(tmp_path / 'home' / '.fleetpki' / 'prod.vault-pass') in flat, 'the files tried are not named'
        assert '-e project_init_vault_password_file=' in flat, 'the fix is not named'
        assert {path: path.read_bytes() for path in before} == before, 'the refused run changed the project'


def test_a_password_script_the_project_names_is_kept_and_never_run(tmp_path, installed_collections):
    """A received project's ansible.cfg may name a script (relative to the project): init -e dest=<it> must not run
    it, in check mode or not; it keeps it, says so, and does not claim it checked the vault with it."""
    proj = tmp_path / 'prod'
    rc, output = init_from(installed_collections, tmp_path, proj)
    assert rc == 0, output[-3000:]
    marker = tmp_path / 'the-script-ran'
    script = proj / 'get-vault-pass.sh'
    script.write_text('#!/bin/sh\ntouch %s\ncat %s\n' % (marker, password_file_of(tmp_path, 'prod', proj)))
    os.chmod(str(script), 0o755)
    config = (proj / 'ansible.cfg').read_text()
    (proj / 'ansible.cfg').write_text(config.replace(str(password_file_of(tmp_path, 'prod', proj)), 'get-vault-pass.sh'))
    for check in (True, False):
        rc, output = init_from(installed_collections, tmp_path, proj, '-e', 'project_init_force=true', check=check)
        flat = ' '.join(output.split())
        assert not marker.exists(), 'init ran the password script the project names'
        assert rc == 0, flat[-3000:]
        assert 'names a password script %s: init keeps it and does not run it' % script in flat, flat[-3000:]
        assert 'Read %s first: every Ansible command run in this project runs it, as you.' % script in flat, flat[-3000:]
    assert config_password_file(proj) == str(script)


def test_a_vault_that_is_not_encrypted_is_named_with_the_fix(tmp_path, installed_collections):
    proj = tmp_path / 'prod'
    rc, output = init_from(installed_collections, tmp_path, proj)
    assert rc == 0, output[-3000:]
    (proj / VAULT).write_text('vault_pki_ca_passphrase: in-the-clear\n')
    for check in (True, False):
        rc, output = init_from(installed_collections, tmp_path, proj, check=check)
        flat = ' '.join(output.split())
        assert rc != 0 and 'the vault is not encrypted: ansible-vault encrypt %s' % (proj / VAULT) in flat, flat[-3000:]
        assert 'is not opened by any of the password files' not in flat, 'the message blames the password files'
    assert (proj / VAULT).read_text() == 'vault_pki_ca_passphrase: in-the-clear\n'


def test_a_password_script_for_a_new_vault_is_refused_not_run(tmp_path, installed_collections):
    """A new vault is encrypted with the password file's content: a script's text is no password, and init runs none."""
    marker = tmp_path / 'the-script-ran'
    script = tmp_path / 'secrets' / 'get-vault-pass.sh'
    script.parent.mkdir()
    script.write_text('#!/bin/sh\ntouch %s\necho a-password\n' % marker)
    os.chmod(str(script), 0o700)
    proj = tmp_path / 'prod'
    for check in (True, False):
        rc, output = init_from(installed_collections, tmp_path, proj, '-e', 'project_init_vault_password_file=%s' % script,
                               check=check)
        flat = ' '.join(output.split())
        assert rc != 0 and 'The vault password file %s is executable' % script in flat, flat[-3000:]
        assert '-e project_init_vault_password_file=<file>' in flat
        assert not marker.exists() and not (proj / VAULT).exists()
