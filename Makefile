# fleetpki.mtls: the one entry point for setup, tests, demo and benchmarks.
#   make setup   virtualenvs with pinned dependencies (.venv, and .venv-c38 for cryptography 38.0.4)
#   make test    everything CI checks (runs setup when needed)
#   make demo    roll the lab fleet out to mTLS      make lab-down   remove the lab fleet
#   make bench   benchmarks (figures printed, nothing asserted)
#   make lab-scale N=50   the scale lab (1 Redis, 1 API, 1 pki client, N-3 workers)   make lab-scale-down
#   make bench-scale SIZES="5 25 50"   site / rotate / verify on the scale lab against Ansible's floor

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
VENV38 := .venv-c38
# Galaxy's importer, antsibull-docs/-changelog, ansible-builder: their own pins never move the test venv's.
VENVREL := .venv-release
BIN := $(CURDIR)/$(VENV)/bin
# ansible-test needs the tree at a path ending in ansible_collections/fleetpki/mtls (a copy: a symlink fails,
# and a path with a hidden directory in it makes ansible-test skip every target). One copy per checkout, so two
# checkouts never rebuild each other's copy mid-run.
ACROOT ?= /tmp/fleetpki-ansible-test$(subst /,-,$(CURDIR))
# ansible-test bootstraps pip with a get-pip.py it downloads from a host this network cannot reach.
GET_PIP_CACHE := $(HOME)/.ansible/test/cache/get_pip_24_2.py
ACDIR := $(ACROOT)/ansible_collections/fleetpki/mtls
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PYTHONPATH := $(CURDIR)/collections
export PATH := $(BIN):$(PATH)

.PHONY: setup setup-release test engine-checks unit unit-c38 redis tls integration oldest-core crash sanity units lint build-check \
	release-checks role-readmes install-path demo lab-down bench clean playbook-checks molecule bench-lab bench-rotate \
	ansible-test-tree lab-scale lab-scale-down bench-scale

setup: $(VENV)/.done $(VENV38)/.done

$(VENV)/.done: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

# Debian 12's python3-cryptography is 38.0.4: cert_expiry's module_utils must work there too.
$(VENV38)/.done: requirements-c38.txt
	$(PYTHON) -m venv $(VENV38)
	$(VENV38)/bin/pip install -q --upgrade pip
	$(VENV38)/bin/pip install -q -r requirements-c38.txt
	touch $@

setup-release: $(VENVREL)/.done

$(VENVREL)/.done: requirements-release.txt
	$(PYTHON) -m venv $(VENVREL)
	$(VENVREL)/bin/pip install -q --upgrade pip
	$(VENVREL)/bin/pip install -q -r requirements-release.txt
	touch $@

# Static checks first (fast to fail), then tests from the engine outwards to the lab fleet, and last the operator's
# path: the built tarball installed into a project of its own, run over SSH on a lab of its own.
test: setup lint sanity crash engine-checks units redis tls build-check release-checks playbook-checks molecule \
	install-path
	@echo "make test: all checks passed"

# The engine's checks that need no lab and write nothing they share (temp directories of their own; .venv is only
# read; oldest-core makes .venv-core217, which no other uses): two at a time on CI's 2 cores, the longest first, each
# one's output printed whole when it ends (so a CI log stamps all its lines with the time it ended). About 2 minutes
# less than one after the other. Not the crash test: it times its kills against its own first run, which a
# neighbour's changing load would skew.
engine-checks: setup
	$(MAKE) --no-print-directory -j2 --output-sync=target oldest-core integration unit-c38 unit

# The upgrade test of the roles' file tasks is one whole playbook run (about 30 s, on the controller's ansible-core,
# no key or certificate parsed): `make units` (ansible-test, the same ansible-core as .venv) and `make oldest-core`
# run it; the two runs here, on the same ansible-core, leave it out.
UNIT_DESELECT := --deselect tests/unit/plugins/roles/test_tls_files_upgrade.py::test_a_fleet_the_earlier_roles_wrote_is_unchanged

unit: setup
	$(BIN)/python -m pytest -q $(UNIT_DESELECT) tests/unit

unit-c38: setup
	$(VENV38)/bin/python -m pytest -q $(UNIT_DESELECT) tests/unit

# redis_admin against a real redis-server with TLS (started by the tests on loopback) and redis-py.
redis: setup
	$(BIN)/python -m pytest -q tests/redis

# The TLS policy (Mozilla intermediate and modern) as sslyze sees it: the roles' rendered settings on a real
# redis-server and the reference API on loopback.
tls: setup
	$(BIN)/python -m pytest -q tests/tls

integration: setup
	$(BIN)/ansible-playbook tests/integration/pki_engine.yml
	$(BIN)/ansible-playbook tests/integration/reference_services_user.yml

# The oldest ansible-core meta/runtime.yml claims (2.17): units and the localhost integration, in .venv-core217.
oldest-core:
	tests/tools/oldest_core.sh

crash: setup
	$(BIN)/python tests/crash/kill_pki_leaf.py

# Preflight errors of site.yml on fake inventories (no hosts needed: they stop before connecting). Each case is an
# ansible-playbook run of its own, in its own temp dir: pytest-xdist runs them on every core (-n auto; PYTEST_WORKERS=1
# runs them one at a time).
PYTEST_WORKERS ?= auto
playbook-checks: setup
	tests/tools/ensure-promtool.sh
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --durations=15 tests/playbooks

# The lab fleet in containers (needs Docker: lab/ensure-docker.sh): default = converge, idempotence, testinfra;
# lifecycle = rotate, CA rollover, revocation under live load, then the faults; migration = a password-only
# plaintext fleet taken to mTLS by site.yml under live load.
molecule: setup
	lab/ensure-docker.sh
	lab/build-image.sh
	tests/tools/run_molecule.sh default
	tests/tools/run_molecule.sh lifecycle
	tests/tools/run_molecule.sh migration

# A HOME of its own: molecule installs a copy of the collection into ~/.ansible/collections, which ansible-lint
# would otherwise resolve fleetpki.mtls from (a stale copy fails the syntax check of newer playbooks).
lint: setup
	mkdir -p .build/lint-home
	HOME=$(CURDIR)/.build/lint-home $(BIN)/ansible-lint --profile production --offline

# Tracked and new (not ignored) files, without the collections/ symlink back to the tree.
ansible-test-tree: $(GET_PIP_CACHE)
	rm -rf $(ACROOT) && mkdir -p $(ACDIR)
	git ls-files -co --exclude-standard -z | grep -zv '^collections/' | tar --null -T - -cf - | tar -xf - -C $(ACDIR)

$(GET_PIP_CACHE): tests/tools/get_pip_offline.py
	mkdir -p $(dir $@) && cp $< $@

sanity: setup ansible-test-tree
	cd $(ACDIR) && $(BIN)/ansible-test sanity --venv --python 3.11 --color no

units: setup ansible-test-tree
	cd $(ACDIR) && $(BIN)/ansible-test units --venv --python 3.11 --color no

# The built tarball installs and ansible-doc prints every module with its examples.
build-check: setup
	rm -rf .build/galaxy && mkdir -p .build/galaxy
	$(BIN)/python tests/build/collection_tarball.py --output-path .build/galaxy
	env -u ANSIBLE_CONFIG -u PYTHONPATH $(BIN)/ansible-galaxy collection install --force \
		-p $(CURDIR)/.build/galaxy/installed $(CURDIR)/.build/galaxy/fleetpki-mtls-*.tar.gz
	for module in pki_ca pki_leaf pki_crl cert_expiry pki_backup pki_rollover redis_admin redis_client_check; do \
		(cd /tmp && env -u ANSIBLE_CONFIG -u PYTHONPATH ANSIBLE_NOCOLOR=1 ANSIBLE_COLLECTIONS_PATH=$(CURDIR)/.build/galaxy/installed $(BIN)/ansible-doc fleetpki.mtls.$$module) \
			> .build/galaxy/$$module.txt; \
		grep -q 'galaxy/installed/ansible_collections/fleetpki/mtls/plugins/modules' .build/galaxy/$$module.txt \
			&& grep -q '^EXAMPLES' .build/galaxy/$$module.txt \
			|| { echo "ansible-doc fleetpki.mtls.$$module: not from the installed tarball, or no examples"; exit 1; }; \
	done
	@echo "build-check: tarball installs and ansible-doc shows every module"
	$(BIN)/python -m pytest -q tests/build

# What Galaxy and a release check: the role READMEs match meta/argument_specs.yml, galaxy-importer passes on the
# tarball (ansible-test off: offline), antsibull-docs lint and the docs site build, the changelog fragments and
# CHANGELOG.md, and ansible-builder create on an execution environment holding the tarball.
release-checks: setup setup-release
	$(BIN)/python tests/tools/role_readmes.py --check
	tests/tools/galaxy_import.sh
	tests/tools/build_docsite.sh
	tests/tools/changelog_check.sh
	tests/tools/ee_create.sh

# Regenerate roles/*/README.md from their meta/argument_specs.yml (release-checks fails when they drift).
role-readmes: setup
	$(BIN)/python tests/tools/role_readmes.py

# Regenerate docs/docsite/rst/*.rst, the docs site's pages of the guides, from docs/*.md with pandoc (committed so
# the tarball ships them; release-checks fails when they drift).
.PHONY: docs-rst
docs-rst:
	tests/tools/docs_rst.sh

# The operator's path: tarball, install, fleetpki.mtls.init, then site / verify / rotate / the renewal job's command
# from that project over SSH with become, on a lab of its own (inst-* containers).
install-path: setup
	lab/ensure-docker.sh
	lab/build-image.sh
	tests/install/run.sh

demo: setup
	lab/demo.sh

lab-down:
	lab/lab.sh down

bench: setup
	$(BIN)/python benchmarks/bench_issue.py
	$(BIN)/python benchmarks/bench_fleet.py --pki-only

# site.yml on the lab fleet, first and idempotent run (needs Docker; takes the lab down at the end).
bench-lab: setup
	lab/ensure-docker.sh
	$(BIN)/python benchmarks/bench_fleet.py

# rotate.yml under the load client on the demo lab (make demo first; the lab stays up).
bench-rotate: setup
	$(BIN)/python benchmarks/bench_rotate.py

# The scale lab (docs/lab.md): N hosts over SSH on 172.30.102.0/24, inventory and PKI in .build/lab-scale.
N ?= 50
lab-scale:
	lab/ensure-docker.sh
	lab/scale.sh up '$(N)'

lab-scale-down:
	lab/scale.sh down

# Issue 11's figures (docs/benchmarks.md): for each size, the scale lab up, site / rerun / rotate under load /
# verify and their floors, then the lab down. Minutes per size: run it on an idle machine.
SIZES ?= 5 25 50
bench-scale: setup
	lab/ensure-docker.sh
	$(BIN)/python benchmarks/bench_scale.py $(SIZES)

clean:
	rm -rf .build $(ACROOT) $(VENV) $(VENV38) $(VENVREL) .venv-core217
