# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The roles' README.md files are what tests/tools/role_readmes.py makes of their meta/argument_specs.yml."""

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GENERATOR = os.path.join(ROOT, 'tests', 'tools', 'role_readmes.py')


def check(root):
    return subprocess.run([sys.executable, GENERATOR, '--check', '--root', root],
                          capture_output=True, text=True, timeout=60, check=False)


def test_every_readme_matches_its_argument_specs():
    run = check(ROOT)
    assert run.returncode == 0, run.stderr


def test_a_changed_spec_is_reported_by_role_until_regenerated(tmp_path):
    # A copy of what the generator reads: the roles, the playbooks (for the examples) and meta/runtime.yml.
    for part in ('roles', 'playbooks', 'meta'):
        shutil.copytree(os.path.join(ROOT, part), str(tmp_path / part))
    spec = tmp_path / 'roles' / 'ca_trust' / 'meta' / 'argument_specs.yml'
    spec.write_text(spec.read_text().replace('default: true', 'default: false', 1))

    drift = check(str(tmp_path))
    assert drift.returncode == 1
    assert 'README.md out of date for role(s): ca_trust.' in drift.stderr
    assert '`ca_trust_system_store` | bool | no | `false`' in drift.stderr  # the diff shows the new default
    assert (tmp_path / 'roles' / 'ca_trust' / 'README.md').read_text() == \
        open(os.path.join(ROOT, 'roles', 'ca_trust', 'README.md')).read()  # --check writes nothing

    subprocess.run([sys.executable, GENERATOR, '--root', str(tmp_path)], check=True, capture_output=True, timeout=60)
    assert check(str(tmp_path)).returncode == 0


def test_a_missing_readme_is_drift(tmp_path):
    for part in ('roles', 'playbooks', 'meta'):
        shutil.copytree(os.path.join(ROOT, part), str(tmp_path / part))
    (tmp_path / 'roles' / 'pki' / 'README.md').unlink()
    drift = check(str(tmp_path))
    assert drift.returncode == 1 and 'role(s): pki.' in drift.stderr
