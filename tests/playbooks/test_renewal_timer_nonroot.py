"""The renewal job installed by an operator who is not root, as README says: from his project, with sudo for the units.

A throwaway user (home under a temp dir, passwordless sudo through a file in /etc/sudoers.d; both removed after
the test) owns a project whose ansible.cfg finds this checkout's collection, and runs
fleetpki.mtls.renewal_timer from it without naming the job's user: the job must run as him (the owner of the
project), and only the unit files are written as root, to a temp dir. Needs root (to create the user) and sudo;
skipped otherwise. This checkout's venv is built on a Python under /root (unreadable to others): the user gets a
venv of the system's Python 3.11 that reads the checkout venv's site-packages.
"""
import itertools
import os
import pathlib
import pwd
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SITE_PACKAGES = ROOT / '.venv' / 'lib' / ('python%d.%d' % sys.version_info[:2]) / 'site-packages'
SYSTEM_PYTHON = pathlib.Path('/usr/bin/python%d.%d' % sys.version_info[:2])
TOOLS = {'ansible-playbook': 'playbook', 'ansible-doc': 'doc', 'ansible-config': 'config'}

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which('sudo') or not shutil.which('useradd') or not SYSTEM_PYTHON.is_file(),
    reason='needs root, sudo, useradd and %s' % SYSTEM_PYTHON)


def run(argv, **kwargs):
    proc = subprocess.run([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300, check=False, **kwargs)
    return proc.returncode, proc.stdout


_OPERATORS = itertools.count()


@pytest.fixture(scope='module')
def operator():
    """(name, home, bin dir of his venv): a user with passwordless sudo, as README's operator has sudo with -K."""
    base = pathlib.Path(tempfile.mkdtemp(prefix='fleetpki-nonroot-'))
    os.chmod(str(base), 0o755)
    # One user per module that uses the fixture (each gets its own instance), never a name a previous one left.
    name = 'fleetpki-op%d-%d' % (os.getpid(), next(_OPERATORS))
    sudoers = pathlib.Path('/etc/sudoers.d') / name
    rc, output = run(['useradd', '--create-home', '--home-dir', base / 'home', '--shell', '/bin/sh', name])
    assert rc == 0, output
    try:
        sudoers.write_text('%s ALL=(ALL) NOPASSWD: ALL\n' % name)
        os.chmod(str(sudoers), 0o440)
        venv = base / 'venv'
        rc, output = run([SYSTEM_PYTHON, '-m', 'venv', '--without-pip', venv])
        assert rc == 0, output
        pth, = (venv / 'lib').glob('python*/site-packages')
        (pth / 'fleetpki-checkout.pth').write_text('%s\n' % SITE_PACKAGES)
        for tool, module in TOOLS.items():
            (venv / 'bin' / tool).write_text('#!%s/bin/python\nimport sys\nfrom ansible.cli.%s import main\n'
                                             'sys.exit(main())\n' % (venv, module))
            os.chmod(str(venv / 'bin' / tool), 0o755)
        yield name, base / 'home', venv / 'bin'
    finally:
        sudoers.unlink(missing_ok=True)
        run(['userdel', '--remove', name])
        # userdel keeps his private group when a test added another member to it (the umask 002 refusal case).
        run(['groupdel', name])
        shutil.rmtree(str(base), ignore_errors=True)


def as_operator(operator, argv, cwd):
    name, home, bindir = operator
    env = ['env', '-i', 'HOME=%s' % home, 'USER=%s' % name, 'LOGNAME=%s' % name, 'LANG=C.UTF-8', 'ANSIBLE_NOCOLOR=1',
           'PATH=%s:/usr/local/bin:/usr/bin:/bin' % bindir]
    return run(['runuser', '-u', name, '--'] + env + list(argv), cwd=str(cwd))


def test_an_operator_who_is_not_root_gets_a_job_that_runs_as_himself(operator):
    name, home, bindir = operator
    project = home / 'fleets' / 'prod'
    units = home.parent / 'units'
    units.mkdir()
    rc, output = as_operator(operator, ['mkdir', '-p', project / 'inventory'], home)
    assert rc == 0, output
    (project / 'ansible.cfg').write_text('[defaults]\ninventory = inventory/hosts.yml\ncollections_path = %s\n'
                                         'inject_facts_as_vars = False\n' % (ROOT / 'collections'))
    (project / 'inventory' / 'hosts.yml').write_text(
        'fleet:\n  children:\n    redis_servers:\n      hosts:\n        nr-redis1:\n    workers:\n      hosts:\n'
        '        nr-worker1:\n    api_servers:\n      hosts:\n        nr-api1:\n')
    uid = pwd.getpwnam(name).pw_uid
    for path in [project / 'ansible.cfg', project / 'inventory' / 'hosts.yml']:
        os.chown(str(path), uid, -1)
    # README's command, without -K (his sudo needs no password) and with the units in a temp dir.
    rc, output = as_operator(operator, ['ansible-playbook', 'fleetpki.mtls.renewal_timer',
                                        '-e', 'renewal_timer_unit_dir=%s' % units,
                                        '-e', 'renewal_timer_manage_service=false'], project)
    assert rc == 0, output[-3000:]
    service = (units / 'fleetpki-renewal.service').read_text()
    assert re.search(r'^User=(.*)$', service, re.M).group(1) == name, service
    assert 'WorkingDirectory=%s\n' % project in service
    exec_start = re.search(r'^ExecStart=(.*)$', service, re.M).group(1)
    assert exec_start.split()[:3] == [str(bindir / 'ansible-playbook'), '-i', str(project / 'inventory' / 'hosts.yml')]
    # What the job reads as him stays his; only the units (written with sudo) are root's.
    for path in [project, project / 'ansible.cfg', project / 'inventory' / 'hosts.yml']:
        assert path.stat().st_uid == uid, path
    assert (units / 'fleetpki-renewal.service').stat().st_uid == 0
