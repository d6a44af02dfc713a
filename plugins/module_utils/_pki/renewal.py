# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""When a leaf certificate is due for renewal (pki_leaf's renew_days, renew_fraction and renew_splay).

A certificate of lifetime L (notAfter - notBefore) is renewed once less than T of it remains, where

    base = max(renew_days, renew_fraction * L)      (either alone when only one is set)
    T    = base + renew_splay * (L - base) * h

and h in [0, 1) is a stable hash of the certificate's name and serial. Certificates issued together (the whole
fleet on day one) so come due spread over a window of renew_splay * (L - base) instead of all in the same run,
and each renewal draws a new h (a new serial), so they stay spread. T < L always: the splay only moves the
renewal point earlier, into the time the certificate has left before base, so no choice of options makes a
certificate renew on every run. Only the standard library: the control node's rerun decides from metadata.json
without loading cryptography.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import hashlib

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError

# cert-manager's default and step-ca's (which renews at 2/3 of the life): renew once a third of the life is left.
DEFAULT_FRACTION = 1.0 / 3
# The renewal point of each certificate is moved earlier by up to a quarter of the time it has before base: with
# the default fraction, due between 1/2 and 1/3 of the life left (24 h certificates: between 12 h and 8 h left).
DEFAULT_SPLAY = 0.25
MAX_FRACTION = 0.9


class RenewalPolicy:
    """``renew_days``: a fixed margin (days, or None); ``renew_fraction``: of the lifetime (0 < f <= 0.9, or None);
    ``renew_splay``: of the room before the renewal point (0 <= s <= 0.9, or None).

    Defaults: with neither margin set, renew_fraction 1/3. renew_splay defaults to 1/4 when the fraction applies
    and to 0 with renew_days alone, which then means what it always meant (renew within that many days).
    """

    def __init__(self, renew_days=None, renew_fraction=None, renew_splay=None):
        if renew_days is not None and (isinstance(renew_days, bool) or not isinstance(renew_days, int)
                                       or renew_days < 0):
            raise PkiError('renew_days must be 0 or more, not %r' % (renew_days,))
        for option, value in (('renew_fraction', renew_fraction), ('renew_splay', renew_splay)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise PkiError('%s must be a number, not %r' % (option, value))
        if renew_fraction is not None and not 0 < renew_fraction <= MAX_FRACTION:
            raise PkiError('renew_fraction must be above 0 and at most %s (renew when that share of the lifetime is '
                           'left), not %r' % (MAX_FRACTION, renew_fraction))
        if renew_splay is not None and not 0 <= renew_splay <= MAX_FRACTION:
            raise PkiError('renew_splay must be from 0 to %s (0: no splay), not %r' % (MAX_FRACTION, renew_splay))
        if renew_days is None and renew_fraction is None:
            renew_fraction = DEFAULT_FRACTION
        if renew_splay is None:
            renew_splay = DEFAULT_SPLAY if renew_fraction is not None else 0.0
        self.renew_days = renew_days
        self.renew_fraction = renew_fraction
        self.renew_splay = float(renew_splay)
        self._margin = datetime.timedelta(days=renew_days) if renew_days is not None else None

    def check_lifetime(self, where, lifetime, wanted):
        """Refuse a lifetime renew_days alone would renew on every run; ``wanted`` words it (valid_days (20))."""
        if self._margin is not None and lifetime <= self._margin:
            raise PkiError('%s: %s must be greater than renew_days (%d), or the certificate would be re-issued on '
                           'every run' % (where, wanted, self.renew_days))

    def base(self, lifetime):
        """The margin before any splay."""
        base = self._margin if self._margin is not None else datetime.timedelta(0)
        if self.renew_fraction is not None:
            base = max(base, datetime.timedelta(seconds=lifetime.total_seconds() * self.renew_fraction))
        return base

    def threshold(self, lifetime, name, serial):
        """How much of its life is left when this certificate is due."""
        base = self.base(lifetime)
        if not self.renew_splay or base >= lifetime:
            return base
        room = (lifetime - base).total_seconds()
        return base + datetime.timedelta(seconds=int(room * self.renew_splay * splay_position(name, serial)))

    def renew_at(self, not_before, not_after, name, serial):
        """The moment the certificate is due (naive arithmetic on aware datetimes)."""
        return not_after - self.threshold(not_after - not_before, name, serial)

    def uses_days_only(self):
        return self.renew_fraction is None

    def describe(self):
        parts = []
        if self.renew_days is not None:
            parts.append('renew_days %d' % self.renew_days)
        if self.renew_fraction is not None:
            parts.append('renew_fraction %s' % _number(self.renew_fraction))
        if self.renew_splay:
            parts.append('renew_splay %s' % _number(self.renew_splay))
        return ', '.join(parts)


def cert_name(path):
    """pki_leaf's name of a certificate file (<name>-cert.pem, <name>.pem, <name>.crt): what its splay is drawn
    from, so an inspection of the file puts its renewal point where pki_leaf does."""
    name = path.replace('\\', '/').rsplit('/', 1)[-1]
    for suffix in ('-cert.pem', '.crt', '.pem'):
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name


def renew_at_of(policy, cert_not_before, cert_not_after, name, serial, ca_ends=()):
    """When pki_leaf renews a certificate found on disk or served, or None when it never will: the certificate
    ends with a CA (``ca_ends``: the notAfter of each CA it may chain to), so a new one could not live longer and
    pki_leaf does not churn it; renewing the CA is what helps then."""
    if any(end <= cert_not_after for end in ca_ends):
        return None
    return policy.renew_at(cert_not_before, cert_not_after, name, serial)


def splay_position(name, serial):
    """Where in the splay window this certificate falls, in [0, 1): stable for a name and serial."""
    digest = hashlib.sha256(('%s\0%s' % (name, serial)).encode('utf-8')).digest()
    return int.from_bytes(digest[:4], 'big') / 4294967296.0


def duration_text(delta):
    """7.9 h, 3 days: what a reason says about a time left or a lifetime."""
    seconds = delta.total_seconds()
    if abs(seconds) >= 2 * 86400:
        return '%d days' % int(seconds // 86400)
    if abs(seconds) >= 3600:
        return '%.1f h' % (seconds / 3600.0)
    return '%d min' % int(seconds // 60)


def _number(value):
    return ('%.3f' % value).rstrip('0').rstrip('.')
