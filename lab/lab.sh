#!/usr/bin/env bash
# The local lab fleet: one container with systemd and sshd per inventory host of inventories/lab, reached over
# SSH as the user `deploy` (passwordless sudo) with the lab's own key, like a real fleet.
#   lab/lab.sh up        build the image if needed, make the SSH key if missing, start the containers (idempotent)
#   lab/lab.sh down      remove the containers, the network and the lab's PKI (the key stays)
#   lab/lab.sh down-all  the same, and the SSH key too
#   lab/lab.sh ips       print each host's address
#   lab/lab.sh key       only make the SSH key if missing (molecule mounts its public half into its containers)
# A second lab beside molecule's or the demo's: another prefix and subnet, e.g.
#   FLEETPKI_LAB_PREFIX=inst- FLEETPKI_LAB_SUBNET=172.30.101.0/24 lab/lab.sh up
# Addresses: the subnet is a /24 (a.b.c.0/24); host number i of (redis1 worker1 worker2 api1 pxe1), from 1,
# gets a.b.c.(10+i): redis1 .11, worker1 .12, worker2 .13, api1 .14, pxe1 .15. inventories/lab names the default
# subnet's addresses (172.30.99.0/24); another subnet needs its own inventory (`lab/lab.sh ips` prints them).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
image=${FLEETPKI_LAB_IMAGE:-fleetpki-lab:bookworm}
prefix=${FLEETPKI_LAB_PREFIX:-}
subnet=${FLEETPKI_LAB_SUBNET:-172.30.99.0/24}
network=${prefix}fleetpki-lab
key=$root/.build/lab-ssh/id_ed25519
hosts=(redis1 worker1 worker2 api1 pxe1)

if ! [[ $subnet =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.0/24$ ]]; then
  echo "FLEETPKI_LAB_SUBNET=$subnet: give a /24 ending in .0, e.g. 172.30.101.0/24" >&2
  exit 2
fi
net3=${BASH_REMATCH[1]}

address() {  # address HOST
  local i
  for i in "${!hosts[@]}"; do
    if [ "${hosts[$i]}" = "$1" ]; then echo "$net3.$((11 + i))"; return; fi
  done
  return 1
}

ensure_docker() {
  if ! docker info >/dev/null 2>&1; then
    echo "no Docker engine answers: start dockerd (see docs/lab.md)" >&2
    exit 1
  fi
}

# The lab's own SSH key, made once on the control node (never committed: .build/ is ignored). No passphrase:
# it opens only these throwaway containers.
ensure_key() {
  if [ ! -f "$key" ]; then
    mkdir -p "$(dirname "$key")"
    chmod 0700 "$(dirname "$key")"
    ssh-keygen -q -t ed25519 -N '' -C "fleetpki-lab@$(hostname)" -f "$key"
    echo "lab SSH key made: $key"
  fi
}

ensure_network() {
  if docker network inspect "$network" >/dev/null 2>&1; then
    local have
    have=$(docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}' "$network")
    if [ "$have" != "$subnet" ]; then
      echo "network $network has subnet $have, not $subnet: lab/lab.sh down first" >&2
      exit 1
    fi
    return
  fi
  docker network create --subnet "$subnet" --gateway "$net3.1" "$network" >/dev/null
}

wait_ssh() {  # wait_ssh HOST ADDRESS
  local _
  for _ in $(seq 1 60); do
    if ssh -i "$key" -o BatchMode=yes -o ConnectTimeout=2 -o StrictHostKeyChecking=no \
         -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "deploy@$2" sudo -n true 2>/dev/null; then
      return 0
    fi
    sleep 1
  done
  echo "$1 ($2): no SSH login as deploy with sudo after 60 s; see docker exec ${prefix}$1 journalctl -u ssh" >&2
  return 1
}

up() {
  ensure_docker
  "$here/build-image.sh" "$image"
  ensure_key
  ensure_network
  local host name
  for host in "${hosts[@]}"; do
    name=$prefix$host
    if [ "$(docker inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" = true ]; then
      continue
    fi
    docker rm -f "$name" >/dev/null 2>&1 || true
    # systemd as PID 1 without --privileged: SYS_ADMIN, no seccomp filter, cgroups read-only, tmpfs runtime dirs.
    # The public key is mounted read-only; lab-authorized-keys.service installs it for the user deploy at boot.
    docker run -d --name "$name" --hostname "$host" --network "$network" --ip "$(address "$host")" \
      --cap-add SYS_ADMIN --security-opt seccomp=unconfined --stop-signal SIGRTMIN+3 \
      -v /sys/fs/cgroup:/sys/fs/cgroup:ro --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
      -v "$key.pub:/etc/fleetpki-lab/authorized_keys:ro" \
      "$image" >/dev/null
  done
  for host in "${hosts[@]}"; do
    wait_ssh "$host" "$(address "$host")"
  done
  echo "lab up on $network ($subnet), SSH as deploy with $key:"
  ips
}

ips() {
  local host
  for host in "${hosts[@]}"; do
    printf '  %-8s %-16s container %s\n' "$host" "$(address "$host")" "$prefix$host"
  done
}

down() {
  local host
  for host in "${hosts[@]}"; do docker rm -f "$prefix$host" >/dev/null 2>&1 || true; done
  docker network rm "$network" >/dev/null 2>&1 || true
  # The default lab's PKI (pki/lab beside ansible.cfg), and one an earlier version made inside the inventory.
  # A prefixed lab has its own inventory and PKI elsewhere: not ours to remove.
  if [ -z "$prefix" ]; then
    rm -rf "$root/pki/lab" "$root/inventories/lab/pki"
  fi
  echo "lab down: ${prefix:-(no prefix)} containers and network $network removed"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  down-all) down; rm -f "$key" "$key.pub"; echo "lab SSH key removed" ;;
  ips) ips ;;
  key) ensure_key ;;
  *) echo "usage: $0 up|down|down-all|ips|key" >&2; exit 2 ;;
esac
