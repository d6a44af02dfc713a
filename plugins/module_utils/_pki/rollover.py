# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""CA rollover state (backend of the pki_rollover module): rollover.json and the CA directory moves.

A rollover has three phases (playbooks/ca_rollover.yml); each is recorded as ``running`` before it changes anything
and ``done`` after, so an interrupted run resumes where it stopped. Which CA signs and which CAs are trusted
follows from the state:

    no rollover, or the last one finished   sign with ca/       trust ca/
    phase 1 (running or done)               sign with ca/       trust ca/ + ca-next/
    phase 2 (running or done)               sign with ca-next/  trust ca/ + ca-next/
    phase 3 running                         sign with ca-next/  trust ca-next/ (ca/ once ca-next/ was promoted)

Phase 3 ends by retiring ca/ to <retired_dir>/<id> (kept, never deleted) and promoting ca-next/ to ca/.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto, files, store
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError

ACTIONS = ('read', 'plan', 'start', 'done')
PHASES = (1, 2, 3)
STATE_MODE = 0o644
ID_FORMAT = '%Y%m%dT%H%MZ'


class RolloverManager:
    """``plan()`` reads and decides; ``apply()`` writes (never in check mode)."""

    def __init__(self, state_file, ca_dir, next_dir, retired_dir, action='read', phase=None, requested_phase=None,
                 new=False, ca_common_name='Internal Root CA', now=None):
        self.state_file = state_file
        self.ca_dir = ca_dir
        self.next_dir = next_dir
        self.retired_dir = retired_dir
        self.action = action
        self.phase = phase
        self.requested_phase = requested_phase
        self.new = new
        self.ca_common_name = ca_common_name
        self.now = now or crypto.utcnow()
        self.state = {}
        self.new_state = None
        self.promote = None
        self.rollover_plan = None

    # -- reading ---------------------------------------------------------------------------------------------------

    def validate(self):
        if self.action not in ACTIONS:
            raise PkiError('action must be one of %s, not %r' % (', '.join(ACTIONS), self.action))
        if self.action in ('start', 'done') and self.phase not in PHASES:
            raise PkiError('action %s needs phase 1, 2 or 3, not %r' % (self.action, self.phase))

    def read_state(self):
        if not os.path.exists(self.state_file):
            return {}
        try:
            data = json.loads(files.read_bytes(self.state_file).decode('utf-8'))
        except ValueError:
            raise PkiError('%s is not valid JSON; restore it from a backup (it records the CA rollover in progress)'
                           % self.state_file)
        if not isinstance(data, dict):
            raise PkiError('%s is not a rollover record (not a JSON object); restore it from a backup'
                           % self.state_file)
        return data

    @staticmethod
    def _phase_of(state):
        try:
            return int(state.get('phase') or 0)
        except (TypeError, ValueError):
            return 0

    @staticmethod
    def _running(state):
        return state.get('status', 'done') == 'running'

    def _finished(self, state):
        return not state or (self._phase_of(state) == 3 and state.get('status') == 'done')

    def _has_ca(self, directory):
        return os.path.isfile(store.CaStore(directory).cert_path)

    def view(self, state):
        """(signing CA dir, trusted CA dirs) for ``state``."""
        phase, running = self._phase_of(state), self._running(state)
        next_dir = self.next_dir if self._has_ca(self.next_dir) else self.ca_dir
        sign_next = phase == 2 or (phase == 3 and running)
        if phase == 3 and running:
            trusted = [next_dir]
        elif phase in (1, 2):
            trusted = [self.ca_dir] if next_dir == self.ca_dir else [self.ca_dir, next_dir]
        else:
            trusted = [self.ca_dir]
        return (next_dir if sign_next else self.ca_dir), trusted

    def _check_ca_present(self):
        # Between the two renames that promote ca-next/ to ca/ (phase 3), ca/ is absent: never let a run make a new
        # CA there.
        if self.state and not self._has_ca(self.ca_dir):
            raise PkiError('%s is missing while a CA rollover is recorded in %s: an interrupted phase 3 promotion. '
                           'Move %s to %s (mv), then run playbooks/ca_rollover.yml -e phase=3 again.'
                           % (store.CaStore(self.ca_dir).cert_path, self.state_file, self.next_dir, self.ca_dir))

    # -- planning --------------------------------------------------------------------------------------------------

    def plan(self):
        self.validate()
        self.state = self.read_state()
        self.new_state, self.promote = None, None
        if self.action == 'done' and self.phase == 3:
            self._plan_promotion()
        else:
            self._check_ca_present()
        if self.action == 'plan':
            self.rollover_plan = self._plan_phases()
        elif self.action == 'start':
            self._plan_start()
        elif self.action == 'done':
            self._plan_done()
        return self.changed

    def _plan_phases(self):
        state = self.state
        finished = self._finished(state)
        starting = finished and (not state or bool(self.new))
        done = 0 if finished else self._phase_of(state) - (1 if self._running(state) else 0)
        requested = self.requested_phase
        if requested is not None:
            text = str(requested).strip()
            allowed = text in ('1', '2', '3') and (
                (finished and not starting) or (int(text) in (done, done + 1) and int(text) >= 1))
            if not allowed:
                raise PkiError('phase=%s cannot run now: %s. Run -e phase=%d next, or leave phase out to run every '
                               'phase still to do. Nothing was changed.'
                               % (requested, 'no rollover is in progress, so it starts with phase 1' if starting
                                  else 'the last phase done is %d (%s)' % (done, self.state_file), min(done + 1, 3)))
            requested = int(text) if text in ('1', '2', '3') else None
        if finished and not starting:
            phases = []
        elif requested is not None:
            phases = [requested]
        else:
            phases = [phase for phase in PHASES if phase > done]
        return {'starting': starting, 'finished': finished and not starting, 'phase_done': done, 'phases': phases}

    def _stamp(self):
        return crypto.iso8601(self.now)

    def _plan_start(self):
        state, phase = self.state, self.phase
        if self._phase_of(state) == phase and state.get('status') == 'running':
            return
        starting = self._finished(state) and phase == 1
        base = {} if starting else dict(state)
        rollover_id = base.get('id') or self.now.strftime(ID_FORMAT)
        old_common_name = state.get('ca_common_name') or self.ca_common_name
        new_state = dict(base)
        new_state.update({
            'id': rollover_id,
            'mode': 'new_key',
            'phase': phase,
            'status': 'running',
            'ca_common_name': base.get('ca_common_name') or old_common_name,
            'next_ca_common_name': base.get('next_ca_common_name') or '%s %s' % (self.ca_common_name, rollover_id),
            'started_at': base.get('started_at') or self._stamp(),
            'updated_at': self._stamp(),
            'history': list(base.get('history') or []) + [{'phase': phase, 'status': 'running', 'at': self._stamp()}],
        })
        self.new_state = new_state

    def _plan_done(self):
        state, phase = self.state, self.phase
        if not state:
            raise PkiError('no CA rollover is recorded in %s: phase %d cannot be done before it was started (run '
                           'playbooks/ca_rollover.yml)' % (self.state_file, phase))
        if self._phase_of(state) == phase and state.get('status') == 'done':
            return
        if self._phase_of(state) != phase:
            raise PkiError('%s records phase %s %s, not phase %d: run playbooks/ca_rollover.yml without -e phase to '
                           'resume where it stopped' % (self.state_file, state.get('phase'), state.get('status'), phase))
        new_state = dict(state)
        new_state.update({
            'phase': phase,
            'status': 'done',
            'ca_common_name': state.get('next_ca_common_name') if phase == 3 else state.get('ca_common_name'),
            'updated_at': self._stamp(),
            'history': list(state.get('history') or []) + [{'phase': phase, 'status': 'done', 'at': self._stamp()}],
        })
        self.new_state = new_state

    def _plan_promotion(self):
        """Phase 3 done: ca/ to <retired_dir>/<id>, ca-next/ to ca/; resumes a promotion killed between the two."""
        if not self._has_ca(self.next_dir):
            self._check_ca_present()
            return
        rollover_id = self.state.get('id')
        if not rollover_id:
            raise PkiError('%s has no rollover id; restore it from a backup before phase 3 retires the old CA'
                           % self.state_file)
        retired = os.path.join(self.retired_dir, rollover_id)
        if os.path.lexists(self.ca_dir):
            if os.path.lexists(retired):
                raise PkiError('%s already exists, so %s cannot be retired there; move it aside (it may be the CA of '
                               'another rollover), then run playbooks/ca_rollover.yml -e phase=3 again'
                               % (retired, self.ca_dir))
            self.promote = {'retire': (self.ca_dir, retired), 'promote': (self.next_dir, self.ca_dir)}
        else:
            self.promote = {'retire': None, 'promote': (self.next_dir, self.ca_dir)}
        for directory in (self.retired_dir, os.path.dirname(os.path.abspath(self.ca_dir))):
            reason = files.unwritable_reason(directory)
            if reason:
                raise PkiError('cannot retire the old CA: %s; make it writable' % reason)

    @property
    def changed(self):
        return self.new_state is not None or self.promote is not None

    # -- writing ---------------------------------------------------------------------------------------------------

    def apply(self):
        """Write under the lock of the state file's directory (and of the CA directories being moved)."""
        if not self.changed:
            return self.result()
        directory = os.path.dirname(os.path.abspath(self.state_file))
        files.ensure_dir(directory, store.DIR_MODE)
        with files.DirectoryLock(directory):
            self.plan()  # the state as it is now that the lock is ours
            if self.promote:
                self._promote()
            if self.new_state is not None:
                payload = json.dumps(self.new_state, indent=4, sort_keys=True) + '\n'
                files.atomic_write(self.state_file, payload.encode('utf-8'), STATE_MODE)
        return self.result()

    def _promote(self):
        retire, promote = self.promote['retire'], self.promote['promote']
        if retire:
            files.ensure_dir(self.retired_dir, store.DIR_MODE)
            with store.CaStore(retire[0]).lock():  # not while a pki_leaf / pki_crl run writes into it
                os.rename(retire[0], retire[1])
        with store.CaStore(promote[0]).lock():
            os.rename(promote[0], promote[1])
        files.fsync_dir(os.path.dirname(os.path.abspath(self.ca_dir)))

    def result(self):
        state = self.new_state if self.new_state is not None else self.state
        out = {'changed': self.changed, 'state': state, 'state_file': self.state_file}
        if self.promote:
            out['retired_ca_dir'] = self.promote['retire'][1] if self.promote['retire'] else None
            out['promoted'] = True
        else:
            out['promoted'] = False
        if self.rollover_plan is not None:
            out['plan'] = self.rollover_plan
        out['signing_ca_dir'], out['trusted_ca_dirs'] = self.view(state)
        # Two tiers: the trusted CAs that are roots of their own (self-signed) go into the bundle beside the root; an
        # issuing CA does not (the root vouches for it). A fleet moving under a root trusts its old CA and the root
        # until phase 3 (docs/hierarchy.md).
        out['anchor_ca_dirs'] = [directory for directory in out['trusted_ca_dirs'] if self._self_signed(directory)]
        out['ca_self_signed'] = self._self_signed(self.ca_dir)
        # ca-next/ holds an issuing CA: this rollover moves the fleet under a root, which must stay set until the end.
        out['next_issued'] = self._has_ca(self.next_dir) and not self._self_signed(self.next_dir)
        return out

    def _self_signed(self, directory):
        """Whether the CA in ``directory`` signed itself; False for one not there yet (with a root, pki_ca makes it
        issued by the root; without one, anchor_ca_dirs is not used)."""
        path = store.CaStore(directory).cert_path
        if not os.path.isfile(path):
            return False
        return crypto.is_self_signed(crypto.load_cert(files.read_bytes(path), path))
