"""The collection tarball of this tree, built once per tree and checked for secrets before anything uses it.

    python tests/build/collection_tarball.py                      print the tarball of this tree (built when missing)
    python tests/build/collection_tarball.py --output-path DIR    the same, copied into DIR
    python tests/build/collection_tarball.py --tree T --output-path DIR   build tree T into DIR (no cache)
    python tests/build/collection_tarball.py --check TARBALL...   only the check

Every test and script that needs the tarball of this checkout (tests/playbooks, tests/install/run.sh, make
build-check) takes it from here: it is built once into .build/collection-tarball/<key>/, <key> a hash of every file
under the directories galaxy.yml's manifest ships from, the top-level files, the ansible-galaxy that builds it and
this file (its check), so an unchanged tree is never built twice, and a changed one is. A cached tarball is checked
again on every use (cheap). A directory symlink under the shipped directories is refused: the key would not see
inside it.

The check: galaxy.yml's manifest selects files by name and type, not by content, so a vault-encrypted file or a
private key with an innocent name (docs/examples/x.yml, playbooks/vars/x.yml) would ship. A member holding either,
or a MANIFEST.json URL with a user or password in it, makes the build fail and the tarball is deleted.
"""
import argparse
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = ROOT / '.build' / 'collection-tarball'
# Trees kept in the cache (the most recently used): a few, for switching branches back and forth.
KEEP = 4
# Beyond KEEP, an entry is evicted only when unused this long: another run may have just returned it.
EVICT_AFTER_SECONDS = 30 * 60
# The check is part of what a cached tarball passed: a changed check makes a new key.
CHECKER = pathlib.Path(__file__).resolve()
# Where the manifest takes members from; everything else is outside the key (it cannot change the tarball).
SHIPPED_DIRS = ('plugins', 'roles', 'playbooks', 'meta', 'docs', 'changelogs')
TOP_FILES = ('galaxy.yml', 'README.md', 'LICENSE', 'CHANGELOG.md')
VAULT_MARK = b'$ANSIBLE_VAULT;'
# Put together here so that no tracked file holds a private key's PEM header.
PRIVATE_KEY = re.compile(('-----BEGIN [A-Z0-9 ]*' + 'PRIVATE KEY-----').encode())
URL_WITH_USERINFO = re.compile(r'^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*@')


class Refused(Exception):
    """The tarball holds what must never ship."""


def ansible_galaxy():
    """The ansible-galaxy of .venv (the one make build-check uses), else the one beside this Python."""
    for candidate in (ROOT / '.venv' / 'bin' / 'ansible-galaxy', pathlib.Path(sys.executable).parent / 'ansible-galaxy'):
        if candidate.exists():
            return candidate
    raise SystemExit('collection_tarball.py: no ansible-galaxy in .venv or beside %s: run make setup' % sys.executable)


def tree_key(tree, galaxy):
    """A hash of every file the manifest could ship from (names, executable bits, contents) and the builder."""
    digest = hashlib.sha256(str(galaxy.resolve()).encode())
    digest.update(CHECKER.read_bytes())
    names = [name for name in TOP_FILES if (tree / name).is_file()]
    for top in SHIPPED_DIRS:
        for dirpath, dirnames, filenames in os.walk(str(tree / top)):
            dirnames[:] = sorted(name for name in dirnames if not name.startswith('.') and name != '__pycache__')
            linked = [os.path.relpath(os.path.join(dirpath, name), str(tree)) for name in dirnames
                      if os.path.islink(os.path.join(dirpath, name))]
            if linked:
                raise SystemExit('collection_tarball.py: %s in %s is a symlink to a directory: the cache key cannot see '
                                 'inside it; put the directory itself there' % (', '.join(linked), tree))
            names.extend(os.path.relpath(os.path.join(dirpath, name), str(tree)) for name in filenames)
    for name in sorted(names):
        path = tree / name
        if path.is_file():
            digest.update(b'\0%s\0%d\0' % (name.encode(), os.access(str(path), os.X_OK)))
            digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def secrets_in(tarball):
    """(member, what) for each member that must not ship."""
    found = []
    with tarfile.open(str(tarball)) as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            data = tar.extractfile(member).read()
            name = member.name[2:] if member.name.startswith('./') else member.name
            if VAULT_MARK in data:
                found.append((name, 'vault-encrypted content'))
            if PRIVATE_KEY.search(data):
                found.append((name, 'a private key'))
            if name == 'MANIFEST.json':
                info = json.loads(data.decode())['collection_info']
                for key in ('repository', 'documentation', 'homepage', 'issues'):
                    if URL_WITH_USERINFO.match(info.get(key) or ''):
                        found.append((name, 'a user or password in collection_info.%s' % key))
    return found


def check(tarball):
    found = secrets_in(tarball)
    if found:
        raise Refused(
            '%s must not ship, it holds: %s. galaxy.yml\'s manifest picks files by name, not content: move the file '
            'out of the collection\'s directories (a vault belongs to your inventory, a key to the PKI directory), or '
            'take the user and password out of galaxy.yml\'s URL.'
            % (tarball.name, '; '.join('%s (%s)' % item for item in found)))


def build(tree, output_path):
    """ansible-galaxy collection build of TREE into OUTPUT_PATH, then the check (the tarball deleted if refused).

    Run from a temporary directory without ANSIBLE_CONFIG: inside the checkout, ansible-galaxy would read its
    ansible.cfg, whose collections_path points back at this tree."""
    output_path.mkdir(parents=True, exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key not in ('ANSIBLE_CONFIG', 'PYTHONPATH')}
    env['ANSIBLE_NOCOLOR'] = '1'
    with tempfile.TemporaryDirectory() as cwd:
        proc = subprocess.run([str(ansible_galaxy()), 'collection', 'build', '--force', '--output-path',
                               str(output_path), str(tree)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise SystemExit('collection_tarball.py: ansible-galaxy collection build failed:\n%s' % proc.stdout)
    tarball, = output_path.glob('fleetpki-mtls-*.tar.gz')
    try:
        check(tarball)
    except Refused:
        tarball.unlink()
        raise
    return tarball


def evict(cache):
    """Delete the entries beyond the KEEP most recently used that nobody used for EVICT_AFTER_SECONDS."""
    entries = sorted((path for path in cache.iterdir() if not path.name.startswith('building-')),
                     key=lambda path: path.stat().st_mtime, reverse=True)
    now = time.time()
    for old in entries[KEEP:]:
        try:
            if now - old.stat().st_mtime > EVICT_AFTER_SECONDS:
                shutil.rmtree(str(old), ignore_errors=True)
        except OSError:  # evicted by another run meanwhile
            pass


def cached_tarball(tree=ROOT, cache=CACHE):
    """The tarball of TREE, built only when no build of the same tree is in CACHE; checked on every use."""
    entry = cache / tree_key(tree, ansible_galaxy())
    try:
        os.utime(str(entry))  # first: marks it used before any eviction (this run's or another's) looks
    except OSError:
        pass
    found = list(entry.glob('fleetpki-mtls-*.tar.gz'))
    if not found:
        cache.mkdir(parents=True, exist_ok=True)
        staging = pathlib.Path(tempfile.mkdtemp(prefix='building-', dir=str(cache)))
        try:
            print('collection_tarball.py: building the tree %s' % entry.name, file=sys.stderr)
            build(tree, staging)
            try:
                os.rename(str(staging), str(entry))
            except OSError:  # another run built the same tree meanwhile: use that one
                pass
        finally:
            shutil.rmtree(str(staging), ignore_errors=True)
        found = list(entry.glob('fleetpki-mtls-*.tar.gz'))
        os.utime(str(entry))
    check(found[0])
    evict(cache)
    return found[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--tree', type=pathlib.Path, help='build this tree, not the cached one of this checkout')
    parser.add_argument('--output-path', type=pathlib.Path, help='directory the tarball is put in')
    parser.add_argument('--check', nargs='+', type=pathlib.Path, metavar='TARBALL', help='only check these tarballs')
    args = parser.parse_args(argv)
    try:
        if args.check:
            for tarball in args.check:
                check(tarball)
                print('collection_tarball.py: %s holds no vault, key or URL credentials' % tarball)
            return 0
        if args.tree:
            if not args.output_path:
                parser.error('--tree needs --output-path')
            tarball = build(args.tree.resolve(), args.output_path.resolve())
        else:
            tarball = cached_tarball()
            if args.output_path:
                args.output_path.mkdir(parents=True, exist_ok=True)
                tarball = pathlib.Path(shutil.copy2(str(tarball), str(args.output_path)))
    except Refused as refused:
        print('collection_tarball.py: refused: %s' % refused, file=sys.stderr)
        return 1
    print(tarball)
    return 0


if __name__ == '__main__':
    sys.exit(main())
