#!/usr/bin/env bash
# Build the lab image offline: a Debian 12 root filesystem with systemd, sshd, sudo, Redis and the reference
# services' dependencies (mmdebstrap from the Debian mirror), imported into Docker. No registry pull is needed.
#   lab/build-image.sh [IMAGE]          (default fleetpki-lab:bookworm)
#   FLEETPKI_LAB_REBUILD=1 lab/build-image.sh   rebuilds it anyway
#   lab/build-image.sh --inputs-hash    prints the hash of the inputs (the label below) and exits
# The image carries a label with a hash of its inputs (this script, the package list, lab/image/): an existing
# image is reused only when its label matches, so a developer's image from older inputs is rebuilt, not reused.
# Where pulls work, lab/Dockerfile builds the same image (see there for the label).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
label=org.fleetpki.lab.inputs

inputs_hash() {
  # Paths relative to lab/ and file modes are part of the hash: a renamed or newly executable file counts.
  (cd "$here" && find build-image.sh image-packages.txt image -type f -print0 | LC_ALL=C sort -z \
    | xargs -0 stat -c '%n %a' && find build-image.sh image-packages.txt image -type f -print0 \
    | LC_ALL=C sort -z | xargs -0 cat) | sha256sum | cut -c1-16
}
want=$(inputs_hash)
if [ "${1:-}" = --inputs-hash ]; then
  echo "$want"
  exit 0
fi
image=${1:-fleetpki-lab:bookworm}

if [ -z "${FLEETPKI_LAB_REBUILD:-}" ] && docker image inspect "$image" >/dev/null 2>&1; then
  have=$(docker image inspect -f "{{index .Config.Labels \"$label\"}}" "$image" 2>/dev/null || true)
  if [ "$have" = "$want" ]; then
    echo "lab image $image is up to date (inputs $want; FLEETPKI_LAB_REBUILD=1 to rebuild)"
    exit 0
  fi
  echo "lab image $image was built from other inputs (${have:-unlabelled}, now $want): rebuilding"
fi

packages=$(grep -v '^#' "$here/image-packages.txt" | tr '\n' ',' | sed 's/,*$//')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Lab-only files (sshd, sudo, systemd units: lab/image/overlay) and lab/image/setup.sh, never the roles.
# Owned by root and not group/world-writable whoever checked them out and with whatever umask (sudoers, sshd and
# systemd refuse or warn otherwise; the directory entries would also reset /etc's own mode).
tar -C "$here/image/overlay" --owner=0 --group=0 --numeric-owner --mode='u+rwX,go+rX,go-w' -cf "$work/overlay.tar" .
# shellcheck disable=SC2016  # "$1" in the chroot hook is the hook's argument, expanded by mmdebstrap
mmdebstrap --variant=apt --include="$packages" \
  --customize-hook="tar-in $work/overlay.tar /" \
  --customize-hook="copy-in $here/image/setup.sh /tmp" \
  --customize-hook='chroot "$1" sh /tmp/setup.sh && rm -f "$1"/tmp/setup.sh' \
  bookworm "$work/rootfs.tar"

docker import \
  -c 'CMD ["/lib/systemd/systemd"]' \
  -c 'ENV container=docker' \
  -c "LABEL $label=$want" \
  "$work/rootfs.tar" "$image"
echo "lab image $image built (inputs $want)"
