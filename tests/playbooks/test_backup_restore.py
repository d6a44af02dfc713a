"""pki_backup.yml and pki_restore.yml on a fake inventory: a restored PKI is the PKI that was backed up.

The inventory's hosts cannot be reached (docker connection to containers that do not exist): playbooks/pki.yml only
works on the control node, and the backup playbooks must not contact any fleet host. The backup passphrase comes
from an ansible-vault encrypted group_vars file, as in production.
"""
import os
import pathlib
import re
import shutil
import stat
import subprocess

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes

ROOT = pathlib.Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / '.venv' / 'bin'
PASSPHRASE = 'Bk9-playbook-backup-passphrase-Qm4'
VAULT_PASSWORD = 'vault-password-for-the-backup-test'
FLEET = {'redis_servers': ['bk-redis1'], 'workers': ['bk-worker1', 'bk-worker2'], 'api_servers': ['bk-api1'],
         'pki_clients': ['bk-pxe1']}


def tool(name):
    path = VENV_BIN / name
    return str(path) if path.exists() else name


def environment(config=ROOT / 'ansible.cfg'):
    return dict(os.environ, ANSIBLE_CONFIG=str(config), ANSIBLE_NOCOLOR='1', PYTHONPATH=str(ROOT / 'collections'))


def make_inventory(tmp_path):
    """A project of its own in tmp_path (ansible.cfg, so the default PKI and backup dirs are tmp_path/pki/inv and
    tmp_path/backups/inv, never this checkout's), with inv/hosts.yml, plus inv/group_vars/all/{main,vault}.yml with
    the backup passphrase in an encrypted vault file."""
    (tmp_path / 'ansible.cfg').write_text('[defaults]\ninject_facts_as_vars = False\ncollections_path = %s\nroles_path = %s\n'
                                          % (ROOT / 'collections', ROOT / 'roles'))
    inventory_dir = tmp_path / 'inv'
    inventory_dir.mkdir()
    # Hosts that do not exist: keys made on the control node (fleetpki_host_keys: []).
    fleet = {'vars': {'ansible_connection': 'community.docker.docker', 'fleetpki_host_keys': [],
                      'fleetpki_redis_password': 'backup-test-password'},
             'children': {group: {'hosts': {host: None for host in hosts}} for group, hosts in FLEET.items()}}
    (inventory_dir / 'hosts.yml').write_text(yaml.safe_dump({'fleet': fleet}))
    group_vars = inventory_dir / 'group_vars' / 'all'
    group_vars.mkdir(parents=True)
    (group_vars / 'main.yml').write_text('---\npki_backup_passphrase: "{{ vault_pki_backup_passphrase }}"\n')
    vault = group_vars / 'vault.yml'
    vault.write_text('---\nvault_pki_backup_passphrase: "%s"\n' % PASSPHRASE)
    password_file = tmp_path / 'vault-password'
    password_file.write_text(VAULT_PASSWORD)
    subprocess.run([tool('ansible-vault'), 'encrypt', '--vault-password-file', str(password_file), str(vault)],
                   cwd=str(ROOT), env=environment(), check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert PASSPHRASE not in vault.read_text()
    return inventory_dir / 'hosts.yml', password_file


def playbook(inventory, password_file, name, *extra):
    argv = [tool('ansible-playbook'), '-i', str(inventory), '--vault-password-file', str(password_file),
            str(ROOT / 'playbooks' / name)] + list(extra)
    proc = subprocess.run(argv, cwd=str(ROOT), env=environment(inventory.parent.parent / 'ansible.cfg'), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300, check=False)
    assert PASSPHRASE not in proc.stdout, 'the backup passphrase was printed'
    return proc.returncode, proc.stdout


def changed_counts(output):
    """{host: changed} from the PLAY RECAP."""
    return dict((host, int(count)) for host, count in re.findall(r'^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)', output, re.M))


def assert_no_change(rc, output):
    assert rc == 0, output[-3000:]
    counts = changed_counts(output)
    assert counts and not any(counts.values()), 'expected no change: %s\n%s' % (counts, output[-3000:])


def tree(root):
    """{relative path: (mode, bytes or None)} below ``root`` (root itself left out)."""
    state = {}
    for dirpath, dirnames, filenames in os.walk(str(root)):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            data = None
            if stat.S_ISREG(info.st_mode):
                with open(path, 'rb') as handle:
                    data = handle.read()
            state[os.path.relpath(path, str(root))] = (stat.S_IMODE(info.st_mode), data)
    return state


def ca_fingerprint(pki_dir):
    cert = x509.load_pem_x509_certificate((pki_dir / 'ca' / 'ca-cert.pem').read_bytes())
    return cert.fingerprint(hashes.SHA256())


def test_backup_delete_restore_and_the_pki_play_changes_nothing(tmp_path):
    inventory, password_file = make_inventory(tmp_path)
    pki_dir = tmp_path / 'pki' / 'inv'

    rc, output = playbook(inventory, password_file, 'pki.yml')
    assert rc == 0, output[-3000:]
    assert_no_change(*playbook(inventory, password_file, 'pki.yml'))
    fingerprint = ca_fingerprint(pki_dir)
    before = tree(pki_dir)
    certs = sorted(name for name in before if name.endswith('-cert.pem') and name.startswith('issued/'))
    assert len(certs) == 5, certs

    # Backup with the dated default archive under <project dir>/backups/<inventory dir name>/, then a rerun changes
    # nothing.
    rc, output = playbook(inventory, password_file, 'pki_backup.yml')
    assert rc == 0, output[-3000:]
    archives = list((tmp_path / 'backups' / 'inv').glob('pki-*.fpkb'))
    assert len(archives) == 1 and re.match(r'^pki-\d{4}-\d{2}-\d{2}\.fpkb$', archives[0].name), archives
    archive = archives[0]
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    data = archive.read_bytes()
    assert b'PRIVATE KEY' not in data and b'BEGIN' not in data
    proc = subprocess.run(['grep', '-c', 'PRIVATE KEY', str(archive)], stdout=subprocess.PIPE, check=False)
    assert proc.returncode == 1, 'grep found a plaintext key in the archive'
    assert_no_change(*playbook(inventory, password_file, 'pki_backup.yml'))

    # The PKI directory is lost; the restore (newest archive in backups/) brings it back as it was.
    shutil.rmtree(str(pki_dir))
    rc, output = playbook(inventory, password_file, 'pki_restore.yml')
    assert rc == 0, output[-3000:]
    assert 'restored %d files' % len([v for v in before.values() if v[1] is not None]) in output, output[-3000:]
    assert tree(pki_dir) == before
    assert_no_change(*playbook(inventory, password_file, 'pki_restore.yml'))

    # The proof: the PKI play keeps the CA and every certificate.
    rc, output = playbook(inventory, password_file, 'pki.yml')
    assert_no_change(rc, output)
    assert ca_fingerprint(pki_dir) == fingerprint
    after = tree(pki_dir)
    for name in certs:
        assert after[name] == before[name], '%s was re-issued after the restore' % name
    assert after == before


def test_restore_refuses_another_ca_unless_forced(tmp_path):
    inventory, password_file = make_inventory(tmp_path)
    pki_dir = tmp_path / 'pki' / 'inv'
    assert playbook(inventory, password_file, 'pki.yml')[0] == 0
    archive = tmp_path / 'offsite' / 'named.fpkb'
    rc, output = playbook(inventory, password_file, 'pki_backup.yml', '-e', 'pki_backup_archive=%s' % archive)
    assert rc == 0 and archive.is_file(), output[-3000:]
    backed_up = tree(pki_dir)

    # A new, different CA takes the directory's place.
    shutil.rmtree(str(pki_dir))
    assert playbook(inventory, password_file, 'pki.yml')[0] == 0
    other = tree(pki_dir)

    rc, output = playbook(inventory, password_file, 'pki_restore.yml', '-e', 'pki_backup_archive=%s' % archive)
    assert rc != 0
    flat = ' '.join(output.split())
    assert 'holds another CA' in flat and 'pki_restore_force=true' in flat, output[-3000:]
    assert tree(pki_dir) == other

    rc, output = playbook(inventory, password_file, 'pki_restore.yml', '-e', 'pki_backup_archive=%s' % archive,
                          '-e', 'pki_restore_force=true')
    assert rc == 0, output[-3000:]
    assert tree(pki_dir) == backed_up
    aside = list((tmp_path / 'pki').glob('inv.pre-restore-*'))
    assert len(aside) == 1 and tree(aside[0]) == other
    assert 'moved to %s' % aside[0] in ' '.join(output.split())


def test_missing_passphrase_stops_before_any_change(tmp_path):
    inventory, password_file = make_inventory(tmp_path)
    for name in ('pki_backup.yml', 'pki_restore.yml'):
        rc, output = playbook(inventory, password_file, name, '-e', '{"pki_backup_passphrase": ""}')
        assert rc != 0
        assert 'pki_backup_passphrase is not set' in ' '.join(output.split()), output[-3000:]
    assert not (tmp_path / 'backups').exists() and not (tmp_path / 'pki').exists()
