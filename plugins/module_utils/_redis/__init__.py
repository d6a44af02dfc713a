# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private Redis administration code of fleetpki.mtls (module redis_admin): standard library only, because
redis-py is not on the Redis host. Layers, each importing only the ones above it:

  resp    a RESP2 client over TCP or TLS, and redis.conf parsing
  admin   reaching Redis as its administrator, the way its redis.conf says
  live    runtime changes: CONFIG SET of a new redis.conf, TLS reload, closing the plaintext port
  acl     per-host ACL users

Nothing here is a public API; it may change between releases.
"""
