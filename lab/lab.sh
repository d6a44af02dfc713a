#!/usr/bin/env bash
# The local lab fleet: one container with systemd per inventory host of inventories/lab.
#   lab/lab.sh up      build the image if needed, start the containers (idempotent)
#   lab/lab.sh down    remove the containers, the network and the lab's PKI
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
image=${FLEETPKI_LAB_IMAGE:-fleetpki-lab:bookworm}
network=fleetpki-lab
hosts=(redis1 worker1 worker2 api1 pxe1)

ensure_docker() {
  if ! docker info >/dev/null 2>&1; then
    echo "no Docker engine answers: start dockerd (see docs/lab.md)" >&2
    exit 1
  fi
}

up() {
  ensure_docker
  "$here/build-image.sh" "$image"
  docker network inspect "$network" >/dev/null 2>&1 || docker network create "$network" >/dev/null
  for host in "${hosts[@]}"; do
    if [ "$(docker inspect -f '{{.State.Running}}' "$host" 2>/dev/null)" = true ]; then
      continue
    fi
    docker rm -f "$host" >/dev/null 2>&1 || true
    # systemd as PID 1 without --privileged: SYS_ADMIN, no seccomp filter, cgroups read-only, tmpfs runtime dirs.
    docker run -d --name "$host" --hostname "$host" --network "$network" \
      --cap-add SYS_ADMIN --security-opt seccomp=unconfined \
      -v /sys/fs/cgroup:/sys/fs/cgroup:ro --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
      "$image" >/dev/null
  done
  for host in "${hosts[@]}"; do
    for _ in $(seq 1 30); do
      state=$(docker exec "$host" systemctl is-system-running 2>/dev/null || true)
      case "$state" in running|degraded) break ;; esac
      sleep 1
    done
  done
  echo "lab up: ${hosts[*]}"
}

down() {
  for host in "${hosts[@]}"; do docker rm -f "$host" >/dev/null 2>&1 || true; done
  docker network rm "$network" >/dev/null 2>&1 || true
  # The lab's PKI (pki/lab beside ansible.cfg), and one an earlier version made inside the inventory.
  rm -rf "$here/../pki/lab" "$here/../inventories/lab/pki"
  echo "lab down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
