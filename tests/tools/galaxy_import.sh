#!/usr/bin/env bash
# Galaxy's import check, offline: build the tarball as a release does, then run galaxy-importer (what Galaxy runs
# on an upload: ansible-doc of every plugin, role READMEs and argument specs, galaxy.yml, changelog, ansible-lint)
# with the settings of tests/tools/galaxy-importer.cfg (ansible-test off). Fails on a failed import and on any
# ERROR line in its log. Needs .venv-release (python3 -m venv .venv-release && .venv-release/bin/pip install -r
# requirements-release.txt), or RELEASE_VENV=<venv>.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${RELEASE_VENV:-$root/.venv-release}
out=$root/.build/galaxy-import
[[ -x $venv/bin/python ]] || { echo "galaxy_import.sh: no venv at $venv (see requirements-release.txt)" >&2; exit 2; }

rm -rf "$out" && mkdir -p "$out/home"
# As Galaxy sees it: none of the checkout's ansible.cfg (its collections_path points back at this tree), its
# PYTHONPATH or the caller's ~/.ansible; the release venv's ansible-doc and ansible-lint first on PATH.
cleanenv=(env -u ANSIBLE_CONFIG -u PYTHONPATH -u ANSIBLE_COLLECTIONS_PATH HOME="$out/home" PATH="$venv/bin:$PATH"
          GALAXY_IMPORTER_CONFIG="$root/tests/tools/galaxy-importer.cfg")
(cd "$root" && "${cleanenv[@]}" ansible-galaxy collection build --output-path "$out" .)
tarball=$(echo "$out"/fleetpki-mtls-*.tar.gz)
[[ -f $tarball ]] || { echo "galaxy_import.sh: no tarball built in $out" >&2; exit 1; }

status=0
(cd "$out" && "${cleanenv[@]}" python -m galaxy_importer.main "$tarball") > "$out/import.log" 2>&1 || status=$?
cat "$out/import.log"
if (( status != 0 )); then
    echo "galaxy_import.sh: galaxy-importer failed (exit $status) on $tarball" >&2
    exit 1
fi
if grep -n -E '^(ERROR|CRITICAL)|\bERROR:' "$out/import.log" >&2; then
    echo "galaxy_import.sh: galaxy-importer logged the errors above for $tarball" >&2
    exit 1
fi
echo "galaxy_import.sh: $(basename "$tarball") passes galaxy-importer (ansible-test off); log in $out/import.log"
