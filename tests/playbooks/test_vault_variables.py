"""A secret that the vault should provide but does not: the preflight names the variable, the file that keeps it
and --ask-vault-pass, before anything changes.

The scaffold keeps `pki_ca_passphrase: "{{ vault_pki_ca_passphrase }}"` in group_vars/all/vars.yml and the
vault_ variables in group_vars/all/vault.yml (encrypted). Run without the vault (or with a vault that lacks the
variable), the indirection is undefined: before this check the CA was then made with an unencrypted key.
Same fake inventory as test_preflight.py (hosts that cannot be reached); pki.yml contacts none of them.
"""
import subprocess

import yaml

from test_preflight import FLEET, assert_stopped_before_any_change, inventory, playbook

VAULT_HINT = 'run with --ask-vault-pass or --vault-password-file <file>'


def group_vars(tmp_path, name, data):
    directory = tmp_path / 'group_vars' / 'all'
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(yaml.safe_dump(data))
    return directory / name


def test_an_undefined_vault_variable_is_named_with_its_file_and_the_vault_options(tmp_path):
    group_vars(tmp_path, 'vars.yml', {'pki_ca_passphrase': '{{ vault_pki_ca_passphrase }}',
                                      'pki_backup_passphrase': '{{ vault_pki_backup_passphrase }}'})
    rc, output = playbook(inventory(tmp_path, FLEET), 'pki.yml')
    assert_stopped_before_any_change(tmp_path, rc, output, VAULT_HINT)
    flat = ' '.join(output.split())
    for variable in ('pki_ca_passphrase', 'pki_backup_passphrase'):
        assert ('%s refers to vault_%s, which is not defined' % (variable, variable)) in flat, flat[-3000:]
    assert 'group_vars/all/vault.yml' in flat and 'encrypted' in flat, flat[-3000:]


def test_an_optional_vault_reference_with_a_default_is_not_a_problem(tmp_path):
    group_vars(tmp_path, 'vars.yml', {'site_note': "{{ vault_site_note | default('') }}"})
    rc, output = playbook(inventory(tmp_path, FLEET), 'pki.yml')
    assert rc == 0, output[-3000:]


def test_a_redis_secret_of_one_host_that_refers_to_a_missing_vault_variable(tmp_path):
    path = inventory(tmp_path, FLEET)
    (tmp_path / 'host_vars').mkdir()
    (tmp_path / 'host_vars' / 'pf-redis1.yml').write_text(yaml.safe_dump(
        {'fleetpki_redis_admin_password': '{{ vault_redis1_admin_password }}'}))
    rc, output = playbook(path, 'pki.yml')
    assert_stopped_before_any_change(tmp_path, rc, output, VAULT_HINT)
    flat = ' '.join(output.split())
    assert 'pf-redis1: fleetpki_redis_admin_password refers to vault_redis1_admin_password' in flat, flat[-3000:]


def test_an_encrypted_ca_key_without_its_passphrase(tmp_path):
    """The CA was made with a passphrase; a later run without it (no vault loaded) stops in the preflight."""
    passphrase = 'first-run-passphrase-0123456789'
    # In group_vars/all, as the scaffold keeps it: localhost and every fleet host see the same value (a value of the
    # fleet group only is refused, test_preflight_secret_scope.py).
    hosts = inventory(tmp_path, FLEET)
    hosts.write_text(yaml.safe_dump(dict(yaml.safe_load(hosts.read_text()), all={'vars': {'pki_ca_passphrase': passphrase}})))
    rc, output = playbook(hosts, 'pki.yml')
    assert rc == 0, output[-3000:]
    assert (tmp_path / 'pki' / 'ca' / 'ca-key.pem').read_text().startswith('-----BEGIN ENCRYPTED PRIVATE KEY')
    rc, output = playbook(inventory(tmp_path, FLEET), 'pki.yml')
    assert rc != 0
    flat = ' '.join(output.split())
    assert 'is encrypted and pki_ca_passphrase is not set' in flat and VAULT_HINT in flat, flat[-3000:]
    assert 'group_vars/all/vault.yml' in flat, flat[-3000:]


def test_the_vault_opened_with_a_password_file_passes_and_the_ca_key_is_encrypted(tmp_path):
    """The scaffold's layout with a real encrypted vault.yml: the check lets it through."""
    group_vars(tmp_path, 'vars.yml', {'pki_ca_passphrase': '{{ vault_pki_ca_passphrase }}'})
    password_file = tmp_path / 'vault-password'
    password_file.write_text('test-vault-password\n')
    vault = group_vars(tmp_path, 'vault.yml', {'vault_pki_ca_passphrase': 'vaulted-passphrase-0123456789'})
    subprocess.run(['ansible-vault', 'encrypt', '--vault-password-file', str(password_file), str(vault)],
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert vault.read_text().startswith('$ANSIBLE_VAULT')
    rc, output = playbook(inventory(tmp_path, FLEET), 'pki.yml', '--vault-password-file', str(password_file))
    assert rc == 0, output[-3000:]
    assert (tmp_path / 'pki' / 'ca' / 'ca-key.pem').read_text().startswith('-----BEGIN ENCRYPTED PRIVATE KEY')
    assert 'vaulted-passphrase-0123456789' not in output
