"""The collection tarball holds the collection and nothing else, even when built from a dirty working tree.

An operator's checkout gathers things that must never reach Galaxy or an Automation Hub: a virtualenv, test
caches, bytecode, and above all a PKI directory with a CA key (`make demo` and a first site.yml make one in the
project). The test copies the tree as git sees it into a temporary directory, adds that dirt, builds with the
same build as `make build-check` (tests/build/collection_tarball.py: ansible-galaxy, then a check of the
content), and reads the tarball back.
"""
import fnmatch
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
from collections import namedtuple

import pytest
import yaml

import collection_tarball
from collection_tarball import ROOT as BUILT_ROOT, Refused, ansible_galaxy, build, cached_tarball, check, evict, secrets_in, tree_key

ROOT = pathlib.Path(__file__).resolve().parents[2]

# What a collection artifact may hold: the collection's own directories and top-level files, and the two files
# ansible-galaxy writes into every artifact.
ALLOWED_DIRS = ('plugins', 'roles', 'playbooks', 'meta', 'docs', 'changelogs')
ALLOWED_TOP_FILES = {'README.md', 'LICENSE', 'CHANGELOG.md', 'MANIFEST.json', 'FILES.json'}

# The dirt: files an operator's or a contributor's tree really holds (a PKI directory's names come from the
# engine's store and the roles' redis-acl/ password files, which have no extension).
# A key's PEM header as dirt content, put together at run time: no tracked file holds a private key's header.
KEY_HEADER = '-----BEGIN %sPRIVATE KEY-----\n'
DIRT = {
    '.venv/pyvenv.cfg': 'home = /usr/bin\n',
    '.venv/lib/python3.11/site-packages/fake_module.py': 'SECRET = 1\n',
    '.venv-c38/lib/python3.11/site-packages/fake_module.py': 'SECRET = 1\n',
    '.pytest_cache/v/cache/nodeids': '[]\n',
    '.build/galaxy/fleetpki-mtls-0.0.1.tar.gz': 'old artifact\n',
    'plugins/modules/__pycache__/pki_ca.cpython-311.pyc': 'bytecode',
    'plugins/module_utils/_pki/__pycache__/x.pyc': 'bytecode',
    'plugins/filter/stale.pyc': 'bytecode',
    'pki/lab/ca/ca-key.pem': KEY_HEADER % 'ENCRYPTED ',
    'pki/lab/ca/ca-cert.pem': '-----BEGIN CERTIFICATE-----\n',
    'pki/lab/ca/metadata.json': '{}\n',
    'pki/lab/redis-acl/worker1': 'a-redis-password-made-once\n',
    'pki/lab/rollover.json': '{}\n',
    'backups/lab/pki-backup-20261129.tar.enc': 'ciphertext',
    'roles/pki/files/ca-key.pem': KEY_HEADER % '',
    'roles/pki/files/pki/redis-acl/fleetpki-admin': 'admin-password\n',
    'stray.pem': KEY_HEADER % '',
    'playbooks/stray-key.pem': KEY_HEADER % '',
    'playbooks/pki/ca/ca-key.pem': KEY_HEADER % '',
    'playbooks/pki/redis-acl/worker1': 'a-redis-password\n',
    'docs/examples/host-key.pem': KEY_HEADER % '',
    'inventories/x/pki/ca/ca-key.pem': KEY_HEADER % '',
    'inventories/x/hosts.yml': 'all: {}\n',
    'inventories/x/backups/b.tar.enc': 'ciphertext',
    'roles/redis_tls/tasks/main.yml~': 'editor backup\n',
    'roles/redis_tls/tasks/.main.yml.swp': 'editor swap\n',
    'meta/runtime.yml.bak': 'backup\n',
    'tests/output/junit.xml': '<x/>\n',
    'notes.txt': 'an operator note\n',
    # Inventories and vaults an operator keeps beside the playbooks (playbook-adjacent group_vars/host_vars are
    # an Ansible feature) or under docs/, and anything in a dot-directory (an editor's, a tool's cache).
    'playbooks/group_vars/all/vault.yml': '$ANSIBLE_VAULT;1.1;AES256\n',
    'playbooks/group_vars/all/main.yml': 'fleet_name: prod\n',
    'playbooks/host_vars/redis1.yml': 'ansible_host: 10.0.0.5\n',
    'playbooks/inventories/prod/hosts.yml': 'all: {}\n',
    'playbooks/inventories/prod/group_vars/all/vault.yml': '$ANSIBLE_VAULT;1.1;AES256\n',
    'playbooks/vars/vault.yml': '$ANSIBLE_VAULT;1.1;AES256\n',
    'playbooks/prod.vault-pass': 'a-vault-password\n',
    'roles/pki/vars/vault.yaml': '$ANSIBLE_VAULT;1.1;AES256\n',
    'docs/x/secrets.yaml': 'redis_password: x\n',
    'plugins/modules/.hidden/a.yml': 'hidden: 1\n',
    'roles/redis_tls/.cache/deep/er/x.yml': 'hidden: 1\n',
    'plugins/module_utils/_pki/.idea/a/b/c/d.py': 'hidden = 1\n',
    'requirements-local.txt': 'something==1.0\n',
}

# Vaults and keys with innocent names where the allowlist ships files of their type: the manifest picks by name,
# so only a check of the content (tests/build/collection_tarball.py, the build every test and release uses) stops
# them.
CONTENT_DIRT = {
    'docs/examples/x.yml': '$ANSIBLE_VAULT;1.1;AES256\n3132\n',
    'playbooks/vars/x.yml': 'redis_password: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  3132\n',
    'roles/pki/templates/notes.j2': KEY_HEADER % '',
}

# Extensions that may ship under each directory (the same list as galaxy.yml's manifest).
SHIPPED_EXTENSIONS = {
    'plugins': ('.py', '.yml', '.yaml'),
    'roles': ('.yml', '.yaml', '.j2', '.md', '.py', '.sh'),
    'playbooks': ('.yml', '.yaml'),
    'meta': ('.yml', '.txt'),
    'docs': ('.md', '.rst', '.yml', '.yaml'),
    'changelogs': ('.yml', '.yaml'),
}


def tracked_files():
    """Tracked and new (not ignored) files, as `make ansible-test-tree` copies them."""
    out = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=str(ROOT), check=True,
                         stdout=subprocess.PIPE).stdout.decode()
    return [name for name in out.split('\0') if name and (ROOT / name).exists()]


def copy_tree(dest):
    for name in tracked_files():
        src = ROOT / name
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            # collections/ansible_collections/fleetpki/mtls points back at the tree: keep it a link, as in a checkout
            os.symlink(os.readlink(src), target)
        elif src.is_file():
            shutil.copy2(src, target)


# tree: the dirty copy built from; members: the tarball's file names; listed: the file names FILES.json lists.
Build = namedtuple('Build', 'tree members listed tarball refused')


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    """The Build of the collection from a dirty copy of the tree, by the build make build-check and the tests use."""
    # Built from under a dot-directory (as from ~/.ansible/...): the manifest's patterns for dot-directories must
    # be anchored at the collection's root, or they would leave out everything.
    tree = tmp_path_factory.mktemp('tree') / '.checkout' / 'mtls'
    tree.mkdir(parents=True)
    copy_tree(tree)
    for name, text in list(DIRT.items()) + list(CONTENT_DIRT.items()):
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    out = tmp_path_factory.mktemp('out')
    # The build every test and release uses refuses the content dirt; the rest of the dirt is the manifest's.
    with pytest.raises(Refused) as refused:
        build(tree, out / 'with-content-dirt')
    assert not list((out / 'with-content-dirt').iterdir()), 'a refused tarball was left behind'
    for name in CONTENT_DIRT:
        (tree / name).unlink()
    tarballs = [build(tree, out)]
    with tarfile.open(str(tarballs[0])) as tar:
        members = {member.name[2:] if member.name.startswith('./') else member.name
                   for member in tar.getmembers() if member.isfile()}
        files_json = json.load(tar.extractfile('FILES.json'))
    listed = {entry['name'] for entry in files_json['files'] if entry['ftype'] == 'file'}
    return Build(tree, members, listed, tarballs[0], ' '.join(str(refused.value).split()))


def test_no_dirt_in_tarball(built):
    members = built.members
    shipped_dirt = sorted(name for name in DIRT if name in members)
    assert not shipped_dirt, 'dirt from the working tree is in the tarball: %s' % shipped_dirt


SECRET_OR_CACHE_NAMES = ('*.pem', '*.key', '*.pyc', '*.pyo', '*~', '*.bak', '*.tar.gz', '*.tar.enc', '*.swp')


def test_no_secret_or_cache_anywhere(built):
    members = built.members
    bad = []
    for name in members:
        parts = name.split('/')
        base = parts[-1]
        if any(fnmatch.fnmatch(base, pattern) for pattern in SECRET_OR_CACHE_NAMES):
            bad.append(name)
        elif any(part.startswith('.') or part in ('__pycache__', 'backups', 'redis-acl') for part in parts):
            bad.append(name)
        # roles/pki is the role of that name; a directory called pki anywhere else is a PKI directory
        elif 'pki' in parts[:-1] and parts[:2] != ['roles', 'pki']:
            bad.append(name)
        elif parts[:2] == ['roles', 'pki'] and 'pki' in parts[2:-1]:
            bad.append(name)
    assert not sorted(bad), 'keys, PKI or cache files in the tarball: %s' % sorted(bad)


def test_every_member_is_allowlisted(built):
    members = built.members
    outside = sorted(name for name in members
                     if name not in ALLOWED_TOP_FILES and name.split('/')[0] not in ALLOWED_DIRS)
    assert not outside, 'tarball members outside the collection allowlist: %s' % outside
    wrong_type = sorted(name for name in members if '/' in name
                        and not name.endswith(SHIPPED_EXTENSIONS[name.split('/')[0]]))
    assert not wrong_type, 'tarball members of a type the allowlist does not name: %s' % wrong_type


# galaxy.yml prunes dot-directories one depth at a time, down to a dot-directory at depth 6: a member deeper
# than this could sit under a dot-directory the manifest does not prune (add a prune line, then raise this).
MAX_MEMBER_DEPTH = 7


def test_members_within_the_depth_dot_directories_are_pruned_to(built):
    deep = sorted(name for name in built.members if name.count('/') + 1 > MAX_MEMBER_DEPTH)
    assert not deep, 'members deeper than galaxy.yml prunes dot-directories: %s' % deep


def test_playbooks_and_docs_ship_only_their_own_files(built):
    """playbooks/: the playbooks and playbooks/vars; docs/: the pages, the docsite and the examples. Nothing an
    operator keeps there (group_vars/, host_vars/, inventories/, a vault) ships."""
    allowed = ('playbooks/*.yml', 'playbooks/vars/*.yml', 'docs/*.md', 'docs/docsite/*.yml', 'docs/docsite/rst/*.rst',
               'docs/examples/*.yml')
    outside = sorted(name for name in built.members if name.split('/')[0] in ('playbooks', 'docs')
                     and not any(fnmatch.fnmatch(name, pattern) and name.count('/') == pattern.count('/')
                                 for pattern in allowed))
    assert not outside, 'playbooks/ or docs/ members the manifest should not ship: %s' % outside


def test_no_vault_ships(built):
    vaults = sorted(name for name in built.members
                    if name.rsplit('/', 1)[-1] in ('vault.yml', 'vault.yaml') or name.endswith('.vault-pass'))
    assert not vaults, 'vault files in the tarball: %s' % vaults


def test_files_json_matches_members(built):
    members, listed = built.members, built.listed
    assert listed == members - {'MANIFEST.json', 'FILES.json'}


def test_expected_files_ship(built):
    tree, members = built.tree, built.members
    expected = {'README.md', 'LICENSE', 'CHANGELOG.md', 'meta/runtime.yml', 'meta/execution-environment.yml',
                'meta/ee-requirements.txt', 'meta/ee-bindep.txt',
                'changelogs/config.yaml', 'changelogs/changelog.yaml'}
    expected.update(str(path.relative_to(tree)) for path in (tree / 'plugins' / 'modules').glob('*.py'))
    expected.update(str(path.relative_to(tree)) for path in (tree / 'plugins' / 'doc_fragments').glob('*.py'))
    expected.update(str(path.relative_to(tree)) for path in (tree / 'playbooks').glob('*.yml'))
    for role in sorted(path.parent.parent for path in (tree / 'roles').glob('*/meta/argument_specs.yml')):
        expected.update('roles/%s/%s' % (role.name, name) for name in ('meta/argument_specs.yml', 'meta/main.yml',
                                                                       'tasks/main.yml'))
    missing = sorted(expected - members)
    assert not missing, 'expected in the tarball but missing: %s' % missing


def test_every_role_has_its_readme(built):
    """galaxy-importer refuses a collection whose roles have no README.md ("No role readme found")."""
    tree, members = built.tree, built.members
    roles = sorted(path.name for path in (tree / 'roles').iterdir() if path.is_dir())
    missing = [role for role in roles if 'roles/%s/README.md' % role not in members]
    assert not missing, 'roles without a README.md in the tarball: %s' % missing


def test_every_extra_docs_page_ships(built):
    """An installed collection's docs/docsite/extra-docs.yml names only pages it holds (docs/docsite/rst/, committed
    by make docs-rst): antsibull-docs and docs.ansible.com read them from the tarball."""
    members = built.members
    assert 'docs/docsite/extra-docs.yml' in members
    index = yaml.safe_load((built.tree / 'docs' / 'docsite' / 'extra-docs.yml').read_text())
    pages = [entry if isinstance(entry, str) else entry['ref'] for section in index['sections'] for entry in section['toctree']]
    assert pages, 'extra-docs.yml names no page'
    missing = sorted('docs/docsite/rst/%s.rst' % page for page in pages if 'docs/docsite/rst/%s.rst' % page not in members)
    assert not missing, 'pages extra-docs.yml names but the tarball lacks (make docs-rst, and commit): %s' % missing


def test_every_collection_file_of_the_tree_ships(built):
    """The allowlist keeps up with the tree: a new file type under a collection directory is a decision."""
    members = built.members
    wanted = {name for name in tracked_files()
              if (name.split('/')[0] in ALLOWED_DIRS or name in ALLOWED_TOP_FILES) and not (ROOT / name).is_symlink()}
    missing = sorted(wanted - members)
    assert not missing, 'tracked collection files not in the tarball (extend galaxy.yml manifest?): %s' % missing


def test_galaxy_yml_has_no_placeholder():
    galaxy = yaml.safe_load((ROOT / 'galaxy.yml').read_text())
    for key in ('repository', 'documentation', 'homepage', 'issues'):
        value = galaxy.get(key)
        assert not value or 'example.' not in value, '%s: %s is a placeholder' % (key, value)
    assert 'build_ignore' not in galaxy, 'build_ignore is a blocklist; galaxy.yml manifest: is the allowlist'
    assert galaxy.get('manifest', {}).get('omit_default_directives') is True


def members_holding_a_vault_or_a_private_key(tarball):
    """A vault file starts with $ANSIBLE_VAULT;, a vaulted value in YAML has it after "!vault |". Written apart from
    collection_tarball.secrets_in, so that each checks the other."""
    with tarfile.open(str(tarball)) as tar:
        contents = {member.name: tar.extractfile(member).read() for member in tar.getmembers() if member.isfile()}
    return sorted(name for name, data in contents.items() if b'$ANSIBLE_VAULT;' in data or b'PRIVATE KEY-----' in data)


def make_tarball(path, members):
    with tarfile.open(str(path), 'w:gz') as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_the_check_and_an_independent_scan_find_the_same_vaults_and_keys(tmp_path):
    """The check the build relies on, against a scan of its own, on a tarball holding what the manifest could ship."""
    bad = {'./docs/examples/x.yml': CONTENT_DIRT['docs/examples/x.yml'],
           './playbooks/vars/x.yml': CONTENT_DIRT['playbooks/vars/x.yml'],
           './roles/pki/templates/notes.j2': KEY_HEADER % 'EC ',
           './roles/pki/templates/deep.j2': 'x\n' * 50000 + KEY_HEADER % ''}
    tarball = make_tarball(tmp_path / 'fleetpki-mtls-0.0.1.tar.gz', dict(bad, **{'./README.md': '# fleetpki\n'}))
    assert members_holding_a_vault_or_a_private_key(tarball) == sorted(bad)
    assert sorted('./' + found[0] for found in secrets_in(tarball)) == sorted(bad)
    with pytest.raises(Refused):
        check(tarball)


def test_no_member_holds_a_vault_or_a_private_key(built):
    bad = members_holding_a_vault_or_a_private_key(built.tarball)
    assert not bad, 'vault-encrypted or private key content in the tarball: %s' % bad


def test_the_build_refuses_a_vault_or_key_the_allowlist_would_ship(built):
    """The message names every such member and what it holds, and says what to do."""
    for name in ['docs/examples/x.yml', 'playbooks/vars/x.yml']:
        assert '%s (vault-encrypted content)' % name in built.refused, built.refused
    assert 'roles/pki/templates/notes.j2 (a private key)' in built.refused, built.refused
    assert 'move the file out of the collection' in built.refused


def test_the_tarball_of_this_tree_is_built_once_and_holds_no_vault_or_key(tmp_path):
    tarball = cached_tarball()
    assert BUILT_ROOT == ROOT and not members_holding_a_vault_or_a_private_key(tarball) and not secrets_in(tarball)
    proc = subprocess.run([sys.executable, str(ROOT / 'tests' / 'build' / 'collection_tarball.py'), '--output-path',
                           str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=300, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == str(tmp_path / tarball.name), proc.stderr
    # Unless the tree changed meanwhile (another checkout's work on this tree), it was not built again.
    if tarball.parent.name == tree_key(ROOT, ansible_galaxy()):
        assert 'building' not in proc.stderr, 'the same tree was built again: %s' % proc.stderr


def small_tree(tmp_path):
    tree = tmp_path / 'tree'
    (tree / 'plugins' / 'modules').mkdir(parents=True)
    (tree / 'plugins' / 'modules' / 'm.py').write_text('x = 1\n')
    (tree / 'galaxy.yml').write_text('namespace: fleetpki\n')
    return tree


def test_the_cache_key_covers_the_checker(tmp_path, monkeypatch):
    """A changed check must not be skipped by a tarball the old check passed."""
    tree, galaxy = small_tree(tmp_path), ansible_galaxy()
    before = tree_key(tree, galaxy)
    checker = tmp_path / 'collection_tarball.py'
    checker.write_text((pathlib.Path(__file__).parent / 'collection_tarball.py').read_text() + '# a stricter check\n')
    monkeypatch.setattr(collection_tarball, 'CHECKER', checker)
    assert tree_key(tree, galaxy) != before


def test_a_symlinked_directory_in_the_shipped_tree_is_refused_by_name(tmp_path):
    """os.walk does not follow it, so the key would not see a change inside it: refused, naming it."""
    tree, outside = small_tree(tmp_path), tmp_path / 'elsewhere'
    outside.mkdir()
    (outside / 'x.py').write_text('x = 1\n')
    os.symlink(str(outside), str(tree / 'plugins' / 'linked'))
    with pytest.raises(SystemExit) as refused:
        tree_key(tree, ansible_galaxy())
    assert 'plugins/linked' in str(refused.value)


def test_a_cached_tarball_is_checked_again(tmp_path):
    """A cache entry is a file anyone could have put there: the check runs on every hit (it is cheap)."""
    tree, cache = small_tree(tmp_path), tmp_path / 'cache'
    entry = cache / tree_key(tree, ansible_galaxy())
    entry.mkdir(parents=True)
    make_tarball(entry / 'fleetpki-mtls-0.0.1.tar.gz', {'./docs/examples/x.yml': CONTENT_DIRT['docs/examples/x.yml']})
    with pytest.raises(Refused):
        cached_tarball(tree, cache)


def test_eviction_keeps_entries_used_recently(tmp_path):
    """Another run may have just returned an entry: only entries unused for a while are evicted, beyond the newest."""
    cache = tmp_path / 'cache'
    entries = [cache / ('entry%d' % index) for index in range(collection_tarball.KEEP + 3)]
    for index, entry in enumerate(entries):
        entry.mkdir(parents=True)
        os.utime(str(entry), (1000 + index, 1000 + index) if index < 2 else None)
    evict(cache)
    assert not entries[0].exists() and not entries[1].exists(), 'old entries beyond the newest were kept'
    assert all(entry.exists() for entry in entries[2:]), 'an entry used just now was evicted'


def release_steps(text):
    return ' '.join(text[text.index('To release:'):].split('\n\n', 1)[0].split())


def test_the_release_steps_build_through_the_checked_build():
    """A tarball from ansible-galaxy collection build alone skips the content check: the release must not make one."""
    steps = release_steps((ROOT / 'docs' / 'development.md').read_text())
    assert 'tests/build/collection_tarball.py --tree . --output-path dist' in steps, steps
    assert 'build the tarball with `ansible-galaxy collection build`' not in steps, steps
    rst = (ROOT / 'docs' / 'docsite' / 'rst' / 'development.rst').read_text()
    assert 'collection_tarball.py --tree . --output-path dist' in ' '.join(rst.split()), 'make docs-rst, and commit'
