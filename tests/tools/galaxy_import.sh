#!/usr/bin/env bash
# Galaxy's import check, offline: build the tarball as a release does, then run galaxy-importer (what Galaxy runs
# on an upload: ansible-doc of every plugin, role READMEs and argument specs, galaxy.yml, changelog, ansible-lint)
# with the settings of tests/tools/galaxy-importer.cfg (ansible-test off). Fails on a failed import and on any
# ERROR line in its log. Needs .venv-release (python3 -m venv .venv-release && .venv-release/bin/pip install -r
# requirements-release.txt), or RELEASE_VENV=<venv>.
# galaxy.yml's repository (none committed: the release sets it): FLEETPKI_REPOSITORY_URL, else the checkout's
# origin remote, else file://<checkout>; the script prints which, without the URL's user and password (a CI clone's
# origin is https://gitlab-ci-token:<token>@host/...: the token must reach neither the log nor MANIFEST.json).
# A repository committed in galaxy.yml with a user or password in it is refused (the token is in git already: revoke
# it). The built tarball goes through tests/build/collection_tarball.py --check (no vault, private key or URL with
# credentials in any member, MANIFEST.json included) before galaxy-importer sees it.
# --print-repository: print the repository the tarball would get, and stop; --build-only: build and check the
# tarball, print its path, and stop (both for tests/build/test_galaxy_import.py).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv=${RELEASE_VENV:-$root/.venv-release}
out=$root/.build/galaxy-import
[[ -x $venv/bin/python ]] || { echo "galaxy_import.sh: no venv at $venv (see requirements-release.txt)" >&2; exit 2; }

# As Galaxy sees it: none of the checkout's ansible.cfg (its collections_path points back at this tree), its
# PYTHONPATH or the caller's ~/.ansible; the release venv's ansible-doc and ansible-lint first on PATH.
cleanenv=(env -u ANSIBLE_CONFIG -u PYTHONPATH -u ANSIBLE_COLLECTIONS_PATH HOME="$out/home" PATH="$venv/bin:$PATH"
          GALAXY_IMPORTER_CONFIG="$root/tests/tools/galaxy-importer.cfg")
# galaxy.yml names no repository (there is no public address yet) and galaxy-importer requires one: the release
# sets it. The tarball is built here from a copy of the tree (tracked and new files, not ignored ones, without
# collections/, the link back to the tree) whose galaxy.yml gets FLEETPKI_REPOSITORY_URL, else the checkout's
# origin remote (a CI clone has one), else file://<checkout>, what it was really built from.
without_userinfo() { sed -E 's#^([A-Za-z][A-Za-z0-9+.-]*://)[^@/]*@#\1#' <<< "$1"; }
# The repository galaxy.yml's copy gets, and where it comes from; empty when galaxy.yml names its own.
repository='' source=''
committed=$("$venv/bin/python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1])).get("repository") or "")' "$root/galaxy.yml")
if [[ -n $committed ]]; then
    source="galaxy.yml's own"
    if [[ $(without_userinfo "$committed") != "$committed" ]]; then
        echo "galaxy_import.sh: galaxy.yml's repository has a user or password in it: make it" \
             "$(without_userinfo "$committed") (and revoke the token: it is in git)" >&2
        exit 1
    fi
else
    repository=${FLEETPKI_REPOSITORY_URL:-} source=FLEETPKI_REPOSITORY_URL
    if [[ -z $repository ]]; then
        repository=$(git -C "$root" remote get-url origin 2> /dev/null || true) source="the checkout's origin remote"
    fi
    if [[ -z $repository ]]; then
        repository="file://$root" source="the checkout's path: no FLEETPKI_REPOSITORY_URL, no origin remote"
    fi
    repository=$(without_userinfo "$repository")
fi
echo "galaxy_import.sh: galaxy.yml repository: $(without_userinfo "${repository:-$committed}") (from $source)"
if [[ ${1:-} == --print-repository ]]; then exit 0; fi

rm -rf "$out" && mkdir -p "$out/home"

copy=$out/tree
mkdir -p "$copy"
(cd "$root" && git ls-files -co --exclude-standard -z | grep -zv '^collections/' | tar --null -T - -cf -) | tar -xf - -C "$copy"
if [[ -n $repository ]]; then
    # Appended as text (a JSON string is a YAML string), so the rest of galaxy.yml builds exactly as committed.
    "$venv/bin/python" -c 'import json, sys; open(sys.argv[1], "a").write("repository: %s\n" % json.dumps(sys.argv[2]))' \
        "$copy/galaxy.yml" "$repository"
fi
(cd "$copy" && "${cleanenv[@]}" ansible-galaxy collection build --output-path "$out" .)
tarball=$(echo "$out"/fleetpki-mtls-*.tar.gz)
[[ -f $tarball ]] || { echo "galaxy_import.sh: no tarball built in $out" >&2; exit 1; }
"$venv/bin/python" "$root/tests/build/collection_tarball.py" --check "$tarball" || { rm -f "$tarball"; exit 1; }
if [[ ${1:-} == --build-only ]]; then echo "$tarball"; exit 0; fi

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
