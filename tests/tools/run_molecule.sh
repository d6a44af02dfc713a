#!/usr/bin/env bash
# Run a molecule scenario the way CI does: converge with --diff -vvv and scan that log for secrets, check
# idempotence, verify with testinfra (failing when no test ran), destroy at the end whatever happened.
#   tests/tools/run_molecule.sh [scenario]
set -euo pipefail
cd "$(dirname "$0")/../.."
scenario=${1:-default}
export PATH=$PWD/.venv/bin:$PATH
unset ANSIBLE_CONFIG   # molecule writes its own
logs=.build/molecule-logs/$scenario
mkdir -p "$logs"
rm -rf .build/molecule-pki .build/molecule-old-scripts "$logs/figures.json"
# The lab's SSH key (.build/lab-ssh, never committed): the scenarios mount its public half into the containers
# and reach them over SSH as deploy with sudo.
lab/lab.sh key

cleanup() { molecule destroy -s "$scenario" >"$logs/destroy.log" 2>&1 || true; }
trap cleanup EXIT

step() { echo "molecule $scenario: $*"; }

step destroy
# What a run that ended without its own destroy left (molecule labels its containers owner=molecule; every scenario
# uses the network fleetpki-molecule). With nothing left, molecule's state alone is cleared (reset, about 3 s; a
# destroy with nothing to remove takes 11 s).
if [ -n "$(docker ps -aq --filter label=owner=molecule)" ] || docker network inspect fleetpki-molecule >/dev/null 2>&1
then
  molecule destroy -s "$scenario" >"$logs/destroy.log" 2>&1
else
  molecule reset -s "$scenario" >"$logs/destroy.log" 2>&1
fi
step create
molecule create -s "$scenario" >"$logs/create.log" 2>&1 || { tail -50 "$logs/create.log"; exit 1; }
step "converge (--diff -vvv)"
molecule converge -s "$scenario" -- --diff -vvv >"$logs/converge.log" 2>&1 || { tail -80 "$logs/converge.log"; exit 1; }
# The secrets below are the scenario's test-only values (molecule.yml); the keys and Redis ACL passwords are the
# ones it made (the migration scenario's converge only builds the old fleet: its key is the old scripts' CA key).
scan_dir=.build/molecule-pki
if [ "$scenario" = migration ]; then scan_dir=.build/molecule-old-scripts; fi
python3 tests/tools/scan_log_for_secrets.py "$logs/converge.log" "$scan_dir" \
  molecule-redis-Pa55w0rd-7f3c9e molecule-ca-passphrase-b81d4a molecule-extra-env-secret-5d2a \
  molecule-root-passphrase-c4e7f1
# The lifecycle scenario's tests change the fleet on purpose; the default scenario checks idempotence.
if [ "$scenario" = default ]; then
  step idempotence
  molecule idempotence -s "$scenario" >"$logs/idempotence.log" 2>&1 || { tail -80 "$logs/idempotence.log"; exit 1; }
fi
step verify
status=0
molecule verify -s "$scenario" >"$logs/verify.log" 2>&1 || status=$?
grep -E '(PASSED|FAILED|ERROR)|[0-9]+ (passed|failed)' "$logs/verify.log" | sed 's/^[^a-zA-Z0-9=]*//' || true
if [ "$status" -ne 0 ]; then
  tail -120 "$logs/verify.log"
  exit "$status"
fi
# testinfra passes silently when it finds no test: demand a pytest summary with passed tests.
if ! grep -Eq '[0-9]+ passed' "$logs/verify.log"; then
  echo "molecule $scenario: verify ran no test" >&2
  exit 1
fi
# Figures the lifecycle tests measured (rotate and rollover wall time, client operations, longest pause).
if [ -f "$logs/figures.json" ]; then
  echo "molecule $scenario: figures"; cat "$logs/figures.json"
fi
step "all steps passed"
