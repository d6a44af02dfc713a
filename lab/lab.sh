#!/usr/bin/env bash
# The local lab fleet: one container with systemd and sshd per inventory host of inventories/lab, reached over
# SSH as the user `deploy` (passwordless sudo) with the lab's own key, like a real fleet.
#   lab/lab.sh up        build the image if needed, make the SSH key if missing, start the containers (idempotent)
#   lab/lab.sh down      remove the containers, the network and the lab's PKI (the key stays)
#   lab/lab.sh down-all  the same, and the SSH key too
#   lab/lab.sh ips       print each host's address
#   lab/lab.sh key       only make the SSH key if missing (molecule mounts its public half into its containers)
#   lab/lab.sh inventory DIR   write an inventory for these hosts at their addresses (hosts.yml, group_vars), its
#                        PKI beside it (DIR/../pki): what a prefixed lab needs (lab/scale.sh uses it)
# A second lab beside molecule's or the demo's: another prefix and subnet, e.g.
#   FLEETPKI_LAB_PREFIX=inst- FLEETPKI_LAB_SUBNET=172.30.101.0/24 lab/lab.sh up
# Addresses: the subnet is a /24 (a.b.c.0/24); host number i of (redis1 worker1 worker2 api1 pxe1), from 1,
# gets a.b.c.(10+i): redis1 .11, worker1 .12, worker2 .13, api1 .14, pxe1 .15. inventories/lab names the default
# subnet's addresses (172.30.99.0/24); another subnet needs its own inventory (`lab/lab.sh ips` prints them).
# Other hosts: FLEETPKI_LAB_HOSTS="redis1 api1 pxe1 worker01 ..." (the same .10+i scheme, so at most 244 hosts;
# the group of each comes from its name: redis*, api*, pxe*, worker*); FLEETPKI_LAB_MEMORY=256m caps each
# container's memory (docker run --memory). lab/scale.sh sets both for the scale lab.
# Ownership: the containers and the network carry the label fleetpki-lab=<prefix, or "default" without one>;
# down removes only what carries this lab's label, and up refuses a container or network of the same name
# without it (molecule's redis1..., anyone's scale-foreign), so no other container is ever removed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
image=${FLEETPKI_LAB_IMAGE:-fleetpki-lab:bookworm}
prefix=${FLEETPKI_LAB_PREFIX:-}
subnet=${FLEETPKI_LAB_SUBNET:-172.30.99.0/24}
network=${prefix}fleetpki-lab
key=$root/.build/lab-ssh/id_ed25519
lab_label=fleetpki-lab=${prefix:-default}
# Split on blanks and newlines, never globbed (read -a): the names are then checked one by one.
read -r -d '' -a hosts <<< "${FLEETPKI_LAB_HOSTS:-redis1 worker1 worker2 api1 pxe1}" || true
memory=${FLEETPKI_LAB_MEMORY:-}

# The prefix names containers, the network and the label: a plain name ending in '-'. Not "default-": too close to
# the unprefixed lab's label ("default") to tell the two labs apart at a glance.
if [ -n "$prefix" ] && { ! [[ $prefix =~ ^[a-z][a-z0-9]*-$ ]] || [ "$prefix" = default- ]; }; then
  echo "FLEETPKI_LAB_PREFIX=$prefix: give lower-case letters and digits ending in '-', e.g. inst- (not default-)" >&2
  exit 2
fi
if ! [[ $subnet =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.0/24$ ]]; then
  echo "FLEETPKI_LAB_SUBNET=$subnet: give a /24 ending in .0, e.g. 172.30.101.0/24" >&2
  exit 2
fi
net3=${BASH_REMATCH[1]}
if [ "${#hosts[@]}" -eq 0 ]; then
  echo "FLEETPKI_LAB_HOSTS names no host: give names such as \"redis1 api1 pxe1 worker01\"" >&2
  exit 2
fi
declare -A seen_hosts=()
for host in "${hosts[@]}"; do
  # A host name (it is the container's hostname, and its name in the inventory): lower-case letters, digits, '-'.
  if ! [[ $host =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]]; then
    echo "FLEETPKI_LAB_HOSTS: '$host' is not a host name: use lower-case letters, digits and '-' (e.g. worker01)" >&2
    exit 2
  fi
  if [ -n "${seen_hosts[$host]:-}" ]; then
    echo "FLEETPKI_LAB_HOSTS: '$host' is named twice: each host once" >&2
    exit 2
  fi
  seen_hosts[$host]=1
done
unset seen_hosts host
if [ "${#hosts[@]}" -gt 244 ]; then
  echo "FLEETPKI_LAB_HOSTS: ${#hosts[@]} hosts, at most 244 fit a /24 at .11 to .254" >&2
  exit 2
fi

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

# owned_by_lab container|network NAME: true if NAME exists and carries this lab's label.
owned_by_lab() {
  local labels=.Labels
  if [ "$1" = container ]; then labels=.Config.Labels; fi
  [ "$(docker "$1" inspect -f "{{index $labels \"fleetpki-lab\"}}" "$2" 2>/dev/null)" = "${lab_label#fleetpki-lab=}" ]
}

ensure_network() {
  if docker network inspect "$network" >/dev/null 2>&1; then
    local have
    if ! owned_by_lab network "$network"; then
      echo "network $network exists without the label $lab_label: it is not this lab's (or an older lab.sh made it)." >&2
      echo "Remove it if it is yours (docker network rm $network), or choose another FLEETPKI_LAB_PREFIX." >&2
      exit 1
    fi
    have=$(docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}' "$network")
    if [ "$have" != "$subnet" ]; then
      echo "network $network has subnet $have, not $subnet: lab/lab.sh down first" >&2
      exit 1
    fi
    return
  fi
  docker network create --label "$lab_label" --subnet "$subnet" --gateway "$net3.1" "$network" >/dev/null
}

wait_ssh() {  # wait_ssh HOST ADDRESS
  local _
  for _ in $(seq 1 60); do
    if [ "$(docker inspect -f '{{.State.Running}}' "${prefix}$1" 2>/dev/null)" = false ]; then
      echo "$1 ($2): its container stopped (docker logs ${prefix}$1)" >&2
      return 1
    fi
    if ssh -i "$key" -o BatchMode=yes -o ConnectTimeout=2 -o StrictHostKeyChecking=no \
         -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR "deploy@$2" sudo -n true 2>/dev/null; then
      return 0
    fi
    sleep 1
  done
  echo "$1 ($2): no SSH login as deploy with sudo after 60 s; see docker exec ${prefix}$1 journalctl -u ssh" >&2
  return 1
}

start_host() {  # start_host HOST: start its container unless it runs already
  local name=$prefix$1
  if docker container inspect "$name" >/dev/null 2>&1; then
    if ! owned_by_lab container "$name"; then
      echo "container $name exists without the label $lab_label: it is not this lab's (or an older lab.sh made it)." >&2
      echo "Remove it if it is yours (docker rm -f $name), or choose another FLEETPKI_LAB_PREFIX." >&2
      return 1
    fi
    if [ "$(docker inspect -f '{{.State.Running}}' "$name")" = true ]; then
      return 0
    fi
    docker rm -f "$name" >/dev/null
  fi
  # systemd as PID 1 without --privileged: SYS_ADMIN, no seccomp filter, cgroups read-only, tmpfs runtime dirs.
  # The public key is mounted read-only; lab-authorized-keys.service installs it for the user deploy at boot.
  docker run -d --name "$name" --label "$lab_label" --hostname "$1" --network "$network" --ip "$(address "$1")" \
    ${memory:+--memory "$memory"} \
    --cap-add SYS_ADMIN --security-opt seccomp=unconfined --stop-signal SIGRTMIN+3 \
    -v /sys/fs/cgroup:/sys/fs/cgroup:ro --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
    -v "$key.pub:/etc/fleetpki-lab/authorized_keys:ro" \
    "$image" >/dev/null
}

# each_host FUNCTION: FUNCTION HOST ADDRESS for every host, 8 at a time (50 containers one after the other with
# a wait each is slow; the Docker daemon and 2 cores gain nothing past a few at once). Fails if any failed.
each_host() {
  local host failed=0 pids=()
  for host in "${hosts[@]}"; do
    "$1" "$host" "$(address "$host")" &
    pids+=($!)
    if [ "${#pids[@]}" -ge 8 ]; then
      wait "${pids[0]}" || failed=1
      pids=("${pids[@]:1}")
    fi
  done
  for host in "${pids[@]}"; do wait "$host" || failed=1; done
  return "$failed"
}

up() {
  ensure_docker
  "$here/build-image.sh" "$image"
  ensure_key
  ensure_network
  each_host start_host
  each_host wait_ssh
  echo "lab up on $network ($subnet), SSH as deploy with $key:"
  ips
}

ips() {
  local host
  for host in "${hosts[@]}"; do
    printf '  %-8s %-16s container %s\n' "$host" "$(address "$host")" "$prefix$host"
  done
}

# down: every container with this lab's label (whatever FLEETPKI_LAB_HOSTS says now), then the network if it is
# the lab's. A container or network of the same name without the label stays: it is not ours.
down() {
  local names
  names=$(docker ps -aq --filter "label=$lab_label")
  if [ -n "$names" ]; then
    # shellcheck disable=SC2086  # container ids, split on purpose
    docker rm -f $names >/dev/null
  fi
  if owned_by_lab network "$network"; then
    docker network rm "$network" >/dev/null
  elif docker network inspect "$network" >/dev/null 2>&1; then
    echo "network $network has no label $lab_label: not this lab's, left in place" >&2
  fi
  # The default lab's PKI (pki/lab beside ansible.cfg), and one an earlier version made inside the inventory.
  # A prefixed lab has its own inventory and PKI elsewhere: not ours to remove.
  if [ -z "$prefix" ]; then
    rm -rf "$root/pki/lab" "$root/inventories/lab/pki"
  fi
  echo "lab down: the containers and network labelled $lab_label removed"
}

# The group of a host, from its name (inventories/lab's groups).
group_of() {
  case $1 in
    redis*) echo redis_servers ;;
    api*) echo api_servers ;;
    pxe*) echo pki_clients ;;
    worker*) echo workers ;;
    *) echo "$1: no group for this name (redis*, api*, pxe*, worker*)" >&2; return 1 ;;
  esac
}

# inventory DIR: hosts.yml with each host's address, and group_vars like inventories/lab's, with the PKI in
# DIR/../pki (beside the inventory: an inventory directory is read whole, a PKI inside it would be parsed).
inventory() {
  local dir=$1 group host
  mkdir -p "$dir/group_vars/all" "$dir/group_vars/fleet"
  dir=$(cd "$dir" && pwd)
  {
    echo "---"
    echo "# Written by lab/lab.sh inventory for the lab ${prefix:-(no prefix)} on $subnet; rewritten at every run."
    echo "fleet:"
    echo "  children:"
    for group in redis_servers workers api_servers pki_clients; do
      echo "    $group:"
      echo "      hosts:"
      for host in "${hosts[@]}"; do
        if [ "$(group_of "$host")" = "$group" ]; then
          echo "        $host:"
          echo "          ansible_host: $(address "$host")"
        fi
      done
    done
    # As in inventories/lab: the pki clients talk to Redis (pxe1 runs the benchmark's load client).
    echo "    redis_clients:"
    echo "      hosts:"
    for host in "${hosts[@]}"; do
      if [ "$(group_of "$host")" = pki_clients ]; then echo "        $host:"; fi
    done
  } > "$dir/hosts.yml"
  cat > "$dir/group_vars/all/fleetpki.yml" <<EOT
---
# The lab's settings (inventories/lab), and its PKI beside this inventory directory, never inside it.
fleetpki_reference_services: true
fleetpki_pki_dir: $(dirname "$dir")/pki
EOT
  # inventories/lab/group_vars/fleet/ssh.yml (read there why each setting), with the key's absolute path.
  cat > "$dir/group_vars/fleet/ssh.yml" <<EOT
---
ansible_connection: ansible.builtin.ssh
ansible_user: deploy
ansible_ssh_private_key_file: $key
ansible_ssh_common_args: >-
  -o ControlMaster=auto -o ControlPersist=60s
  -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
ansible_become: true
ansible_become_method: ansible.builtin.sudo
ansible_python_interpreter: /usr/bin/python3
EOT
  echo "inventory for ${#hosts[@]} hosts written to $dir (PKI: $(dirname "$dir")/pki)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  down-all) down; rm -f "$key" "$key.pub"; echo "lab SSH key removed" ;;
  ips) ips ;;
  key) ensure_key ;;
  inventory)
    if [ -z "${2:-}" ]; then echo "usage: $0 inventory DIR" >&2; exit 2; fi
    inventory "$2" ;;
  *) echo "usage: $0 up|down|down-all|ips|key|inventory DIR" >&2; exit 2 ;;
esac
