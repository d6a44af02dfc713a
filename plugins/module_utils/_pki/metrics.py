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
    ('fleetpki_cert_renew_at_seconds', 'When the certificate is due for renewal (pki_leaf renewal policy), as a Unix '
     'timestamp.'),
    ('fleetpki_crl_next_update_seconds', 'nextUpdate of the CRL, as a Unix timestamp (a CRL-checking service refuses '
     'every client of its CA after it).'),
    ('fleetpki_crl_expired', '1 when the CRL is past its nextUpdate, does not parse or is not signed by its CA.'),
)
# Written only when endpoints were inspected, so a textfile of files alone stays as it was.
SERVED_METRICS = (
    ('fleetpki_served_cert_expiry_seconds', 'End of validity of the certificate the endpoint serves, as a Unix '
     'timestamp.'),
    ('fleetpki_served_cert_matches_file', '1 when the endpoint serves the certificate of its cert_path, 0 when not.'),
    ('fleetpki_served_cert_up', '1 when a certificate was obtained from the endpoint, 0 when it was unreachable.'),
    ('fleetpki_served_cert_renew_at_seconds', 'When the certificate the endpoint serves is due for renewal '
     '(pki_leaf renewal policy), as a Unix timestamp.'),
)

RENEW_AT_METRICS = ('fleetpki_cert_renew_at_seconds', 'fleetpki_served_cert_renew_at_seconds')


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


def _timestamp(text):
    return calendar.timegm(datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%SZ').timetuple())


def render_served(endpoints, extra_labels=None):
    """{metric: [series lines]} of the endpoints (cert_expiry's ``endpoints`` results)."""
    series = dict((name, []) for name in dict(SERVED_METRICS))
    for entry in endpoints:
        labels = dict(extra_labels or {})
        labels.update(endpoint=entry['name'], host=entry['host'], port=str(entry['port']),
                      serial=entry.get('serial') or '')
        text = ','.join('%s="%s"' % (key, escape(labels[key])) for key in sorted(labels))
        series['fleetpki_served_cert_up'].append('fleetpki_served_cert_up{%s} %d' % (text, bool(entry['reachable'])))
        if entry.get('matches_file') is not None:
            series['fleetpki_served_cert_matches_file'].append(
                'fleetpki_served_cert_matches_file{%s} %d' % (text, bool(entry['matches_file'])))
        if entry.get('not_after'):
            series['fleetpki_served_cert_expiry_seconds'].append(
                'fleetpki_served_cert_expiry_seconds{%s} %d' % (text, _timestamp(entry['not_after'])))
        if entry.get('renew_at'):
            series['fleetpki_served_cert_renew_at_seconds'].append(
                'fleetpki_served_cert_renew_at_seconds{%s} %d' % (text, _timestamp(entry['renew_at'])))
    return series


def render(certs, extra_labels=None, crls=None, endpoints=None):
    """The textfile: HELP and TYPE once per metric, one series per certificate, CRL and endpoint, sorted (stable
    content). The served metrics are there only when ``endpoints`` is given (an empty list included)."""
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
        if entry.get('renew_at'):
            series['fleetpki_cert_renew_at_seconds'].append(
                'fleetpki_cert_renew_at_seconds{%s} %d' % (text, _timestamp(entry['renew_at'])))
    metrics = METRICS
    if endpoints is not None:
        series.update(render_served(endpoints, extra_labels))
        metrics = METRICS + SERVED_METRICS
    lines = []
    for name, help_text in metrics:
        # Renewal points only when cert_expiry was given the renewal policy: a textfile without stays as it was.
        if name in RENEW_AT_METRICS and not series[name]:
            continue
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
