# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmarks only: per play, per host, how many tasks reached the host; JSON to $FLEETPKI_TASK_COUNT_FILE.

Enabled by benchmarks/bench_scale.py (ANSIBLE_CALLBACK_PLUGINS=benchmarks/callback_plugins, task_count added to
ANSIBLE_CALLBACKS_ENABLED); the stdout callback stays the default one. A task reached a host when a module ran on
it: not skipped, not delegated to the control node, not one of the actions that run on the control node only
(debug, assert, set_fact, meta, include_*, fail, add_host, group_by...). A loop counts once as a task and once per
item as calls. Nothing here depends on task names. Beside the counts, the wall time from each task's start to the
next one's, summed by task name ('task_seconds'): where a run's time goes, for docs/benchmarks.md.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r'''
name: task_count
type: aggregate
short_description: Counts, per play and host, the tasks that reached the host (fleetpki benchmarks only)
description:
  - Writes JSON to the file named by the environment variable C(FLEETPKI_TASK_COUNT_FILE) at the end of the run.
requirements:
  - enabled in callbacks_enabled
'''

# Actions that run on the control node and never open a connection to the host.
CONTROLLER_ONLY = frozenset((
    'debug', 'assert', 'set_fact', 'meta', 'include_tasks', 'include_role', 'import_tasks', 'import_role',
    'include_vars', 'include', 'fail', 'add_host', 'group_by', 'set_stats', 'validate_argument_spec', 'pause',
    'noop',
))
LOCAL_NAMES = frozenset(('localhost', '127.0.0.1', '::1'))


def short_action(action):
    return (action or '').rsplit('.', 1)[-1]


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'task_count'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self.plays = []
        self.changed = 0
        self.task_seconds = {}
        self._running = None  # (name, started)

    def _close_task(self):
        if self._running is not None:
            name, started = self._running
            self.task_seconds[name] = self.task_seconds.get(name, 0.0) + time.monotonic() - started
            self._running = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close_task()
        self._running = (task.get_name(), time.monotonic())  # 'role : name' for a role's task

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def v2_playbook_on_play_start(self, play):
        self._close_task()
        # A play with serial starts once per batch, as a copy with the same uuid: one play, counted on.
        if self.plays and self.plays[-1]['uuid'] == play._uuid:
            return
        hosts = play.hosts
        self.plays.append({
            'uuid': play._uuid,
            'name': play.get_name(),
            'hosts': hosts if isinstance(hosts, list) else [hosts],
            'serial': list(play.serial or []),
            'max_fail_percentage': play.max_fail_percentage,
            'connection': play.connection,
            'tasks': {},
            'calls': {},
            'actions': {},
        })

    def _reached(self, result):
        task = result._task
        action = short_action(task.action)
        if action in CONTROLLER_ONLY:
            return False
        if not task.delegate_to:
            return True
        # What the callbacks keep of a delegation: the target's ansible_host and connection (templated ones too).
        delegated = result._result.get('_ansible_delegated_vars')
        items = result._result.get('results')
        if delegated is None and isinstance(items, list) and items:
            delegated = items[0].get('_ansible_delegated_vars')  # a loop: each item carries its own
        delegated = delegated or {}
        if task.delegate_to in LOCAL_NAMES or delegated.get('ansible_host') in LOCAL_NAMES:
            return False
        if delegated.get('ansible_connection') in ('local', 'ansible.builtin.local'):
            return False
        return True

    def _count(self, result, calls=None):
        if not self.plays or not self._reached(result):
            return
        play = self.plays[-1]
        host = result._host.get_name()
        play['tasks'][host] = play['tasks'].get(host, 0) + 1
        if calls is None:
            items = result._result.get('results')
            calls = len([item for item in items if not item.get('skipped')]) if isinstance(items, list) else 1
        play['calls'][host] = play['calls'].get(host, 0) + calls
        action = short_action(result._task.action)
        play['actions'][action] = play['actions'].get(action, 0) + 1

    def v2_runner_on_ok(self, result):
        self._count(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count(result)

    def v2_runner_on_unreachable(self, result):
        self._count(result, calls=1)

    def v2_playbook_on_stats(self, stats):
        self._close_task()
        path = os.environ.get('FLEETPKI_TASK_COUNT_FILE')
        if not path:
            return
        changed = sum(stats.summarize(host)['changed'] for host in stats.processed)
        with open(path, 'w') as handle:
            json.dump({'plays': self.plays, 'changed': changed, 'task_seconds': self.task_seconds}, handle, indent=1,
                      sort_keys=True)
