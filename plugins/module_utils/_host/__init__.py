# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What runs on fleet hosts (Debian python3, standard library only): nothing here imports
the X.509 engine, only its standard-library file helpers (_pki/files.py).

Nothing here is a public API; it may change between releases.
"""
