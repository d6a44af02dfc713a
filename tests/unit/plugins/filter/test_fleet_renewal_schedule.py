# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""fleet_renewal_schedule: the renewal job's cadence from the shortest validity, checked against the engine's own
renewal policy (the room it uses is the one pki_leaf renews at)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import subprocess

import pytest

from ansible.errors import AnsibleFilterError

from ansible_collections.fleetpki.mtls.plugins.filter.fleet_renewal_schedule import fleet_renewal_schedule
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.renewal import RenewalPolicy


@pytest.mark.parametrize('hours, fraction, days, calendar, interval', [
    (24 * 365, '', '', 'daily', 1440),
    (24, '', '', '*-*-* 00/2:00:00', 120),
    (1, '', '', '*-*-* *:00/5:00', 5),
    (2, '', '', '*-*-* *:00/10:00', 10),
    (24 * 365, '', 30, 'daily', 1440),
    (24 * 90, None, 1, '*-*-* 00/8:00:00', 480),
    (48, 0.5, '', '*-*-* 00/8:00:00', 480),
    # Minutes-long certificates (a compressed test fleet): runs every 1 or 2 minutes.
    (0.5, '', '', '*-*-* *:00/2:00', 2),
    (0.1, 0.5, '', '*-*-* *:00/1:00', 1),
    # 9 minutes with the default share: 2.9999... minutes of room in floating point, which is 3.
    (0.15, '', '', '*-*-* *:00/1:00', 1),
])
def test_the_interval_fits_three_runs_in_the_renewal_room(hours, fraction, days, calendar, interval):
    schedule = fleet_renewal_schedule(hours, fraction, days, '')
    assert schedule['on_calendar'] == calendar and schedule['interval_minutes'] == interval
    # The engine's own margin for that lifetime (splay 0: the splay only adds room).
    policy = RenewalPolicy(int(days) if days not in ('', None) else None,
                           float(fraction) if fraction not in ('', None) else None, 0)
    room = policy.base(datetime.timedelta(hours=hours)).total_seconds() / 60
    assert 3 * interval <= room + 1 and schedule['room_hours'] == round(room / 60, 2)


def test_every_calendar_expression_is_one_systemd_accepts():
    try:
        subprocess.run(['systemd-analyze', '--version'], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip('no systemd-analyze here')
    for hours in (0.5, 1, 2, 24, 24 * 7, 24 * 365):
        expression = fleet_renewal_schedule(hours)['on_calendar']
        subprocess.run(['systemd-analyze', 'calendar', expression], check=True, capture_output=True)
    subprocess.run(['systemd-analyze', 'calendar', fleet_renewal_schedule(24 * 365, '', '', '23:30-01:30')['on_calendar']],
                   check=True, capture_output=True)


def test_a_window_runs_once_a_day_from_its_start():
    schedule = fleet_renewal_schedule(24 * 365, '', '', '02:00-04:00')
    assert schedule['on_calendar'] == '*-*-* 02:00:00' and schedule['randomized_delay_sec'] == 3600
    assert (schedule['cron_hour'], schedule['cron_minute']) == ('2', '0')
    crossing = fleet_renewal_schedule(24 * 365, '', '', '23:30-01:30')
    assert crossing['on_calendar'] == '*-*-* 23:30:00' and crossing['randomized_delay_sec'] == 3600


@pytest.mark.parametrize('args, needles', [
    ((24, '', '', '02:00-04:00'), ['window 02:00-04:00', 'once a day', '24 hours', '8 hours', '72 hours']),
    ((24 * 365, '', '', '2am'), ["'2am'", 'HH:MM-HH:MM']),
    ((24 * 365, '', '', '02:00-02:05'), ['5 minutes', 'at least 10']),
    ((0.1, '', '', ''), ['0.1 hours', '2 minutes', 'every 1 minutes', 'longer validity']),
    ((0, '', '', ''), ['above 0 hours']),
    ((24, 'a third', '', ''), ['renew_fraction', "'a third'"]),
])
def test_refusals_name_the_input_and_the_fix(args, needles):
    with pytest.raises(AnsibleFilterError) as caught:
        fleet_renewal_schedule(*args)
    for needle in needles:
        assert needle in str(caught.value)
