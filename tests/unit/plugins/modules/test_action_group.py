# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""module_defaults for group/fleetpki.mtls.pki hands the same arguments to every module of the group."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib
import os

import pytest
import yaml

RUNTIME = os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', 'meta', 'runtime.yml')


def group_modules():
    with open(RUNTIME) as handle:
        return yaml.safe_load(handle)['action_groups']['pki']


@pytest.mark.parametrize('name', group_modules())
def test_every_module_of_the_group_accepts_ca_dir_and_ca_passphrase(name, tmp_path, run_module):
    # Ansible merges group/fleetpki.mtls.pki defaults into every module's arguments; a module that did not know
    # one of them would fail with "Unsupported parameters" in any play that sets the group's defaults.
    module = importlib.import_module('ansible_collections.fleetpki.mtls.plugins.modules.' + name)
    run = run_module(module, {'ca_dir': str(tmp_path / 'ca'), 'ca_passphrase': 'a-passphrase-of-the-group'})
    assert 'Unsupported parameters' not in run.result.get('msg', ''), run.result
    assert 'a-passphrase-of-the-group' not in run.stdout


@pytest.mark.parametrize('name', group_modules())
def test_every_module_of_the_group_takes_its_membership_from_the_fragment(name):
    # Written once in plugins/doc_fragments/pki_group.py: a copy in a module drifts when the group changes.
    module = importlib.import_module('ansible_collections.fleetpki.mtls.plugins.modules.' + name)
    documentation = yaml.safe_load(module.DOCUMENTATION)
    assert 'fleetpki.mtls.pki_group.action_group' in documentation.get('extends_documentation_fragment', []), name
    assert 'action_group' not in documentation.get('attributes', {}), name
