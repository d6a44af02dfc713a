# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private X.509 engine of fleetpki.mtls: the modules are thin wrappers over these classes.

Nothing here is a public API; it may change between releases.
"""
