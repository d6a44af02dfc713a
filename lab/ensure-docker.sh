#!/usr/bin/env bash
# Make sure a Docker engine answers, and that mmdebstrap is there to build the lab image offline.
# On Debian as root: installs docker.io and mmdebstrap when missing and starts dockerd in the background.
set -euo pipefail
missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: ${missing[*]}; install them (Debian: apt-get install ${missing[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if docker info >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "no Docker engine answers; start it (sudo systemctl start docker, or dockerd &)" >&2
  exit 1
fi
# No systemd on these machines: run dockerd in the background and wait for its socket.
nohup dockerd >/var/log/fleetpki-dockerd.log 2>&1 &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "dockerd did not come up; see /var/log/fleetpki-dockerd.log" >&2
exit 1
