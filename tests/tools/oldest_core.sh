#!/usr/bin/env bash
# The oldest ansible-core meta/runtime.yml claims (requires_ansible >=2.17.0): run the unit tests and the localhost
# integration playbook of `make integration` on it, in .venv-core217 (made here from requirements-core217.txt when
# missing or older than that file), with the checkout's ansible.cfg and collections/ as `make` uses them.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
VENV=.venv-core217
if [ ! -f "$VENV/.done" ] || [ requirements-core217.txt -nt "$VENV/.done" ]; then
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r requirements-core217.txt
  touch "$VENV/.done"
fi
BIN=$PWD/$VENV/bin
export ANSIBLE_CONFIG=$PWD/ansible.cfg PYTHONPATH=$PWD/collections PATH="$BIN:$PATH"
core=$("$BIN/python" -c 'import ansible.release; print(ansible.release.__version__)')
case "$core" in 2.17.*) ;; *) echo "oldest_core: $VENV has ansible-core $core, not 2.17.x" >&2; exit 1 ;; esac

started=$(date +%s)
"$BIN/python" -m pytest -q tests/unit
"$BIN/ansible-playbook" tests/integration/pki_engine.yml
echo "oldest_core: units and integration passed on ansible-core $core in $(( $(date +%s) - started )) s"
