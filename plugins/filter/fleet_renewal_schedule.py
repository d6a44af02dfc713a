# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: fleet_renewal_schedule
short_description: How often the renewal job must run for the fleet's shortest certificates, and when
version_added: 0.3.0
description:
  - From the shortest validity in use and the renewal policy of M(fleetpki.mtls.pki_leaf), the time a certificate
    has left once it is due (the renewal room, before any splay) is worked out; the job must run at least three
    times within it (a failed run is retried twice before a certificate expires), and at most once a day.
  - "Without a window: the largest step of 1, 2, 5, 10, 15, 20 or 30 minutes, or 1, 2, 3, 4, 6, 8 or 12 hours, or a
    day that fits, as a systemd C(OnCalendar) expression and cron fields. 24-hour certificates (8 hours of room with
    the default 1/3) run every 2 hours; 1-hour ones every 5 minutes; 365-day ones daily; 6-minute ones (C(0.1) hours,
    a compressed test fleet, with O(renew_fraction=0.5)) every minute."
  - "With a maintenance window (C(HH:MM-HH:MM), may cross midnight): once a day, starting at a random moment in the
    first half of the window. Refused, with the numbers, when the renewal room is less than three days: a
    certificate due just after a window would expire before the third one."
  - Fails, naming the input, when the room is under 3 minutes (no timer can renew in time), or an input is not
    a number or a window. A run must also finish within the step it is given (a timer does not start the job again
    while it runs), so the fleet's own run time sets the real floor.
author:
  - fleetpki contributors (@fleetpki)
positional: renew_fraction, renew_days, window
options:
  _input:
    description: The shortest validity in use, in hours (C(pki_leaf_valid_hours), else C(pki_leaf_valid_days) x 24);
      fractions allowed.
    type: float
    required: true
  renew_fraction:
    description: M(fleetpki.mtls.pki_leaf)'s O(fleetpki.mtls.pki_leaf#module:renew_fraction); empty for its default.
    type: raw
  renew_days:
    description: M(fleetpki.mtls.pki_leaf)'s O(fleetpki.mtls.pki_leaf#module:renew_days); empty when not set.
    type: raw
  window:
    description: The maintenance window, C(HH:MM-HH:MM) in the control node's local time; empty for none.
    type: str
    default: ''
'''

EXAMPLES = r'''
- name: Work out the timer
  ansible.builtin.set_fact:
    schedule: "{{ 24 | fleetpki.mtls.fleet_renewal_schedule('', '', '') }}"
  # schedule.on_calendar == '*-*-* 00/2:00:00', schedule.interval_minutes == 120
'''

RETURN = r'''
_value:
  description: The schedule.
  type: dict
  contains:
    interval_minutes:
      description: Minutes between two runs (1440 for daily).
      type: int
    room_hours:
      description: Hours a certificate has left once it is due, before the splay (which only adds to it).
      type: float
    on_calendar:
      description: systemd C(OnCalendar) expression.
      type: str
    randomized_delay_sec:
      description: systemd C(RandomizedDelaySec), in seconds.
      type: int
    accuracy_sec:
      description: systemd C(AccuracySec), in seconds (a tenth of the step, at most 60; absent for daily and window
        schedules, which keep systemd's default of a minute).
      type: int
    cron_minute:
      description: cron minute field.
      type: str
    cron_hour:
      description: cron hour field.
      type: str
'''

import re

from ansible.errors import AnsibleFilterError

# Steps that divide an hour or a day evenly, so the calendar expressions run at equal intervals.
MINUTE_STEPS = (1, 2, 5, 10, 15, 20, 30)
HOUR_STEPS = (1, 2, 3, 4, 6, 8, 12)
RUNS_WITHIN_ROOM = 3
DEFAULT_FRACTION = 1.0 / 3
_WINDOW_RE = re.compile(r'^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])$')


def _number(value, option, kind):
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise AnsibleFilterError('fleet_renewal_schedule: %s %r is not a number' % (option, value))


def fleet_renewal_schedule(validity_hours, renew_fraction=None, renew_days=None, window=''):
    hours = _number(validity_hours, 'the shortest validity (hours)', float)
    if hours is None or hours <= 0:
        raise AnsibleFilterError('fleet_renewal_schedule: the shortest validity in use must be above 0 hours, not %r'
                                 % (validity_hours,))
    fraction = _number(renew_fraction, 'renew_fraction', float)
    days = _number(renew_days, 'renew_days', int)
    if fraction is None and days is None:
        fraction = DEFAULT_FRACTION
    room = max(days * 24.0 if days is not None else 0.0, hours * fraction if fraction is not None else 0.0)
    room_minutes = room * 60
    # Rounded: 0.15 h x 1/3 is 2.9999... minutes of room, which is 3.
    interval = min(round(room_minutes / RUNS_WITHIN_ROOM, 6), 1440)
    if interval < MINUTE_STEPS[0]:
        raise AnsibleFilterError(
            'fleet_renewal_schedule: certificates of %g hours are due with %g minutes left (renew_fraction %s, '
            'renew_days %s): a timer every %d minutes cannot renew them %d times before they expire. Use a longer '
            'validity or a larger renew_fraction' % (hours, room_minutes, fraction, days, MINUTE_STEPS[0],
                                                     RUNS_WITHIN_ROOM))
    schedule = {'room_hours': round(room, 2)}
    window = (window or '').strip()
    if window:
        match = _WINDOW_RE.match(window)
        if not match:
            raise AnsibleFilterError('fleet_renewal_schedule: window %r is not HH:MM-HH:MM (24-hour clock, e.g. '
                                     '02:00-04:30)' % window)
        start = int(match.group(1)) * 60 + int(match.group(2))
        length = (int(match.group(3)) * 60 + int(match.group(4)) - start) % 1440
        if length < 10:
            raise AnsibleFilterError('fleet_renewal_schedule: window %s is %d minutes long; give it at least 10'
                                     % (window, length))
        if interval < 1440:
            raise AnsibleFilterError(
                'fleet_renewal_schedule: the window %s lets the renewal run once a day, but certificates of %g hours '
                'are due with %g hours left: one due just after a window would expire before the third. Widen the '
                'room to %d hours or more (a longer validity, or a larger renew_fraction or renew_days), or set no '
                'window' % (window, hours, round(room, 2), RUNS_WITHIN_ROOM * 24))
        schedule.update(interval_minutes=1440, on_calendar='*-*-* %02d:%02d:00' % (start // 60, start % 60),
                        randomized_delay_sec=length * 30, cron_minute=str(start % 60), cron_hour=str(start // 60))
        return schedule
    if interval >= 1440:
        schedule.update(interval_minutes=1440, on_calendar='daily', randomized_delay_sec=3600, cron_minute='17',
                        cron_hour='3')
        return schedule
    steps = ([step for step in MINUTE_STEPS if step <= interval]
             + [60 * step for step in HOUR_STEPS if 60 * step <= interval])
    step = steps[-1]
    if step < 60:
        schedule.update(on_calendar='*-*-* *:00/%d:00' % step, cron_minute='*/%d' % step, cron_hour='*')
    else:
        schedule.update(on_calendar='*-*-* 00/%d:00:00' % (step // 60), cron_minute='17', cron_hour='*/%d' % (step // 60))
    # Many control nodes do not start at once; a fifth of the step keeps the runs well apart.
    # systemd fires a timer up to AccuracySec (1 minute by default) late: a tenth of the step keeps runs a step apart.
    schedule.update(interval_minutes=step, randomized_delay_sec=step * 12, accuracy_sec=min(step * 6, 60))
    return schedule


class FilterModule:
    def filters(self):
        return {'fleet_renewal_schedule': fleet_renewal_schedule}
