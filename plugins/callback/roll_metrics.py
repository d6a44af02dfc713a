# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: roll_metrics
type: notification
short_description: The last roll's result per host, as a Prometheus textfile
version_added: 0.3.0
description:
  - At the end of a run of C(fleetpki.mtls.site), C(fleetpki.mtls.rotate), C(fleetpki.mtls.roll),
    C(fleetpki.mtls.revoke), C(fleetpki.mtls.ca_rollover) or C(fleetpki.mtls.scheduled_renewal) (not in check
    mode), writes C(<PKI dir>/metrics/fleetpki_roll.prom) for node_exporter's textfile collector, atomically (temp
    file and rename), mode 0644.
  - "Gauges, label C(host): C(fleetpki_roll_last_success) (1 when the host ended the run without a failure and was
    reached; 0 when a task failed on it or it was unreachable), C(fleetpki_roll_last_run_seconds) (Unix time of the
    run's end) and, per file, C(fleetpki_roll_last_playbook_info) (label C(playbook))."
  - A callback, not a last play, because Ansible runs no further play after an C(any_errors_fatal) failure, which
    is exactly the run this metric must record. Hosts that a run did not reach (C(--limit), or a run its checks on
    the control node refused before any host was contacted) keep their last line; such a run writes nothing.
  - The PKI dir is C(fleetpki_pki_dir) when the inventory sets it as a plain path, else
    C(<directory of the ansible.cfg in use>/pki/<inventory dir name>), as the lookup P(fleetpki.mtls.pki_dir#lookup)
    finds it by default; nothing is written when that directory holds no C(ca/) (no fleet there).
  - "Enable it in the project's C(ansible.cfg): C(callbacks_enabled = fleetpki.mtls.summary, fleetpki.mtls.roll_metrics)
    (C(fleetpki.mtls.init) writes that)."
author:
  - fleetpki contributors (@fleetpki)
requirements:
  - enabled in C(callbacks_enabled) (ansible.cfg) or C(ANSIBLE_CALLBACKS_ENABLED)
'''

import os
import re
import tempfile
import time

from ansible import context
from ansible.plugins.callback import CallbackBase

PLAYBOOKS = ('site.yml', 'rotate.yml', 'roll.yml', 'revoke.yml', 'ca_rollover.yml', 'scheduled_renewal.yml')
FILE_NAME = 'fleetpki_roll.prom'
# Actions that run on the control node only: a task of theirs does not reach its host.
CONTROLLER_ACTIONS = frozenset(('assert', 'debug', 'fail', 'set_fact', 'set_stats', 'meta', 'add_host', 'group_by',
                                'include_tasks', 'import_tasks', 'include_role', 'import_role', 'include_vars',
                                'validate_argument_spec', 'pause'))
_LINE = re.compile(r'^(fleetpki_roll_last_success|fleetpki_roll_last_run_seconds)\{host="((?:[^"\\]|\\.)*)"\} (\S+)$')
HEADER = (
    '# HELP fleetpki_roll_last_success 1 when the host ended the last roll (site, rotate, roll, revoke, rollover) '
    'without a failure, 0 when a task failed on it or it was unreachable.\n'
    '# TYPE fleetpki_roll_last_success gauge\n'
    '# HELP fleetpki_roll_last_run_seconds End of the last roll that reached the host, as a Unix timestamp.\n'
    '# TYPE fleetpki_roll_last_run_seconds gauge\n'
    '# HELP fleetpki_roll_last_playbook_info The playbook of the last roll.\n'
    '# TYPE fleetpki_roll_last_playbook_info gauge\n'
)


FORGET_GONE_HOSTS_AFTER = 86400


def _escape(value):
    return str(value).replace('\\', '\\\\').replace('\n', '\\n').replace('"', '\\"')


def _unescape(value):
    return re.sub(r'\\(.)', lambda match: '\n' if match.group(1) == 'n' else match.group(1), value)


def read_previous(path):
    """{host: (success, seconds)} of the textfile's lines, {} when there is none."""
    found = {}
    try:
        with open(path) as handle:
            lines = handle.read().splitlines()
    except (IOError, OSError):
        return found
    for line in lines:
        match = _LINE.match(line)
        if match:
            metric, host, value = match.group(1), _unescape(match.group(2)), match.group(3)
            success, seconds = found.get(host, ('0', '0'))
            found[host] = (value, seconds) if metric == 'fleetpki_roll_last_success' else (success, value)
    return found


def render(results, playbook):
    lines = [HEADER]
    for host in sorted(results):
        success, seconds = results[host]
        lines.append('fleetpki_roll_last_success{host="%s"} %s\n' % (_escape(host), success))
        lines.append('fleetpki_roll_last_run_seconds{host="%s"} %s\n' % (_escape(host), seconds))
    lines.append('fleetpki_roll_last_playbook_info{playbook="%s"} 1\n' % _escape(playbook))
    return ''.join(lines)


def write_atomically(path, text):
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(prefix='.fleetpki-tmp-', dir=directory)
    try:
        with os.fdopen(fd, 'w') as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'notification'
    CALLBACK_NAME = 'fleetpki.mtls.roll_metrics'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self._playbook = None
        self._pki_dir = None
        # Hosts a play got to their own tasks for (run, or skipped by a condition; not delegated to the control
        # node): a run refused by its checks on the control node reached no host, and records nothing.
        self._reached = set()
        # Every host of the inventory (whatever --limit): a host gone from it for a day loses its line.
        self._inventory_hosts = None

    def _reach(self, result):
        host = result._host.get_name()  # pylint: disable=protected-access
        task = result._task  # pylint: disable=protected-access
        if host != 'localhost' and not getattr(task, 'delegate_to', None) \
                and task.action.rsplit('.', 1)[-1] not in CONTROLLER_ACTIONS:
            self._reached.add(host)

    def v2_runner_on_ok(self, result):
        self._reach(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._reach(result)

    def v2_runner_on_unreachable(self, result):
        self._reach(result)

    def v2_runner_on_skipped(self, result):
        self._reach(result)

    def v2_playbook_on_start(self, playbook):
        name = os.path.basename(getattr(playbook, '_file_name', '') or '')
        self._playbook = name if name in PLAYBOOKS else None

    def v2_playbook_on_play_start(self, play):
        if self._playbook is None or self._pki_dir is not None:
            return
        try:
            self._pki_dir = self._find_pki_dir(play)
        except Exception as exc:  # pylint: disable=broad-except
            self._display.warning('fleetpki.mtls.roll_metrics: cannot tell the PKI dir (%s); no roll metrics' % exc)
            self._pki_dir = ''

    def _find_pki_dir(self, play):
        manager = play.get_variable_manager()
        inventory = manager._inventory  # pylint: disable=protected-access
        # A fleet host's variables (rotate.yml's first play is localhost's; the run may be restricted by --limit).
        hosts = [host for host in inventory.get_hosts('all', ignore_restrictions=True) if host.name != 'localhost']
        self._inventory_hosts = set(inventory.hosts)  # all of them, --limit or not
        if not hosts:
            return ''
        variables = manager.get_vars(play=play, host=hosts[0])
        explicit = variables.get('fleetpki_pki_dir')
        if explicit:
            explicit = str(explicit)
            return '' if '{{' in explicit else os.path.abspath(os.path.expanduser(explicit))
        config, inventory_dir = variables.get('ansible_config_file'), variables.get('inventory_dir')
        if not config or not inventory_dir:
            return ''
        return os.path.join(os.path.dirname(os.path.abspath(str(config))), 'pki', os.path.basename(str(inventory_dir)))

    def v2_playbook_on_stats(self, stats):
        if not self._playbook or not self._pki_dir or context.CLIARGS.get('check', False) or not self._reached:
            return
        if not os.path.isdir(os.path.join(self._pki_dir, 'ca')):
            return
        path = os.path.join(self._pki_dir, 'metrics', FILE_NAME)
        results = read_previous(path)
        # A host gone from the inventory for a day (decommissioned) loses its line, or its last failure would alert
        # forever; not at once: an inventory source that failed to load, or a stopped cloud host a dynamic
        # inventory filters out, must not clear a failure nobody fixed.
        for host, (dummy, seconds) in list(results.items()):
            if self._inventory_hosts is not None and host not in self._inventory_hosts and (
                    not seconds.isdigit() or time.time() - int(seconds) > FORGET_GONE_HOSTS_AFTER):
                del results[host]
        now = '%d' % int(time.time())
        for host in sorted(stats.processed):
            if host not in self._reached:
                continue
            summary = stats.summarize(host)
            ok = not summary.get('failures') and not summary.get('unreachable')
            results[host] = ('1' if ok else '0', now)
        try:
            write_atomically(path, render(results, self._playbook))
        except (IOError, OSError) as exc:
            self._display.warning('fleetpki.mtls.roll_metrics: cannot write %s: %s' % (path, exc))
