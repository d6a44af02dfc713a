#!/usr/bin/env bash
# Changelog check for CI (antsibull-changelog from .venv-release, or RELEASE_BIN):
#   1. every fragment in changelogs/fragments/ is valid (antsibull-changelog lint);
#   2. CHANGELOG.md is what `antsibull-changelog generate` makes from changelogs/ (no hand edit, no drift);
#   3. the pending release renders: `antsibull-changelog release` at galaxy.yml's version, in a copy, takes every
#      fragment, and every module and plugin is then listed as new in exactly one release, the one its
#      version_added names (never a later one than galaxy.yml's).
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
"$BIN/python" - "$tmp/changelogs/changelog.yaml" "$tmp/changelogs/.plugin-cache.yaml" "$version" <<'EOF'
# Every module and plugin (as antsibull-changelog reads them for the release) is new in exactly one release, the
# one its version_added names.
import sys

import yaml

changelog_path, cache_path, version = sys.argv[1:]
releases = yaml.safe_load(open(changelog_path))['releases']
if version not in releases:
    sys.exit('changelog_check: no release %s after antsibull-changelog release' % version)
listed = {}
for release, data in releases.items():
    for module in data.get('modules', []):
        listed.setdefault(('module', module['name']), []).append(release)
    for kind, plugins in data.get('plugins', {}).items():
        for plugin in plugins:
            listed.setdefault((kind, plugin['name']), []).append(release)
problems = []
for kind, plugins in sorted(yaml.safe_load(open(cache_path))['plugins'].items()):
    for name, doc in sorted(plugins.items()):
        added = str(doc.get('version_added'))
        where = listed.get((kind, name), [])
        if where != [added]:
            problems.append('%s %s: version_added %s, listed as new in %s (set version_added to the release that'
                            ' added it: %s for one added since the last release)'
                            % (kind, name, added, where or 'no release', version))
if problems:
    sys.exit('changelog_check: plugins and releases disagree:\n  ' + '\n  '.join(problems))
print('changelog_check: release %s renders; every module and plugin is new in exactly one release' % version)
EOF
