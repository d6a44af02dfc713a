"""The renewal job installed from the built tarball runs from the operator's project, not from the collection.

The collection is built and installed into a temp collections path once per session (conftest.py's
installed_collections, as an operator installs it); a project dir with its own ansible.cfg runs
fleetpki.mtls.renewal_timer by FQCN; the test then runs the exact ExecStart of the unit it wrote, with the unit's
Environment and WorkingDirectory and nothing else from this checkout, and the command must resolve every playbook
and role of the scheduled job (--list-tasks). No fleet host is contacted.
"""
import os
import pathlib
import re
import shlex
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get('VIRTUAL_ENV') or ROOT / '.venv') / 'bin'
# What systemd gives a service beside the unit's own Environment= lines.
SYSTEMD_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'


def clean_env(**extra):
    """The environment of a user outside this checkout: no ANSIBLE_* or PYTHONPATH pointing back at it."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith('ANSIBLE_') and key not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    env.update(ANSIBLE_NOCOLOR='1', **extra)
    return env


def run(argv, cwd, env, timeout=300):
    proc = subprocess.run([str(a) for a in argv], cwd=str(cwd), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=timeout, check=False)
    return proc.returncode, proc.stdout


def make_project(tmp_path, collections):
    """An operator's project: its own ansible.cfg (naming where the collection is installed) and an inventory."""
    proj = tmp_path / 'proj'
    (proj / 'inventory').mkdir(parents=True)
    (proj / 'ansible.cfg').write_text('[defaults]\ninventory = inventory/hosts.yml\ncollections_path = %s\n'
                                      'inject_facts_as_vars = False\ninterpreter_python = auto_silent\n' % collections)
    (proj / 'inventory' / 'hosts.yml').write_text(
        'fleet:\n  children:\n    redis_servers:\n      hosts:\n        it-redis1:\n    workers:\n      hosts:\n'
        '        it-worker1:\n    api_servers:\n      hosts:\n        it-api1:\n    pki_clients:\n      hosts: {}\n')
    for path in [tmp_path, proj, proj / 'inventory']:
        os.chmod(str(path), 0o755)
    return proj


def install_timer(proj, units, *extra):
    """playbooks/renewal_timer.yml by its FQCN, from the project (its ansible.cfg found in the cwd)."""
    return run([BIN / 'ansible-playbook', 'fleetpki.mtls.renewal_timer', '-e', 'renewal_timer_unit_dir=%s' % units,
                '-e', 'renewal_timer_manage_service=false'] + list(extra), proj, clean_env())


def unit_settings(service):
    exec_start = re.search(r'^ExecStart=(.*)$', service, re.M).group(1)
    workdir = re.search(r'^WorkingDirectory=(.*)$', service, re.M).group(1)
    environment = {}
    for value in re.findall(r'^Environment=(.*)$', service, re.M):
        key, val = shlex.split(value)[0].split('=', 1)
        environment[key] = val
    return exec_start, workdir, environment


def run_as_systemd_would(service, *append):
    """The unit's ExecStart with its Environment and WorkingDirectory, and only what systemd adds itself."""
    exec_start, workdir, environment = unit_settings(service)
    env = dict(environment, PATH=SYSTEMD_PATH, HOME=os.path.expanduser('~'), LANG='C.UTF-8')
    proc = subprocess.run(shlex.split(exec_start) + list(append), cwd=workdir, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=300, check=False)
    return proc.returncode, proc.stdout


def test_the_job_from_an_installed_collection_runs_from_the_operators_project(tmp_path, installed_collections):
    collections = installed_collections
    proj = make_project(tmp_path, collections)
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = install_timer(proj, units)
    assert rc == 0, output[-3000:]
    service = (units / 'fleetpki-renewal.service').read_text()
    exec_start, workdir, environment = unit_settings(service)
    assert workdir == str(proj)
    assert environment['ANSIBLE_CONFIG'] == str(proj / 'ansible.cfg')
    argv = shlex.split(exec_start)
    assert argv[1:] == ['-i', str(proj / 'inventory' / 'hosts.yml'), 'fleetpki.mtls.scheduled_renewal'], exec_start
    # The venv's ansible-playbook may live in this checkout; nothing else of it may reach the unit.
    assert str(ROOT) not in service.replace(str(BIN), '') and str(collections) not in exec_start
    rc, output = run_as_systemd_would(service, '--list-tasks')
    assert rc == 0, output[-3000:]
    for task in ['fleetpki.mtls.pki : Issue or renew', 'Redis over mTLS', 'Certificate expiry report and metrics']:
        assert task in output, output[-3000:]
    rc, output = install_timer(proj, units)
    assert rc == 0 and 'changed=0' in output[output.rindex('PLAY RECAP'):], output[-3000:]


def test_a_project_whose_config_does_not_find_the_collection_is_refused_before_anything_is_installed(tmp_path, installed_collections):
    """The collection was installed for this run (ANSIBLE_COLLECTIONS_PATH) but the project's ansible.cfg does not
    name it: the nightly job would fail with "role not found", so the role refuses now and says how to fix it."""
    collections = installed_collections
    proj = make_project(tmp_path, tmp_path / 'nowhere')
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = run([BIN / 'ansible-playbook', 'fleetpki.mtls.renewal_timer', '-e', 'renewal_timer_unit_dir=%s' % units,
                      '-e', 'renewal_timer_manage_service=false'], proj,
                     clean_env(ANSIBLE_COLLECTIONS_PATH=str(collections)))
    assert rc != 0
    flat = ' '.join(output.split())
    assert "the renewal job's command fails" in flat and 'fleetpki.mtls.scheduled_renewal' in flat, flat[-3000:]
    assert 'collections_path' in flat and str(proj / 'ansible.cfg') in flat, flat[-3000:]
    assert list(units.iterdir()) == [], 'units were written before the check failed'


def test_a_collection_another_user_can_write_is_refused(tmp_path, installed_collections):
    """The job runs the collection's code as root: its install dir is checked like the project and the venv."""
    collections = installed_collections
    proj = make_project(tmp_path, collections)
    units = tmp_path / 'units'
    units.mkdir()
    roles = collections / 'ansible_collections' / 'fleetpki' / 'mtls' / 'roles' / 'pki' / 'tasks'
    mode = roles.stat().st_mode & 0o7777
    os.chmod(str(roles), 0o777)
    try:
        rc, output = install_timer(proj, units)
    finally:
        os.chmod(str(roles), mode)
    assert rc != 0
    flat = ' '.join(output.split())
    assert 'these paths can be written by another user' in flat and '%s (writable by others, mode 777)' % roles in flat, \
        flat[-3000:]
    assert list(units.iterdir()) == []


def test_no_ansible_cfg_in_use_is_refused_with_the_fix(tmp_path, installed_collections):
    collections = installed_collections
    proj = make_project(tmp_path, collections)
    (proj / 'ansible.cfg').unlink()
    units = tmp_path / 'units'
    units.mkdir()
    rc, output = run([BIN / 'ansible-playbook', '-i', proj / 'inventory' / 'hosts.yml', 'fleetpki.mtls.renewal_timer',
                      '-e', 'renewal_timer_unit_dir=%s' % units, '-e', 'renewal_timer_manage_service=false'], proj,
                     clean_env(ANSIBLE_COLLECTIONS_PATH=str(collections), HOME=str(tmp_path)))
    assert rc != 0
    flat = ' '.join(output.split())
    assert 'no ansible.cfg of a project is in use' in flat and 'renewal_timer_project_dir' in flat, flat[-3000:]
    assert list(units.iterdir()) == []
