# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Checks of requested names, subject fields and validity, made for a whole request before anything is written.

Each check raises a PkiError whose message names where the input is (``where``), the input itself, and the fix.
Only errors is imported: every other engine module may use this one.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError

# Upper bounds of RFC 5280 (Appendix A, ub-*): a longer value makes a certificate that clients may refuse.
SUBJECT_MAX_LENGTH = {
    'common_name': 64,
    'organization': 64,
    'organizational_unit': 64,
    'locality': 128,
    'state_or_province': 128,
}
# valid_days bounds (inclusive). A leaf lives at most 10 years (rotation is automatic; short is better); a root CA
# at most 30 years.
LEAF_VALID_DAYS = (1, 3650)
# Hours may be fractions down to 6 minutes: a compressed test fleet (step-ca's floor is 5 minutes).
LEAF_VALID_HOURS = (0.1, 3650 * 24)
CA_VALID_DAYS = (1, 10950)

# The PKCS#8 wrapping of a CA key (cryptography's BestAvailableEncryption) derives its key with PBKDF2, 2048 rounds:
# cheap to guess at, so only a long passphrase keeps a stolen ca-key.pem safe.
MIN_PASSPHRASE_LENGTH = 16

_LABEL_RE = re.compile(r'^[A-Za-z0-9-]+$')
_CONTROL_RE = re.compile(u'[\u0000-\u001f\u007f-\u009f]')


def dns_name_problem(value):
    """None when ``value`` can be a DNS name in a certificate (a leftmost ``*`` wildcard allowed), else why not."""
    if not value:
        return 'it is empty'
    if crypto.is_ip(value):
        return 'it is an IP address; list it under ip'
    try:
        value.encode('ascii')
    except UnicodeError:
        return 'it is not ASCII; write an internationalised name in its xn-- (punycode) form'
    if value.endswith('.'):
        return 'it ends with a trailing dot; write it without the dot'
    if len(value) > 253:
        return 'it is %d characters long; a DNS name has at most 253' % len(value)
    labels = value.split('.')
    if '' in labels:
        return 'it has an empty label (two dots in a row, or a leading dot)'
    if labels[0] == '*':
        if len(labels) < 3:
            return ('a wildcard must stand for one label under a name of at least two labels (*.fleet.example.com); '
                    '%s would match every name under a top-level domain' % value)
        labels = labels[1:]
    for label in labels:
        if '*' in label:
            return 'a wildcard is allowed only as the whole leftmost label (*.fleet.example.com)'
        if not _LABEL_RE.match(label):
            return 'label %r has characters other than letters, digits and "-"' % label
        if len(label) > 63:
            return 'label %r is %d characters long; a label has at most 63' % (label, len(label))
        if label.startswith('-') or label.endswith('-'):
            return 'label %r starts or ends with "-"' % label
    if labels[-1].isdigit():
        return 'its last label %r is all-numeric, which no top-level domain is' % labels[-1]
    return None


def check_dns_name(where, option, value):
    problem = dns_name_problem(value)
    if problem:
        raise PkiError('%s: %s %r is not a valid DNS name: %s' % (where, option, value, problem))


def check_subject_value(where, field, value):
    """A subject field: no control characters, no surrounding spaces, at most its RFC 5280 length."""
    if _CONTROL_RE.search(value):
        raise PkiError('%s: %s %r contains a control character (newline, tab, NUL...); remove it'
                       % (where, field, value))
    if value != value.strip():
        raise PkiError('%s: %s %r starts or ends with a space; remove it' % (where, field, value))
    limit = SUBJECT_MAX_LENGTH.get(field)
    if limit and len(value) > limit:
        raise PkiError('%s: %s %r is %d characters long; X.509 allows at most %d, shorten it'
                       % (where, field, value, len(value), limit))


def check_valid_days(where, value, bounds):
    low, high = bounds
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise PkiError('%s: valid_days must be a whole number of days from %d to %d, not %r'
                       % (where, low, high, value))


def valid_hours_value(where, value, bounds):
    """The number of hours of ``value`` (a number, or a plain decimal string such as "24" or "0.5"); refuses a
    boolean (yes is not 1 hour), "1e3", "1_0", NaN and anything outside ``bounds``."""
    low, high = bounds
    number = value
    if isinstance(value, str) and re.match(r'^[0-9]*[.]?[0-9]+$', value.strip()):
        number = float(value)
    if not isinstance(number, (int, float)) or isinstance(number, bool) or not low <= number <= high:
        raise PkiError('%s: valid_hours must be a number of hours from %g (%d minutes) to %g, not %r'
                       % (where, low, int(round(low * 60)), high, value))
    return number


def passphrase_too_short(passphrase):
    return bool(passphrase) and len(passphrase) < MIN_PASSPHRASE_LENGTH


def check_new_key_passphrase(option, passphrase):
    """A key about to be encrypted: refuse a passphrase shorter than MIN_PASSPHRASE_LENGTH (never echoing it)."""
    if passphrase_too_short(passphrase):
        raise PkiError('%s is %d characters long; a new CA key needs a passphrase of at least %d characters (its '
                       'PKCS#8 encryption derives the key with PBKDF2 at 2048 rounds, cheap to guess): generate a '
                       'longer one, for example with "openssl rand -base64 24", and keep it in ansible-vault'
                       % (option, len(passphrase), MIN_PASSPHRASE_LENGTH))
