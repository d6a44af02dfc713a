#!/usr/bin/env bash
# Build the lab image offline: a Debian 12 root filesystem with systemd, Redis and the reference services'
# dependencies (mmdebstrap from the Debian mirror), imported into Docker. No registry pull is needed.
#   lab/build-image.sh [IMAGE]          (default fleetpki-lab:bookworm; skipped when the image exists)
#   FLEETPKI_LAB_REBUILD=1 lab/build-image.sh   rebuilds it
# Where pulls work, lab/Dockerfile builds the same image: docker build -t fleetpki-lab:bookworm lab/
set -euo pipefail
image=${1:-fleetpki-lab:bookworm}
here=$(cd "$(dirname "$0")" && pwd)

if [ -z "${FLEETPKI_LAB_REBUILD:-}" ] && docker image inspect "$image" >/dev/null 2>&1; then
  echo "lab image $image exists (FLEETPKI_LAB_REBUILD=1 to rebuild)"
  exit 0
fi

packages=$(grep -v '^#' "$here/image-packages.txt" | tr '\n' ',' | sed 's/,*$//')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Lab-only tweaks baked into the image (never into the roles):
# Debian's redis unit fails with 217/USER in a container because of PrivateUsers=true.
mkdir -p "$work/overlay/etc/systemd/system/redis-server.service.d"
cp "$here/image/redis-server-lab.conf" "$work/overlay/etc/systemd/system/redis-server.service.d/lab.conf"

mmdebstrap --variant=apt --include="$packages" \
  --customize-hook="copy-in $work/overlay/etc/systemd/system/redis-server.service.d /etc/systemd/system/" \
  --customize-hook='chroot "$1" systemctl mask getty@tty1.service console-getty.service systemd-logind.service' \
  --customize-hook='chroot "$1" systemctl disable redis-server.service' \
  --customize-hook='rm -f "$1"/etc/machine-id "$1"/var/lib/dbus/machine-id; : > "$1"/etc/machine-id' \
  bookworm "$work/rootfs.tar"

docker import \
  -c 'CMD ["/lib/systemd/systemd"]' \
  -c 'ENV container=docker' \
  "$work/rootfs.tar" "$image"
echo "lab image $image built"
