# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Prometheus textfile output of cert_expiry (read by node_exporter's textfile collector)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import calendar
import datetime
import os

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import files

FILE_MODE = 0o644
METRICS = (
    ('fleetpki_cert_expiry_seconds', 'End of validity of the certificate, as a Unix timestamp.'),
    ('fleetpki_cert_days_remaining', 'Whole days of validity left (negative once expired).'),
    ('fleetpki_cert_broken', '1 when the certificate does not parse, chain, or match its key.'),
    ('fleetpki_crl_next_update_seconds', 'nextUpdate of the CRL, as a Unix timestamp (a CRL-checking service refuses '
     'every client of its CA after it).'),
    ('fleetpki_crl_expired', '1 when the CRL is past its nextUpdate, does not parse or is not signed by its CA.'),
)


def labels_from_name(path):
    """<service>-<host>-cert.pem (the pki role's names) -> service and host; other names: the file name."""
    name = os.path.basename(path)
    for suffix in ('-cert.pem', '.crt', '.pem'):
        if name.endswith(suffix):
            name = name[:-len(suffix)]
            break
    service, sep, host = name.partition('-')
    return {'service': service, 'host': host} if sep and host else {'service': name, 'host': ''}


def escape(value):
    return str(value).replace('\\', '\\\\').replace('\n', '\\n').replace('"', '\\"')


def render(certs, extra_labels=None, crls=None):
    """The textfile: HELP and TYPE once per metric, one series per certificate and per CRL, sorted (stable
    content)."""
    series = dict((name, []) for name in dict(METRICS))
    for entry in crls or []:
        labels = dict(extra_labels or {}, path=entry['path'], issuer=entry['issuer'] or '')
        text = ','.join('%s="%s"' % (key, escape(labels[key])) for key in sorted(labels))
        series['fleetpki_crl_expired'].append('fleetpki_crl_expired{%s} %d'
                                              % (text, entry['status'] in ('expired', 'broken')))
        if entry.get('next_update'):
            end = datetime.datetime.strptime(entry['next_update'], '%Y-%m-%dT%H:%M:%SZ')
            series['fleetpki_crl_next_update_seconds'].append(
                'fleetpki_crl_next_update_seconds{%s} %d' % (text, calendar.timegm(end.timetuple())))
    for entry in certs:
        labels = labels_from_name(entry['path'])
        labels.update(extra_labels or {})
        labels['serial'] = entry.get('serial') or ''
        labels['path'] = entry['path']
        text = ','.join('%s="%s"' % (key, escape(labels[key])) for key in sorted(labels))
        series['fleetpki_cert_broken'].append('fleetpki_cert_broken{%s} %d' % (text, entry['status'] == 'broken'))
        if entry.get('not_after'):
            end = datetime.datetime.strptime(entry['not_after'], '%Y-%m-%dT%H:%M:%SZ')
            series['fleetpki_cert_expiry_seconds'].append(
                'fleetpki_cert_expiry_seconds{%s} %d' % (text, calendar.timegm(end.timetuple())))
            series['fleetpki_cert_days_remaining'].append(
                'fleetpki_cert_days_remaining{%s} %d' % (text, entry['days_remaining']))
    lines = []
    for name, help_text in METRICS:
        lines += ['# HELP %s %s' % (name, help_text), '# TYPE %s gauge' % name] + sorted(series[name])
    return '\n'.join(lines) + '\n'


def write_if_changed(path, content, check_mode=False):
    """Atomic write, only when the content differs; returns whether it changed."""
    data = content.encode('utf-8')
    try:
        if files.read_bytes(path) == data:
            return False
    except (IOError, OSError):
        pass
    if not check_mode:
        files.ensure_dir(os.path.dirname(path) or '.', 0o755)
        files.atomic_write(path, data, FILE_MODE)
    return True
