#!/usr/bin/env bash
# The scale lab: 1 Redis (redis1), 1 API (api1), 1 pki client (pxe1, also a Redis client) and N-3 workers
# (worker01...), containers like the lab's (lab/lab.sh: same image, docker run flags and SSH key) on their own
# prefix and subnet, so they never meet molecule's (172.30.98.0/24), the demo's (.99) or the install path's (.101).
#   lab/scale.sh up N    start N hosts (4 <= N <= 244), remove scale- containers beyond them, write the inventory
#   lab/scale.sh down    remove every container labelled fleetpki-lab=scale- (lab/lab.sh labels its own; a
#                        foreign scale-* container stays), the network, the inventory and the PKI
#   lab/scale.sh ips     print each running host's address
# Inventory: .build/lab-scale/inventory (ansible-playbook -i .build/lab-scale/inventory site.yml); PKI:
# .build/lab-scale/pki. Each container is capped at FLEETPKI_SCALE_MEMORY (default 256m): see docs/lab.md.
# FLEETPKI_LAB_SYSCTL=1 lets `up` raise fs.inotify.max_user_instances (as root) when N containers need more;
# without it, `up` prints the sysctl to run and stops.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
export FLEETPKI_LAB_PREFIX=scale-
export FLEETPKI_LAB_SUBNET=172.30.102.0/24
export FLEETPKI_LAB_MEMORY=${FLEETPKI_SCALE_MEMORY:-256m}
build=$root/.build/lab-scale

hosts_for() {  # hosts_for N
  local i list="redis1 api1 pxe1"
  for i in $(seq 1 $(($1 - 3))); do list="$list $(printf 'worker%02d' "$i")"; done
  echo "$list"
}

# The scale lab's hosts as they run now: the containers carrying its label (lab/lab.sh puts it on at docker
# run), never those that merely share the name prefix. In hosts_for's order (redis1 api1 pxe1 worker01...), as
# lab/lab.sh numbers the addresses by position: `ips` then prints the addresses the containers have.
running_hosts() {
  local name
  docker ps -a --filter "label=fleetpki-lab=$FLEETPKI_LAB_PREFIX" --format '{{.Names}}' | while read -r name; do
    if [[ $name == "$FLEETPKI_LAB_PREFIX"* ]]; then echo "${name#"$FLEETPKI_LAB_PREFIX"}"; fi
  done | awk '{print ($0 == "redis1" ? 0 : $0 == "api1" ? 1 : $0 == "pxe1" ? 2 : 3) " " $0}' | sort -k1,1n -k2,2V | cut -d' ' -f2 | xargs
}

# Every container's systemd takes inotify instances (about 5) from one per-user limit of the Docker host,
# fs.inotify.max_user_instances (often 128: about 25 containers, the rest exit at boot with status 255).
# A kernel setting of the whole machine: changed only when the operator says so (FLEETPKI_LAB_SYSCTL=1).
ensure_inotify() {  # ensure_inotify N
  local have need=$((8 * $1 + 128))
  have=$(cat /proc/sys/fs/inotify/max_user_instances)
  if [ "$have" -ge "$need" ]; then return 0; fi
  if [ "${FLEETPKI_LAB_SYSCTL:-}" = 1 ] && [ "$(id -u)" = 0 ] && sysctl -qw "fs.inotify.max_user_instances=$need"; then
    echo "fs.inotify.max_user_instances raised from $have to $need for $1 systemd containers (until reboot)"
    return 0
  fi
  echo "fs.inotify.max_user_instances is $have: $1 systemd containers need about $need. Either, as root:" >&2
  echo "  sysctl -w fs.inotify.max_user_instances=$need" >&2
  echo "or let this script do it (as root, until reboot): FLEETPKI_LAB_SYSCTL=1 $0 up $1" >&2
  exit 1
}

up() {
  local n=$1 wanted name
  # At least one worker: site.yml's preflight refuses a fleet without one (redis_servers and workers both needed).
  # No leading zero: bash arithmetic would read 010 as octal (8 hosts).
  if ! [[ $n =~ ^[1-9][0-9]*$ ]] || [ "$n" -lt 4 ] || [ "$n" -gt 244 ]; then
    echo "N=$n: give 4 to 244 hosts (1 Redis, 1 API, 1 pki client, N-3 >= 1 workers; .11 to .254 of a /24)" >&2
    exit 2
  fi
  ensure_inotify "$n"
  wanted=" $(hosts_for "$n") "
  # A smaller N than the lab runs now: the workers beyond it go (the inventory no longer names them).
  for name in $(running_hosts); do
    if [[ $wanted != *" $name "* ]]; then docker rm -f "$FLEETPKI_LAB_PREFIX$name" >/dev/null; fi
  done
  export FLEETPKI_LAB_HOSTS=${wanted# }
  "$here/lab.sh" up
  rm -rf "$build/inventory"
  "$here/lab.sh" inventory "$build/inventory"
}

down() {
  # lab/lab.sh down removes what carries the scale lab's label: its containers, whatever N was, and its network.
  "$here/lab.sh" down
  # The scale lab's own inventory and PKI (made for these throwaway containers only).
  rm -rf "$build"
  echo "scale lab down: inventory and PKI in $build removed"
}

case "${1:-}" in
  up) up "${2:-50}" ;;
  down) down ;;
  ips) FLEETPKI_LAB_HOSTS=$(running_hosts); if [ -n "$FLEETPKI_LAB_HOSTS" ]; then export FLEETPKI_LAB_HOSTS; "$here/lab.sh" ips; fi ;;
  *) echo "usage: $0 up N|down|ips" >&2; exit 2 ;;
esac
