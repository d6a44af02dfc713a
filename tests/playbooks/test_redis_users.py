"""Which Redis ACL users the redis_tls role gives Redis, and which stay off after revoke.yml: the role's own
defaults and vars, rendered by ansible-playbook on the control node (no host is contacted)."""
import hashlib
import json
import re

import yaml

from test_preflight import ROOT, run_playbook

VAULTED = 'Vaulted-worker1-password-0123'


def users_of(tmp_path, kept_out=(), revoked=None, acl_passwords=None):
    pki = tmp_path / 'pki'
    (pki / 'redis-acl').mkdir(parents=True, exist_ok=True)
    for host in kept_out:
        (pki / 'kept-out').mkdir(exist_ok=True)
        (pki / 'kept-out' / host).write_text('revoked\n')
    for host, password in (revoked or {}).items():
        (pki / 'revoked-redis').mkdir(exist_ok=True)
        (pki / 'revoked-redis' / host).write_text(hashlib.sha256(password.encode()).hexdigest() + '\n')
    fleet = {'vars': {'fleetpki_pki_dir': str(pki), 'fleetpki_redis_acl_passwords': acl_passwords or {}},
             'children': {'redis_servers': {'hosts': {'r1': None}}, 'workers': {'hosts': {'w1': None, 'w2': None}},
                          'redis_clients': {'hosts': {'p1': None}}}}
    inventory = tmp_path / 'hosts.yml'
    inventory.write_text(yaml.safe_dump({'fleet': fleet}))
    playbook = tmp_path / 'users.yml'
    playbook.write_text(yaml.safe_dump([{'hosts': 'r1', 'gather_facts': False, 'tasks': [
        {'ansible.builtin.include_vars': str(ROOT / 'roles' / 'redis_tls' / 'defaults' / 'main.yml')},
        {'ansible.builtin.include_vars': str(ROOT / 'roles' / 'redis_tls' / 'vars' / 'main.yml')},
        {'ansible.builtin.debug': {'msg': "USERS {{ __redis_tls_acl_users | map(attribute='name') "
                                          "| zip(__redis_tls_acl_users | map(attribute='enabled', default=true)) "
                                          "| list | to_json }}"}}]}]))
    rc, output = run_playbook(inventory, playbook)
    assert rc == 0, output[-3000:]
    return dict(json.loads(re.search(r'USERS (\[.*\])', output).group(1).replace('\\"', '"'))), pki


def test_one_user_per_client_host_and_the_admin(tmp_path):
    users, pki = users_of(tmp_path)
    assert users == {'fleetpki-admin': True, 'w1': True, 'w2': True, 'p1': True}
    assert sorted(p.name for p in (pki / 'redis-acl').iterdir()) == ['fleetpki-admin', 'p1', 'w1', 'w2']


def test_a_revoked_vaulted_password_keeps_its_user_off_until_the_vault_changes(tmp_path):
    users, dummy = users_of(tmp_path, revoked={'w1': VAULTED}, acl_passwords={'w1': VAULTED})
    assert users['w1'] is False and users['w2'] is True
    users, dummy = users_of(tmp_path, revoked={'w1': VAULTED}, acl_passwords={'w1': VAULTED + '-new'})
    assert users['w1'] is True


def test_a_renewed_password_turns_the_user_on_and_a_kept_out_host_stays_off(tmp_path):
    users, dummy = users_of(tmp_path, revoked={'w2': 'the-password-it-had-when-revoked'})
    assert users['w2'] is True
    users, dummy = users_of(tmp_path, kept_out=['w2'])
    assert users['w2'] is False and users['w1'] is True
