"""Fixtures for the fleet checks: one testinfra host per lab container, and paths on the control node."""
import os
import pathlib
import subprocess
import uuid

import pytest
import testinfra

INVENTORY = os.environ.get('MOLECULE_INVENTORY_FILE', '')
PROJECT = pathlib.Path(os.environ.get('MOLECULE_PROJECT_DIRECTORY', pathlib.Path(__file__).parents[3]))
REDIS_PASSWORD = 'molecule-redis-Pa55w0rd-7f3c9e'
HOSTS = ('redis1', 'worker1', 'worker2', 'api1', 'pxe1')


@pytest.fixture(scope='session')
def fleet():
    assert INVENTORY, 'run through molecule (MOLECULE_INVENTORY_FILE is not set)'
    return {name: testinfra.get_host('ansible://%s?ansible_inventory=%s' % (name, INVENTORY)) for name in HOSTS}


@pytest.fixture(scope='session')
def pki_dir():
    return PROJECT / '.build' / 'molecule-pki'


@pytest.fixture()
def unique():
    return uuid.uuid4().hex[:12]


def run_playbook(*args):
    """ansible-playbook from the project against molecule's inventory; returns (rc, output)."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(PROJECT / 'ansible.cfg'), ANSIBLE_NOCOLOR='1',
               ANSIBLE_COLLECTIONS_PATH=str(PROJECT / 'collections'))
    proc = subprocess.run(['ansible-playbook', '-i', INVENTORY] + list(args), cwd=str(PROJECT), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=900,
                          check=False)
    return proc.returncode, proc.stdout
