# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pki_rollover: the CA rollover state (rollover.json) and the CA directory moves, with real CAs in tmp_path."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

import pytest

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.rollover import RolloverManager
from ansible_collections.fleetpki.mtls.plugins.modules import pki_rollover

STATE_KEYS = set(['id', 'mode', 'phase', 'status', 'ca_common_name', 'next_ca_common_name', 'started_at',
                  'updated_at', 'history'])


class Dirs:
    def __init__(self, root):
        self.root = str(root)
        self.state_file = os.path.join(self.root, 'rollover.json')
        self.ca = os.path.join(self.root, 'ca')
        self.next = os.path.join(self.root, 'ca-next')
        self.retired = os.path.join(self.root, 'retired-ca')

    def args(self, **kwargs):
        value = {'state_file': self.state_file, 'ca_dir': self.ca, 'next_dir': self.next, 'retired_dir': self.retired}
        value.update(kwargs)
        return value

    def run(self, check_mode=False, **kwargs):
        manager = RolloverManager(**self.args(**kwargs))
        manager.plan()
        return manager.result() if check_mode else manager.apply()

    def state(self):
        with open(self.state_file) as handle:
            return json.load(handle)


@pytest.fixture
def dirs(tmp_path, pki):
    value = Dirs(tmp_path / 'pki')
    pki.make_ca(value.ca, common_name='Fleet CA')
    return value


def cert_of(directory):
    with open(os.path.join(directory, 'ca-cert.pem'), 'rb') as handle:
        return handle.read()


def start_through_phase_3(dirs, pki):
    """Phases 1 and 2 done (with a next CA made in phase 1) and phase 3 started, its promotion not yet run."""
    for phase in (1, 2, 3):
        dirs.run(action='start', phase=phase)
        if phase == 1:
            pki.make_ca(dirs.next)
        if phase < 3:
            dirs.run(action='done', phase=phase)


def test_no_rollover_signs_and_trusts_the_current_ca(dirs):
    result = dirs.run()
    assert result['changed'] is False and result['state'] == {}
    assert (result['signing_ca_dir'], result['trusted_ca_dirs']) == (dirs.ca, [dirs.ca])
    planned = dirs.run(action='plan')
    assert planned['plan'] == {'starting': True, 'finished': False, 'phase_done': 0, 'phases': [1, 2, 3]}
    assert not os.path.exists(dirs.state_file)


def test_three_phases_each_idempotent_then_finished(dirs, pki):
    old_ca = cert_of(dirs.ca)
    started = dirs.run(action='start', phase=1, ca_common_name='Fleet CA')
    state = dirs.state()
    assert started['changed'] is True and set(state) == STATE_KEYS
    assert (state['phase'], state['status'], state['mode']) == (1, 'running', 'new_key')
    assert state['ca_common_name'] == 'Fleet CA' and state['next_ca_common_name'] == 'Fleet CA ' + state['id']
    assert oct(pki.mode_of(dirs.state_file)) == oct(0o644)
    assert dirs.run(action='start', phase=1, ca_common_name='Fleet CA')['changed'] is False
    assert dirs.state() == state

    pki.make_ca(dirs.next, common_name=state['next_ca_common_name'])
    view = dirs.run()
    assert (view['signing_ca_dir'], view['trusted_ca_dirs']) == (dirs.ca, [dirs.ca, dirs.next])
    assert dirs.run(action='done', phase=1)['changed'] is True
    assert dirs.run(action='done', phase=1)['changed'] is False
    assert dirs.run(action='plan')['plan'] == {'starting': False, 'finished': False, 'phase_done': 1, 'phases': [2, 3]}

    phase2 = dirs.run(action='start', phase=2)
    assert (phase2['signing_ca_dir'], phase2['trusted_ca_dirs']) == (dirs.next, [dirs.ca, dirs.next])
    dirs.run(action='done', phase=2)
    phase3 = dirs.run(action='start', phase=3)
    assert (phase3['signing_ca_dir'], phase3['trusted_ca_dirs']) == (dirs.next, [dirs.next])
    new_ca = cert_of(dirs.next)

    done = dirs.run(action='done', phase=3)
    rollover_id = state['id']
    assert done['changed'] is True and done['promoted'] is True
    assert done['retired_ca_dir'] == os.path.join(dirs.retired, rollover_id)
    assert cert_of(dirs.ca) == new_ca and cert_of(done['retired_ca_dir']) == old_ca
    assert not os.path.exists(dirs.next)
    final = dirs.state()
    assert (final['phase'], final['status'], final['ca_common_name']) == (3, 'done', state['next_ca_common_name'])
    assert [(item['phase'], item['status']) for item in final['history']] == [
        (1, 'running'), (1, 'done'), (2, 'running'), (2, 'done'), (3, 'running'), (3, 'done')]
    assert (done['signing_ca_dir'], done['trusted_ca_dirs']) == (dirs.ca, [dirs.ca])

    again = dirs.run(action='done', phase=3)
    assert again['changed'] is False and cert_of(dirs.ca) == new_ca
    assert dirs.run(action='plan')['plan'] == {'starting': False, 'finished': True, 'phase_done': 0, 'phases': []}
    assert dirs.run(action='plan', new=True)['plan']['phases'] == [1, 2, 3]
    # The next rollover starts afresh: a new id, the promoted CA's name as the current one.
    nxt = dirs.run(action='start', phase=1, ca_common_name='Fleet CA')['state']
    assert nxt['ca_common_name'] == state['next_ca_common_name']
    assert [item['status'] for item in nxt['history']] == ['running']


def test_check_mode_writes_and_moves_nothing(dirs, pki, tmp_path):
    before = pki.snapshot(tmp_path)
    result = dirs.run(check_mode=True, action='start', phase=1)
    assert result['changed'] is True and result['state']['status'] == 'running'
    assert pki.snapshot(tmp_path) == before
    start_through_phase_3(dirs, pki)
    before = pki.snapshot(tmp_path)
    result = dirs.run(check_mode=True, action='done', phase=3)
    assert result['changed'] is True and result['promoted'] is True and result['state']['status'] == 'done'
    assert pki.snapshot(tmp_path) == before


def test_an_interrupted_promotion_stops_every_run_and_is_finished_by_phase_3(dirs, pki):
    start_through_phase_3(dirs, pki)
    new_ca = cert_of(dirs.next)
    # Killed between the two moves: ca/ retired, ca-next/ not yet promoted.
    os.makedirs(dirs.retired)
    os.rename(dirs.ca, os.path.join(dirs.retired, dirs.state()['id']))
    with pytest.raises(PkiError) as caught:
        dirs.run()
    assert 'interrupted phase 3 promotion' in str(caught.value) and dirs.next in str(caught.value)
    finished = dirs.run(action='done', phase=3)
    assert finished['promoted'] is True and cert_of(dirs.ca) == new_ca
    assert dirs.state()['status'] == 'done'


@pytest.mark.parametrize('requested', ['2', '3', '4', '0'])
def test_a_phase_out_of_order_is_refused(dirs, pki, tmp_path, requested):
    message = pki.expect_error(lambda: dirs.run(action='plan', requested_phase=requested), tmp_path,
                               'phase=%s cannot run now' % requested,
                               'no rollover is in progress, so it starts with phase 1', 'Run -e phase=1 next',
                               'Nothing was changed.')
    assert message


def test_a_phase_of_a_rollover_in_progress(dirs, pki, tmp_path):
    dirs.run(action='start', phase=1)
    pki.make_ca(dirs.next)
    dirs.run(action='done', phase=1)
    assert dirs.run(action='plan', requested_phase='1')['plan']['phases'] == [1]
    assert dirs.run(action='plan', requested_phase='2')['plan']['phases'] == [2]
    pki.expect_error(lambda: dirs.run(action='plan', requested_phase='3'), tmp_path, 'the last phase done is 1',
                     'Run -e phase=2 next')


def test_done_for_a_phase_not_running_is_refused(dirs, pki, tmp_path):
    pki.expect_error(lambda: dirs.run(action='done', phase=1), tmp_path, 'no CA rollover is recorded')
    dirs.run(action='start', phase=1)
    pki.expect_error(lambda: dirs.run(action='done', phase=2), tmp_path, 'records phase 1 running, not phase 2')


def test_a_corrupt_state_file_is_named(dirs, pki, tmp_path):
    pki.write(dirs.state_file, b'{"phase": 1,')
    pki.expect_error(dirs.run, tmp_path, dirs.state_file, 'not valid JSON')


def test_module(dirs, run_module, pki, tmp_path):
    read = run_module(pki_rollover, dirs.args())
    assert read.rc == 0 and read.result['changed'] is False and read.result['trusted_ca_dirs'] == [dirs.ca]
    before = pki.snapshot(tmp_path)
    check = run_module(pki_rollover, dirs.args(action='start', phase=1), check_mode=True)
    assert check.rc == 0 and check.result['changed'] is True and pki.snapshot(tmp_path) == before
    start = run_module(pki_rollover, dirs.args(action='start', phase=1))
    assert start.rc == 0 and start.result['changed'] is True and dirs.state()['phase'] == 1
    refused = run_module(pki_rollover, dirs.args(action='plan', requested_phase='3'))
    assert refused.rc == 1 and 'cannot run now' in refused.result['msg']
    missing = run_module(pki_rollover, dirs.args(action='done'))
    assert missing.rc == 1 and 'phase' in missing.result['msg']


def test_moving_under_a_root_the_old_ca_is_an_anchor_until_phase_3(dirs, pki):
    """The bundle of two tiers holds the anchors and the root: the old (self-signed) CA while the fleet moves under a
    root, never the issuing CA that the root vouches for."""
    root = os.path.join(dirs.root, 'root')
    pki.make_ca(root, common_name='Fleet Root CA')
    assert (dirs.run()['anchor_ca_dirs'], dirs.run()['ca_self_signed'], dirs.run()['next_issued']) == \
        ([dirs.ca], True, False)
    dirs.run(action='start', phase=1)
    pki.make_ca(dirs.next, common_name='Fleet Issuing CA', issuer_dir=root,
                name_constraints_permitted_dns=['fleet.example'])
    phase_1 = dirs.run(action='done', phase=1)
    assert phase_1['trusted_ca_dirs'] == [dirs.ca, dirs.next] and phase_1['anchor_ca_dirs'] == [dirs.ca]
    assert phase_1['next_issued'] is True
    for phase in (2, 3):
        dirs.run(action='start', phase=phase)
        if phase == 2:
            dirs.run(action='done', phase=2)
    assert dirs.run()['anchor_ca_dirs'] == [], 'phase 3 running: the issuing CA alone, vouched for by the root'
    finished = dirs.run(action='done', phase=3)
    assert finished['anchor_ca_dirs'] == [] and finished['ca_self_signed'] is False
