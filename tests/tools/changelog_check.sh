#!/usr/bin/env bash
# Changelog check for CI (antsibull-changelog from .venv-release, or RELEASE_BIN):
#   1. every fragment in changelogs/fragments/ is valid (antsibull-changelog lint);
#   2. CHANGELOG.md is what `antsibull-changelog generate` makes from changelogs/ (no hand edit, no drift);
#   3. the pending release renders: `antsibull-changelog release` at galaxy.yml's version, in a copy, takes every
#      fragment, and every module of plugins/modules/ is then listed as new in exactly one release (its
#      version_added names a release of this changelog, never a later one).
# Nothing in the checkout is changed: generate and release run in a temporary copy.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${RELEASE_BIN:-$PWD/.venv-release/bin}
if [ ! -x "$BIN/antsibull-changelog" ]; then
  echo "changelog_check: no $BIN/antsibull-changelog; make the release venv:" >&2
  echo "  python3 -m venv .venv-release && .venv-release/bin/pip install -r requirements-release.txt" >&2
  exit 2
fi
# antsibull-changelog release reads the modules' docs with the ansible-doc it finds on PATH.
export PATH="$BIN:$PATH"
unset ANSIBLE_CONFIG ANSIBLE_COLLECTIONS_PATH PYTHONPATH

"$BIN/antsibull-changelog" lint
echo "changelog_check: fragments valid"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r galaxy.yml CHANGELOG.md changelogs plugins "$tmp"/
(cd "$tmp" && "$BIN/antsibull-changelog" generate)
if ! diff -u CHANGELOG.md "$tmp/CHANGELOG.md"; then
  echo "changelog_check: CHANGELOG.md differs from changelogs/ (above). It is generated: never edit it by hand;" >&2
  echo "  add a fragment to changelogs/fragments/ and run: $BIN/antsibull-changelog generate" >&2
  exit 1
fi
echo "changelog_check: CHANGELOG.md matches changelogs/"

version=$("$BIN/python" -c 'import yaml; print(yaml.safe_load(open("galaxy.yml"))["version"])')
(cd "$tmp" && "$BIN/antsibull-changelog" release --version "$version" --date "$(date -u +%F)" >/dev/null)
if compgen -G "$tmp/changelogs/fragments/*.y*ml" >/dev/null; then
  echo "changelog_check: the release of $version left fragments behind: $(ls "$tmp/changelogs/fragments")" >&2
  exit 1
fi
"$BIN/python" - "$tmp/changelogs/changelog.yaml" "$version" plugins/modules <<'EOF'
import ast
import os
import sys

import yaml

changelog_path, version, modules_dir = sys.argv[1:]
releases = yaml.safe_load(open(changelog_path))['releases']
if version not in releases:
    sys.exit('changelog_check: no release %s after antsibull-changelog release' % version)
named = {}
for release, data in releases.items():
    for module in data.get('modules', []):
        named.setdefault(module['name'], []).append(release)
problems = []
for file_name in sorted(os.listdir(modules_dir)):
    if not file_name.endswith('.py') or file_name.startswith('_'):
        continue
    module = file_name[:-3]
    tree = ast.parse(open(os.path.join(modules_dir, file_name)).read())
    doc = next(yaml.safe_load(node.value.value) for node in tree.body
               if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', '') == 'DOCUMENTATION')
    added = str(doc.get('version_added'))
    where = named.get(module, [])
    if where != [added]:
        problems.append('%s: version_added %s, listed as new in %s (a module is new in the one release that adds it:'
                        ' set version_added to that release, %s for a module new since the last one)'
                        % (module, added, where or 'no release', version))
if problems:
    sys.exit('changelog_check: modules and releases disagree:\n  ' + '\n  '.join(problems))
print('changelog_check: release %s renders; every module is new in exactly one release' % version)
EOF
