"""tests/tools/galaxy_import.sh names the repository without the URL's credentials, in its log and in the tarball.

A CI clone's origin is https://gitlab-ci-token:<token>@host/...: the script prints the repository it gives
galaxy.yml and writes it into MANIFEST.json, so the token must be gone before either. The test runs the script's
--print-repository mode (no build, no galaxy-importer) from a temporary checkout whose origin carries a fake token.
"""
import json
import pathlib
import shutil
import subprocess
import sys
import tarfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKEN = 'glcbt-fake-token-0123456789'


def python_with_yaml_venv():
    """A venv whose python has PyYAML, for RELEASE_VENV: .venv-release, else .venv, else the one running pytest."""
    for venv in (ROOT / '.venv-release', ROOT / '.venv', pathlib.Path(sys.executable).parent.parent):
        if (venv / 'bin' / 'python').exists():
            return str(venv)
    pytest.skip('no venv: run make setup')
    return None


@pytest.fixture(name='checkout')
def fixture_checkout(tmp_path):
    """A git checkout holding the script and galaxy.yml (without a repository key), and no origin yet."""
    (tmp_path / 'tests' / 'tools').mkdir(parents=True)
    shutil.copy2(str(ROOT / 'tests' / 'tools' / 'galaxy_import.sh'), str(tmp_path / 'tests' / 'tools'))
    shutil.copy2(str(ROOT / 'galaxy.yml'), str(tmp_path))
    subprocess.run(['git', 'init', '-q', str(tmp_path)], check=True)
    return tmp_path


def galaxy_import(checkout, mode, **env):
    """galaxy_import.sh MODE run from CHECKOUT: (exit status, output)."""
    env = dict(env, PATH='/usr/bin:/bin', HOME=str(checkout), RELEASE_VENV=python_with_yaml_venv())
    proc = subprocess.run(['bash', str(checkout / 'tests' / 'tools' / 'galaxy_import.sh'), mode],
                          cwd=str(checkout), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=300, check=False)
    return proc.returncode, proc.stdout


def print_repository(checkout, **env):
    rc, out = galaxy_import(checkout, '--print-repository', **env)
    assert rc == 0, out
    return out


@pytest.mark.parametrize('url, expected', [
    ('https://gitlab-ci-token:%s@gitlab.internal/ops/fleetpki.git' % TOKEN, 'https://gitlab.internal/ops/fleetpki.git'),
    ('https://%s@github.com/ops/fleetpki.git' % TOKEN, 'https://github.com/ops/fleetpki.git'),
    ('https://gitlab.internal/ops/fleetpki.git', 'https://gitlab.internal/ops/fleetpki.git'),
])
def test_origin_credentials_are_stripped(checkout, url, expected):
    subprocess.run(['git', '-C', str(checkout), 'remote', 'add', 'origin', url], check=True)
    out = print_repository(checkout)
    assert TOKEN not in out
    assert "galaxy.yml repository: %s (from the checkout's origin remote)" % expected in out


def test_repository_variable_credentials_are_stripped(checkout):
    out = print_repository(checkout, FLEETPKI_REPOSITORY_URL='https://ci:%s@gitlab.internal/ops/fleetpki' % TOKEN)
    assert TOKEN not in out
    assert 'galaxy.yml repository: https://gitlab.internal/ops/fleetpki (from FLEETPKI_REPOSITORY_URL)' in out


@pytest.mark.parametrize('userinfo', ['ci:%s' % TOKEN, TOKEN])
def test_a_committed_repository_with_credentials_is_refused(checkout, userinfo):
    """A token in galaxy.yml is in git already: the release stops and says so, without printing it again."""
    with open(str(checkout / 'galaxy.yml'), 'a') as galaxy:
        galaxy.write('repository: https://%s@gitlab.internal/ops/fleetpki.git\n' % userinfo)
    rc, out = galaxy_import(checkout, '--print-repository')
    assert rc != 0 and TOKEN not in out, out
    assert "galaxy.yml's repository has a user or password in it" in out and 'https://gitlab.internal/ops/fleetpki.git' in out


def test_the_built_manifest_names_the_repository_without_credentials(tmp_path):
    """The tarball the release uploads: its MANIFEST.json has the injected repository, user and password gone."""
    listed = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=str(ROOT), check=True,
                            stdout=subprocess.PIPE).stdout.decode().split('\0')
    for name in listed:
        if name and not name.startswith('collections/') and (ROOT / name).is_file() and not (ROOT / name).is_symlink():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(str(ROOT / name), str(tmp_path / name))
    subprocess.run(['git', 'init', '-q', str(tmp_path)], check=True)
    subprocess.run(['git', '-C', str(tmp_path), 'remote', 'add', 'origin',
                    'https://gitlab-ci-token:%s@gitlab.internal/ops/fleetpki.git' % TOKEN], check=True)
    rc, out = galaxy_import(tmp_path, '--build-only')
    assert rc == 0, out
    tarball = pathlib.Path(out.strip().splitlines()[-1])
    with tarfile.open(str(tarball)) as tar:
        manifest = json.load(tar.extractfile('MANIFEST.json'))
        assert not [member.name for member in tar.getmembers()
                    if member.isfile() and TOKEN.encode() in tar.extractfile(member).read()]
    assert manifest['collection_info']['repository'] == 'https://gitlab.internal/ops/fleetpki.git'
    assert TOKEN not in out


def test_the_tarball_check_refuses_a_manifest_url_with_credentials(tmp_path):
    """What stops a galaxy.yml URL with a token when the tarball is built by anything else (make build-check)."""
    manifest = tmp_path / 'MANIFEST.json'
    manifest.write_text(json.dumps({'collection_info': {'repository': 'https://ci:%s@gitlab.internal/x' % TOKEN}}))
    tarball = tmp_path / 'fleetpki-mtls-0.0.1.tar.gz'
    with tarfile.open(str(tarball), 'w:gz') as tar:
        tar.add(str(manifest), arcname='MANIFEST.json')
    proc = subprocess.run([sys.executable, str(ROOT / 'tests' / 'build' / 'collection_tarball.py'), '--check', str(tarball)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=60, check=False)
    assert proc.returncode == 1 and 'MANIFEST.json (a user or password in collection_info.repository)' in proc.stdout, proc.stdout
    assert TOKEN not in proc.stdout
