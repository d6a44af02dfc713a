#!/usr/bin/env bash
# The operator's path, end to end, on a lab of its own: build the tarball, install it into a temp collections
# path, write a project with fleetpki.mtls.init, fill its inventory with the lab's hosts, then from that project
# (its own ansible.cfg; nothing of this checkout in the environment) run fleetpki.mtls.site, .verify, .rotate,
# install the renewal job and run the unit's exact ExecStart with its Environment and WorkingDirectory.
#   tests/install/run.sh                      over SSH as the lab's user deploy with sudo (lab/lab.sh)
#   FLEETPKI_INSTALL_CONNECTION=docker tests/install/run.sh    the same hosts through docker exec as root
# The lab is inst-* on 172.30.101.0/24 (never the unprefixed containers molecule and make demo use), torn down at
# the end. Each step's time is printed.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${FLEETPKI_VENV:-$root/.venv}/bin
export FLEETPKI_LAB_PREFIX=${FLEETPKI_LAB_PREFIX:-inst-}
export FLEETPKI_LAB_SUBNET=${FLEETPKI_LAB_SUBNET:-172.30.101.0/24}
connection=${FLEETPKI_INSTALL_CONNECTION:-ssh}
net3=${FLEETPKI_LAB_SUBNET%.0/24}
work=$(mktemp -d /tmp/fleetpki-install.XXXXXX)
chmod 0755 "$work"
home=$work/home
mkdir -m 0700 "$home"
# README's project: ~/fleets/prod with HOME=$home.
proj=$home/fleets/prod

step() {  # step NAME COMMAND...: run, print its time, stop on failure
  local name=$1 start rc=0
  shift
  start=$(date +%s%N)
  echo "=== $name"
  "$@" || rc=$?
  local tenths=$((($(date +%s%N) - start) / 100000000))
  printf '=== %s: %d.%d s (rc %d)\n' "$name" $((tenths / 10)) $((tenths % 10)) "$rc"
  return "$rc"
}

cleanup() {
  local rc=$?
  "$root/lab/lab.sh" down || true
  [ "${FLEETPKI_INSTALL_KEEP:-}" = 1 ] || rm -rf "$work"
  echo "tests/install/run.sh: rc $rc"
}
trap cleanup EXIT

# A summary line per step is printed as "=== <step>: <seconds> s (rc N)"; FLEETPKI_INSTALL_KEEP=1 keeps the temp dir.

# An operator's shell: no ANSIBLE_* or PYTHONPATH of this checkout (make exports them), HOME of its own.
clean() {
  env -u ANSIBLE_CONFIG -u PYTHONPATH -u ANSIBLE_COLLECTIONS_PATH -u ANSIBLE_ROLES_PATH -u VIRTUAL_ENV \
    HOME="$home" ANSIBLE_NOCOLOR=1 PATH="$bin:/usr/local/bin:/usr/bin:/bin" "$@"
}

# README.md's operator steps 1 and 2, read from README.md and run by bash as written (<version> filled in): the
# install path is the documented one, with the same environment (nothing but HOME and PATH of an operator's shell).
readme_line() {  # readme_line PREFIX: the first line of README.md starting with PREFIX (no regex characters)
  local line
  line=$(grep -m1 -e "^$1" "$root/README.md") || { echo "README.md has no line starting with '$1'" >&2; return 1; }
  printf '%s\n' "$line"
}

build_and_install() {
  local version install
  version=$("$bin/python" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["version"])' "$root/galaxy.yml")
  install=$(readme_line 'ansible-galaxy collection install ')
  # The tarball every test takes (built once per tree, refused if it holds a vault, a key or a URL's credentials).
  "$bin/python" "$root/tests/build/collection_tarball.py" --output-path "$work/dist"
  echo "+ ${install//<version>/$version}"
  (cd "$work/dist" && clean bash -c "${install//<version>/$version}")
}

init_project() {
  local init
  init=$(readme_line 'ANSIBLE_COLLECTIONS_PATH=')
  echo "+ $init"
  (cd "$work" && clean bash -c "$init")
}

# The operator's edit: the lab's hosts in the inventory, and the lab's connection settings for the fleet group.
fill_inventory() {
  local inv=$proj/inventories/prod
  "$bin/python" - "$inv/hosts.yml" "$net3" "$connection" "$root/.build/lab-ssh/id_ed25519" "$FLEETPKI_LAB_PREFIX" <<'PY'
import sys, yaml
path, net3, connection, key, prefix = sys.argv[1:]
data = yaml.safe_load(open(path))
groups = data['fleet']['children']
hosts = ['redis1', 'worker1', 'worker2', 'api1', 'pxe1']
members = {'redis_servers': ['redis1'], 'workers': ['worker1', 'worker2'], 'api_servers': ['api1'],
           'pki_clients': ['pxe1'], 'redis_clients': ['pxe1']}
for group, names in members.items():
    groups[group]['hosts'] = {name: {'ansible_host': '%s.%d' % (net3, 11 + hosts.index(name))} for name in names}
fleet_vars = data['fleet'].setdefault('vars', {})
if connection == 'docker':
    fleet_vars.update(ansible_connection='community.docker.docker', ansible_become=False)
    for group in groups.values():
        for name, host in group['hosts'].items():
            host['ansible_host'] = prefix + name
else:
    fleet_vars.update(ansible_user='deploy', ansible_ssh_private_key_file=key,
                      ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null '
                                              '-o LogLevel=ERROR -o ControlMaster=auto -o ControlPersist=60s',
                      ansible_python_interpreter='/usr/bin/python3')
yaml.safe_dump(data, open(path, 'w'), default_flow_style=False)
PY
  # The lab runs the reference worker and API services (as molecule's default scenario does).
  sed -i 's/^fleetpki_reference_services: false/fleetpki_reference_services: true/' "$inv/group_vars/all/vars.yml"
}

# Nothing of the checkout in the environment the playbooks run with, and the project is the cwd.
assert_clean() {
  local leaked
  # shellcheck disable=SC2015  # || true: grep finding nothing is the good case
  leaked=$(cd "$proj" && clean env | grep -E '^(ANSIBLE_|PYTHONPATH)' | grep -F "$root" || true)
  if [ -n "$leaked" ]; then echo "checkout paths in the environment: $leaked" >&2; return 1; fi
  if grep -qF "$root" "$proj/ansible.cfg"; then echo "the project's ansible.cfg names the checkout" >&2; return 1; fi
}

play() {  # play FQCN [args]: from the project, with its ansible.cfg only
  (cd "$proj" && clean "$bin/ansible-playbook" "$@")
}

install_timer() {
  mkdir -p "$work/units"
  play fleetpki.mtls.renewal_timer -e renewal_timer_manage_service=false -e "renewal_timer_unit_dir=$work/units"
}

# systemd would run ExecStart with the unit's Environment= and WorkingDirectory= and little else.
run_unit() {
  local unit=$work/units/fleetpki-renewal.service
  "$bin/python" - "$unit" "$home" <<'PY'
import re, shlex, subprocess, sys
unit, home = sys.argv[1:]
text = open(unit).read()
exec_start = re.search(r'^ExecStart=(.*)$', text, re.M).group(1)
workdir = re.search(r'^WorkingDirectory=(.*)$', text, re.M).group(1)
env = {'PATH': '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME': home, 'LANG': 'C.UTF-8'}
for value in re.findall(r'^Environment=(.*)$', text, re.M):
    key, _, val = shlex.split(value)[0].partition('=')
    env[key] = val
print('ExecStart=%s\nWorkingDirectory=%s\nEnvironment=%s' % (exec_start, workdir, env), flush=True)
sys.exit(subprocess.call(shlex.split(exec_start), cwd=workdir, env=env))
PY
}

step "lab up ($FLEETPKI_LAB_PREFIX, $FLEETPKI_LAB_SUBNET)" "$root/lab/lab.sh" up
step "build and install the tarball" build_and_install
step "fleetpki.mtls.init" init_project
step "fill the inventory ($connection)" fill_inventory
step "nothing of the checkout in the environment" assert_clean
step "fleetpki.mtls.site" play fleetpki.mtls.site
step "fleetpki.mtls.verify" play fleetpki.mtls.verify
step "fleetpki.mtls.rotate" play fleetpki.mtls.rotate
step "fleetpki.mtls.renewal_timer (units in $work/units)" install_timer
step "the renewal unit's ExecStart" run_unit
echo "tests/install/run.sh: the install path works"
