# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults injected into host_files part way through a run, shared by its unit tests and the module's."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from ansible_collections.fleetpki.mtls.plugins.module_utils._host import host_files


def fail_rename_onto(monkeypatch, name, error):
    """Every rename onto a file called ``name`` raises ``error`` (a full or read-only disk reached part way)."""
    real_rename = os.rename

    def rename(src, dst, *args, **kwargs):
        if os.path.basename(str(dst)) == name:
            raise error
        return real_rename(src, dst, *args, **kwargs)
    monkeypatch.setattr(host_files.os, 'rename', rename)
