"""The fleet's PKI lives outside the inventory, and an old PKI inside it is never replaced by a new CA.

Each test copies inventories/lab into a project of its own (a tmp dir with an ansible.cfg that points back at this
checkout's collections and roles), so the default PKI dir (<project>/pki/<inventory dir name>) is the tmp dir's,
never this checkout's pki/lab of make demo. playbooks/pki.yml runs on the control node only: the lab's hosts are
never contacted.
"""
import json
import os
import shlex
import shutil
import subprocess

from test_preflight import ROOT

LAB_HOSTS = ['api1', 'pxe1', 'redis1', 'worker1', 'worker2']


def project(tmp_path, config=True):
    """A copy of inventories/lab in a project dir; returns (project dir, inventory dir)."""
    proj = tmp_path / 'proj'
    inventory = proj / 'inventories' / 'lab'
    shutil.copytree(str(ROOT / 'inventories' / 'lab'), str(inventory))
    if config:
        (proj / 'ansible.cfg').write_text('[defaults]\ninject_facts_as_vars = False\ncollections_path = %s\nroles_path = %s\n'
                                          % (ROOT / 'collections', ROOT / 'roles'))
    return proj, inventory


def run(proj, argv, config=True):
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_FORCE_COLOR='0', ANSIBLE_INJECT_FACT_VARS='False')
    env.pop('ANSIBLE_CONFIG', None)
    if config:
        env['ANSIBLE_CONFIG'] = str(proj / 'ansible.cfg')
    else:
        # No ansible.cfg anywhere: the collection and roles come from the environment instead.
        env.update(ANSIBLE_COLLECTIONS_PATH=str(ROOT / 'collections'), ANSIBLE_ROLES_PATH=str(ROOT / 'roles'))
    proc = subprocess.run(argv, cwd=str(proj), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def pki_play(proj, inventory, *extra, config=True):
    """pki.yml on the lab's inventory, its hosts not started: keys made on the control node (no host is reached)."""
    rc, out, err = run(proj, ['ansible-playbook', '-i', str(inventory), str(ROOT / 'playbooks' / 'pki.yml'),
                              '-e', '{"fleetpki_host_keys": []}'] + list(extra), config=config)
    return rc, out + err


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob('*') if p.is_file())


def test_pki_goes_to_the_project_and_the_inventory_stays_clean(tmp_path):
    proj, inventory = project(tmp_path)
    before = files_under(inventory)
    rc, output = pki_play(proj, inventory)
    assert rc == 0, output[-3000:]
    assert files_under(inventory) == before, 'the PKI play wrote under the inventory dir'
    pki = proj / 'pki' / 'lab'
    assert (pki / 'ca' / 'ca-cert.pem').is_file() and (pki / 'ca' / 'ca-key.pem').is_file()
    assert (pki / 'issued' / 'worker-worker1-cert.pem').is_file()
    rc, out, err = run(proj, ['ansible-inventory', '-i', str(inventory), '--list'])
    assert rc == 0, err
    assert 'WARNING' not in out + err, err
    assert sorted(json.loads(out)['_meta']['hostvars']) == LAB_HOSTS


def test_the_pki_dir_moves_with_the_project(tmp_path):
    proj, inventory = project(tmp_path)
    rc, output = pki_play(proj, inventory)
    assert rc == 0, output[-3000:]
    ca = (proj / 'pki' / 'lab' / 'ca' / 'ca-cert.pem').read_bytes()
    moved = tmp_path / 'moved'
    proj.rename(moved)
    rc, output = pki_play(moved, moved / 'inventories' / 'lab')
    assert rc == 0, output[-3000:]
    assert (moved / 'pki' / 'lab' / 'ca' / 'ca-cert.pem').read_bytes() == ca
    assert 'changed=0' in output[output.rindex('PLAY RECAP'):], output[-3000:]


def test_an_old_pki_in_the_inventory_is_used_in_place_with_the_mv_command_then_moved(tmp_path):
    proj, inventory = project(tmp_path)
    old = inventory / 'pki'
    # The layout of earlier versions: the PKI in <inventory dir>/pki.
    rc, output = pki_play(proj, inventory, '-e', json.dumps({'fleetpki_pki_dir': str(old)}))
    assert rc == 0, output[-3000:]
    ca = (old / 'ca' / 'ca-cert.pem').read_bytes()
    key = (old / 'ca' / 'ca-key.pem').read_bytes()

    rc, output = pki_play(proj, inventory)
    assert rc == 0, output[-3000:]
    flat = ' '.join(output.split())
    assert 'inside the inventory' in flat, output[-3000:]
    assert not (proj / 'pki' / 'lab').exists(), 'a second PKI (a new CA) was made beside the old one'
    assert (old / 'ca' / 'ca-cert.pem').read_bytes() == ca
    assert 'changed=0' in output[output.rindex('PLAY RECAP'):], output[-3000:]

    # The warning's command, run as the operator would paste it, moves the PKI; the next run uses it, unchanged.
    command = next(line for line in output.splitlines() if line.strip().startswith('mkdir -p ')).strip()
    subprocess.run(['sh', '-ec', command], cwd=str(tmp_path), check=True)
    assert not old.exists()
    rc, output = pki_play(proj, inventory)
    assert rc == 0, output[-3000:]
    assert 'inside the inventory' not in ' '.join(output.split()), output[-3000:]
    assert (proj / 'pki' / 'lab' / 'ca' / 'ca-cert.pem').read_bytes() == ca
    assert (proj / 'pki' / 'lab' / 'ca' / 'ca-key.pem').read_bytes() == key
    assert 'changed=0' in output[output.rindex('PLAY RECAP'):], output[-3000:]
    assert files_under(inventory) == files_under(ROOT / 'inventories' / 'lab')


def test_an_old_pki_and_a_new_one_both_present_stop_the_run(tmp_path):
    proj, inventory = project(tmp_path)
    rc, output = pki_play(proj, inventory, '-e', json.dumps({'fleetpki_pki_dir': str(inventory / 'pki')}))
    assert rc == 0, output[-3000:]
    rc, output = pki_play(proj, inventory, '-e', json.dumps({'fleetpki_pki_dir': str(proj / 'pki' / 'lab')}))
    assert rc == 0, output[-3000:]
    cas = sorted(p.read_bytes() for p in proj.rglob('ca-cert.pem') if p.parent.name == 'ca')
    rc, output = pki_play(proj, inventory)
    assert rc != 0
    flat = ' '.join(output.split())
    assert 'two PKI directories' in flat and str(inventory / 'pki') in flat and 'fleetpki_pki_dir' in flat, flat[-3000:]
    assert sorted(p.read_bytes() for p in proj.rglob('ca-cert.pem') if p.parent.name == 'ca') == cas


def test_without_an_ansible_cfg_the_run_asks_for_fleetpki_pki_dir(tmp_path):
    proj, inventory = project(tmp_path, config=False)
    rc, output = pki_play(proj, inventory, config=False)
    assert rc != 0
    assert 'set fleetpki_pki_dir' in ' '.join(output.split()), output[-3000:]
    assert not (proj / 'pki').exists() and files_under(inventory) == files_under(ROOT / 'inventories' / 'lab')


def test_the_mv_command_quotes_its_paths(tmp_path):
    """A project path with a space still gives a command that works when pasted."""
    spaced = tmp_path / 'my fleet'
    spaced.mkdir()
    proj, inventory = project(spaced)
    old = inventory / 'pki'
    rc, output = pki_play(proj, inventory, '-e', json.dumps({'fleetpki_pki_dir': str(old)}))
    assert rc == 0, output[-3000:]
    rc, output = pki_play(proj, inventory)
    assert rc == 0, output[-3000:]
    command = next(line for line in output.splitlines() if line.strip().startswith('mkdir -p ')).strip()
    assert shlex.quote(str(old)) in command
    subprocess.run(['sh', '-ec', command], cwd=str(tmp_path), check=True)
    assert (proj / 'pki' / 'lab' / 'ca' / 'ca-cert.pem').is_file() and not old.exists()


def test_an_inventory_outside_the_project_of_the_ansible_cfg_in_use_is_refused(tmp_path):
    """Ansible found an ansible.cfg that is not this fleet's (another project's, ~/.ansible.cfg): its pki/ may hold
    nothing, and the run would make a new CA for a fleet that has one. It stops and asks for fleetpki_pki_dir."""
    proj, inventory = project(tmp_path)
    elsewhere = tmp_path / 'elsewhere' / 'lab'
    shutil.move(str(inventory), str(elsewhere))
    rc, output = pki_play(proj, elsewhere)
    assert rc != 0
    flat = ' '.join(output.split())
    assert 'is not inside the directory of the ansible.cfg in use' in flat and 'fleetpki_pki_dir' in flat, flat[-2000:]
    assert not (proj / 'pki').exists()


def test_a_users_own_ansible_cfg_is_no_project(tmp_path):
    """~/.ansible.cfg sits above every project: its pki/ is no fleet's. The run asks for fleetpki_pki_dir."""
    proj, inventory = project(tmp_path, config=False)
    config = '[defaults]\ninject_facts_as_vars = False\ncollections_path = %s\nroles_path = %s\n'
    (tmp_path / '.ansible.cfg').write_text(config % (ROOT / 'collections', ROOT / 'roles'))
    env = dict(os.environ, ANSIBLE_NOCOLOR='1', ANSIBLE_CONFIG=str(tmp_path / '.ansible.cfg'))
    proc = subprocess.run(['ansible-playbook', '-i', str(inventory), str(ROOT / 'playbooks' / 'pki.yml')],
                          cwd=str(proj), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300, check=False)
    flat = ' '.join(proc.stdout.split())
    assert proc.returncode != 0 and 'belongs to no project' in flat, flat[-2000:]
    assert not (tmp_path / 'pki').exists()


def test_backups_default_even_for_an_inventory_outside_the_project(tmp_path):
    """The refusal guards the PKI only: with fleetpki_pki_dir set, an inventory elsewhere (molecule's) still gets
    the default backup directory, as pki_backup.yml works it out."""
    proj, inventory = project(tmp_path)
    elsewhere = tmp_path / 'elsewhere' / 'lab'
    shutil.move(str(inventory), str(elsewhere))
    playbook = tmp_path / 'backups.yml'
    playbook.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                        "    - ansible.builtin.debug:\n        msg: \"BACKUPS {{ lookup('fleetpki.mtls.pki_dir', kind='backups') }}\"\n")
    rc, out, err = run(proj, ['ansible-playbook', '-i', str(elsewhere), '-e', 'fleetpki_pki_dir=%s' % (tmp_path / 'p'),
                              str(playbook)])
    assert rc == 0, (out + err)[-2000:]
    assert 'BACKUPS %s' % (proj / 'backups' / 'lab') in out
