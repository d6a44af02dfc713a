#!/usr/bin/env bash
# The execution environment an AWX/AAP user builds with fleetpki.mtls in it (docs/awx.md), as far as this machine
# can go without a container engine:
#   1. build the collection tarball (the allowlisted one users install) into .build/ee;
#   2. write a minimal EE definition (ansible-builder schema version 3) that installs that tarball, and run
#      `ansible-builder create`: the build context must come out with the Containerfile, the tarball and the galaxy
#      requirements;
#   3. do what the image build's builder stage does with the collection: install it into a collections path and
#      run `ansible-builder introspect` on it. The Python requirements it takes from fleetpki.mtls must hold
#      cryptography>=38 and none of the checkout's exact pins (requirements.txt: cryptography==..., jinja2==...),
#      which an EE would otherwise be forced to (ansible-builder falls back to a collection's requirements.txt).
# Tools: ansible-galaxy of .venv (distlib reads galaxy.yml's manifest), ansible-builder of .venv-release.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${BIN:-$ROOT/.venv/bin}
RELEASE_BIN=${RELEASE_BIN:-$ROOT/.venv-release/bin}
for tool in "$BIN/ansible-galaxy" "$RELEASE_BIN/ansible-builder"; do
  if [ ! -x "$tool" ]; then
    echo "ee_create: $tool missing: make setup, and for the release venv" >&2
    echo "  python3 -m venv .venv-release && .venv-release/bin/pip install -r requirements-release.txt" >&2
    exit 2
  fi
done
fail() { echo "ee_create: $*" >&2; exit 1; }
# Nothing from the checkout's ansible.cfg (collections_path=./collections would answer "already installed").
unset ANSIBLE_CONFIG ANSIBLE_COLLECTIONS_PATH PYTHONPATH

EE=$ROOT/.build/ee
rm -rf "$EE" && mkdir -p "$EE"
"$BIN/ansible-galaxy" collection build --output-path "$EE" . >/dev/null
tarball=$(cd "$EE" && ls fleetpki-mtls-*.tar.gz)

# The user's EE definition: the base image is only named here (`create` pulls nothing); the tarball goes into the
# build context and is installed from there, as from a tarball URL or Automation Hub in docs/awx.md.
cat > "$EE/execution-environment.yml" <<EOF
---
version: 3
images:
  base_image:
    name: quay.io/ansible/awx-ee:latest
dependencies:
  ansible_core:
    package_pip: ansible-core>=2.17
  ansible_runner:
    package_pip: ansible-runner
  galaxy:
    collections:
      - name: /tmp/fleetpki-collections/$tarball
        type: file
additional_build_files:
  - src: $tarball
    dest: fleetpki-collections
additional_build_steps:
  prepend_galaxy:
    - COPY _build/fleetpki-collections/ /tmp/fleetpki-collections/
EOF
(cd "$EE" && "$RELEASE_BIN/ansible-builder" create -f execution-environment.yml -c context --output-filename Containerfile >/dev/null)
[ -f "$EE/context/Containerfile" ] || fail "ansible-builder create wrote no Containerfile"
[ -f "$EE/context/_build/fleetpki-collections/$tarball" ] || fail "the tarball is not in the build context"
grep -q "$tarball" "$EE/context/_build/requirements.yml" || fail "the context's galaxy requirements do not name $tarball"
grep -q 'COPY _build/fleetpki-collections/' "$EE/context/Containerfile" || fail "the Containerfile does not copy the tarball"
echo "ee_create: ansible-builder create made the context in $EE/context"

# The builder stage: install the collections, then introspect them for Python and system requirements.
(cd /tmp && "$BIN/ansible-galaxy" collection install --force -p "$EE/collections" "$EE/$tarball" >/dev/null)
"$RELEASE_BIN/ansible-builder" introspect --sanitize --write-pip "$EE/requirements.txt" --write-bindep "$EE/bindep.txt" \
  "$EE/collections" >/dev/null
echo "--- Python requirements of the EE from the collection:"; cat "$EE/requirements.txt" 2>/dev/null || echo "(none)"
echo "--- system requirements:"; cat "$EE/bindep.txt" 2>/dev/null || echo "(none)"
grep -Eq '^cryptography>=38( |$|#)' "$EE/requirements.txt" || fail "no cryptography>=38 in the EE's Python requirements"
while read -r pin; do
  name=${pin%%==*}
  if grep -Eiq "^${name}[[:space:]]*==" "$EE/requirements.txt"; then
    fail "the EE's Python requirements pin $name exactly (requirements.txt's $pin leaked into the collection)"
  fi
done < <(grep -E '^[A-Za-z0-9_.-]+==' requirements.txt)
grep -q 'openssh-client' "$EE/bindep.txt" || fail "no openssh client in the EE's system requirements"
echo "ee_create: the EE takes cryptography>=38 and no exact pin from fleetpki.mtls"
