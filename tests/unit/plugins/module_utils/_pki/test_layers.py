# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The engine's modules import only downwards: no cycle, no import hidden inside a function to break one, and the
CA directory's files are touched only by store (and files, its helper)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ast
import os

import pytest

from ansible_collections.fleetpki.mtls.plugins.module_utils import _pki

PKI_DIR = os.path.dirname(_pki.__file__)
PREFIX = 'ansible_collections.fleetpki.mtls.plugins.module_utils._pki'
MODULES = sorted(name[:-3] for name in os.listdir(PKI_DIR) if name.endswith('.py') and name != '__init__.py')


def pki_imports(tree):
    """(names of the _pki modules imported, whether any import of one sits inside a function or class)."""
    found, nested = set(), False
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PREFIX):
            rest = node.module[len(PREFIX):].lstrip('.')
            names = [rest.split('.')[0]] if rest else [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name[len(PREFIX):].lstrip('.').split('.')[0] for alias in node.names
                     if alias.name.startswith(PREFIX + '.')]
        if names:
            found.update(names)
            if node.col_offset > 0:
                nested = True
    return found, nested


def graph():
    edges = {}
    for name in MODULES:
        with open(os.path.join(PKI_DIR, name + '.py')) as handle:
            edges[name] = pki_imports(ast.parse(handle.read()))
    return edges


@pytest.mark.parametrize('name', MODULES)
def test_no_import_inside_a_function(name):
    assert graph()[name][1] is False, '%s imports an engine module inside a function (a hidden cycle)' % name


def test_no_import_cycle():
    edges = dict((name, imports) for name, (imports, dummy) in graph().items())
    done, active = set(), []

    def visit(name):
        if name in active:
            raise AssertionError('import cycle: %s' % ' -> '.join(active[active.index(name):] + [name]))
        if name in done:
            return
        active.append(name)
        for target in sorted(edges.get(name, ())):
            visit(target)
        active.pop()
        done.add(name)

    for name in MODULES:
        visit(name)


@pytest.mark.parametrize('name', ['ca', 'crl', 'leaf', 'backup'])
def test_the_ca_directory_belongs_to_store(name):
    with open(os.path.join(PKI_DIR, name + '.py')) as handle:
        source = handle.read()
    for literal in ("'metadata.json'", "'metadata.journal'", "'revoked.json'", "'crl.pem'", "'ca-key.pem'",
                    "'ca-cert.pem'", "'retired'", 'DirectoryLock('):
        assert literal not in source, '%s handles %s itself instead of through store' % (name, literal)
    assert 'store' in graph()[name][0]
