# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: summary
type: aggregate
short_description: After the play recap, which tasks changed or failed on each host
version_added: 0.3.0
description:
  - At the end of a playbook, after the recap, prints one line per host (hosts with the same outcome share a line)
    with the names of the tasks that changed, failed or found the host unreachable, so an operator sees what a run
    of C(fleetpki.mtls.site) or C(fleetpki.mtls.rotate) did without reading the whole log.
  - Prints task names only, never a task's result or arguments. A C(no_log) task whose name is templated shows as
    C((hidden)), since its name could carry the value it hides; a C(no_log) task with a plain name shows that name.
  - A task that changed several loop items or ran as a handler several times is listed once with a count; failures
    of tasks with C(ignore_errors) are not listed. In check mode the changes are listed as C(would change).
  - "Enable it in the project's C(ansible.cfg): C(callbacks_enabled = fleetpki.mtls.summary) in C([defaults])."
author:
  - fleetpki contributors (@fleetpki)
requirements:
  - enabled in C(callbacks_enabled) (ansible.cfg) or C(ANSIBLE_CALLBACKS_ENABLED)
'''

import re
from collections import OrderedDict

from ansible import context
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.callback import CallbackBase

# Hosts listed on one line before "and N more": a large fleet with the same outcome stays one short line.
_HOSTS_SHOWN = 5
_TEMPLATED = re.compile(r'{{|{%')
HIDDEN = '(hidden)'


def _raw_name(task):
    """The task's name as written (before templating: the task a result carries has its name templated), '' when
    it has none."""
    data = task.get_ds() if hasattr(task, 'get_ds') else None
    if isinstance(data, dict):
        return str(data.get('name') or '')
    return str(getattr(task, 'name', None) or '')


def _natural(host):
    """worker2 before worker10."""
    return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', host)]


def _no_log(task):
    """no_log as the task sets it; a value still templated counts as on (the safe side)."""
    value = getattr(task, 'no_log', False)
    if isinstance(value, str) and _TEMPLATED.search(value):
        return True
    return boolean(value, strict=False) if value is not None else False


def _shown_name(task):
    """A name that cannot reveal a secret: a no_log task with a templated name is hidden."""
    raw = _raw_name(task)
    no_log = _no_log(task)
    if no_log and (not raw or _TEMPLATED.search(raw)):
        return HIDDEN
    return task.get_name(include_role_fqcn=False).strip() or task.action


def _listing(names):
    """'a, b (x3)': each name once, in the order first seen, with a count when it happened more than once."""
    return ', '.join(name if count == 1 else '%s (x%d)' % (name, count) for name, count in names.items())


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'fleetpki.mtls.summary'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self._hosts = OrderedDict()  # host -> {'changed': OrderedDict(name: count), 'failed': ..., 'unreachable': ...}

    def _seen(self, result):
        """The host's outcomes so far (a host with no change still gets its line)."""
        host = result._host.get_name()
        if host not in self._hosts:
            self._hosts[host] = {'changed': OrderedDict(), 'failed': OrderedDict(), 'unreachable': OrderedDict()}
        return self._hosts[host]

    def _record(self, result, outcome):
        names = self._seen(result)[outcome]
        name = _shown_name(result._task)
        names[name] = names.get(name, 0) + 1

    def v2_runner_on_ok(self, result):
        # A loop's items are counted in v2_runner_item_on_ok; the loop's own result repeats their changed flag.
        if result._result.get('changed', False) and not result._result.get('results'):
            self._record(result, 'changed')
        else:
            self._seen(result)

    def v2_runner_item_on_ok(self, result):
        if result._result.get('changed', False):
            self._record(result, 'changed')

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if ignore_errors:
            self._seen(result)
        else:
            self._record(result, 'failed')

    def v2_runner_on_unreachable(self, result):
        self._record(result, 'unreachable')

    def v2_runner_on_skipped(self, result):
        self._seen(result)

    def _line(self, outcomes, check_mode):
        parts = []
        if outcomes['changed']:
            parts.append('%s: %s' % ('would change' if check_mode else 'changed', _listing(outcomes['changed'])))
        if outcomes['failed']:
            parts.append('failed: %s' % _listing(outcomes['failed']))
        if outcomes['unreachable']:
            parts.append('unreachable: %s' % _listing(outcomes['unreachable']))
        return ' | '.join(parts) or 'no change'

    def v2_playbook_on_stats(self, stats):
        if not self._hosts:
            return
        check_mode = bool(context.CLIARGS.get('check', False))
        by_line = OrderedDict()
        for host in sorted(self._hosts, key=_natural):
            outcomes = self._hosts[host]
            by_line.setdefault(self._line(outcomes, check_mode), []).append(host)
        self._display.banner('CHANGES BY HOST')
        for line, hosts in by_line.items():
            shown = ', '.join(hosts[:_HOSTS_SHOWN])
            if len(hosts) > _HOSTS_SHOWN:
                shown += ' and %d more' % (len(hosts) - _HOSTS_SHOWN)
            self._display.display('%s: %s' % (shown, line))
        self._display.display('')
