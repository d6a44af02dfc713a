"""Session fixtures of tests/playbooks: the collection as an operator has it, built and installed once.

collection_tarball: the tarball of this tree from tests/build/collection_tarball.py, which builds a tree only once
(its cache is keyed on the tree, so make build-check and tests/install/run.sh reuse the same build) and refuses a
tarball holding a vault, a private key or a URL with credentials.
installed_collections: that tarball installed once per session into a temporary collections path (what an
operator's ansible.cfg names as collections_path).
"""
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get('VIRTUAL_ENV') or ROOT / '.venv') / 'bin'


@pytest.fixture(name='collection_tarball', scope='session')
def fixture_collection_tarball():
    proc = subprocess.run([sys.executable, str(ROOT / 'tests' / 'build' / 'collection_tarball.py')],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=900,
                          check=False)
    assert proc.returncode == 0, proc.stdout
    return pathlib.Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(name='installed_collections', scope='session')
def fixture_installed_collections(collection_tarball):
    """Installed from a temporary directory with no ANSIBLE_CONFIG: inside the checkout, ansible-galaxy reads its
    ansible.cfg and answers "already installed" (collections/ links back to the tree). The directory is under /tmp
    and 0755, not under pytest's 0700 tmp, so a test may run the installed playbooks as another user."""
    work = pathlib.Path(tempfile.mkdtemp(prefix='fleetpki-installed-'))
    os.chmod(str(work), 0o755)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith('ANSIBLE_') and key not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    env['ANSIBLE_NOCOLOR'] = '1'
    proc = subprocess.run([str(BIN / 'ansible-galaxy'), 'collection', 'install', '--force', '-p',
                           str(work / 'collections'), str(collection_tarball)], cwd=str(work), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout
    assert (work / 'collections' / 'ansible_collections' / 'fleetpki' / 'mtls' / 'MANIFEST.json').is_file(), proc.stdout
    yield work / 'collections'
    shutil.rmtree(str(work), ignore_errors=True)
