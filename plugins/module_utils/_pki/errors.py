# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class PkiError(Exception):
    """An error an operator can act on: the message names the input and the fix.

    Messages never carry a passphrase or key material.
    """
