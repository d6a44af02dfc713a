"""No task of the collection hands an inventory value to a shell, and none sources or runs a fleet host's file.

Inventory values are the operator's, and some come from fleet hosts (a .env): a value like
`redis_tls_ca_file: "/x;id>/tmp/p"` must stay one argument. So: no `shell`, `raw` or `script` task with a
template in it, and every `command` task either uses `argv` or runs a command line the operator writes on purpose
(listed below, run without a shell). This reads every task file of roles/ and playbooks/ as YAML.
"""
import pathlib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHELLS = ('ansible.builtin.shell', 'ansible.builtin.raw', 'ansible.builtin.script', 'shell', 'raw', 'script')
COMMANDS = ('ansible.builtin.command', 'command')
# Command lines an operator writes as a whole, run by the command module (no shell: ; | $() are plain text).
OPERATOR_COMMANDS = ('{{ worker_tls_health_command }}',)


def tasks_in(node):
    if isinstance(node, list):
        for item in node:
            yield from tasks_in(item)
    elif isinstance(node, dict):
        yield node
        for key in ('block', 'rescue', 'always', 'tasks', 'pre_tasks', 'post_tasks', 'handlers'):
            if key in node:
                yield from tasks_in(node[key])


def every_task():
    for path in sorted(list((ROOT / 'roles').rglob('*.yml')) + list((ROOT / 'playbooks').rglob('*.yml'))):
        if '/meta/' in str(path) or '/defaults/' in str(path) or '/vars/' in str(path):
            continue
        for task in tasks_in(yaml.safe_load(path.read_text()) or []):
            yield path.relative_to(ROOT), task


def test_no_shell_raw_or_script_task_takes_a_template():
    found = []
    for path, task in every_task():
        for name in SHELLS:
            if name in task and '{{' in yaml.safe_dump(task[name]):
                found.append('%s: %s' % (path, task.get('name')))
    assert not found, 'a shell gets an inventory value: %s' % found


def test_every_command_task_with_a_template_uses_argv():
    found = []
    for path, task in every_task():
        for name in COMMANDS:
            args = task.get(name)
            if args is None:
                continue
            line = args if isinstance(args, str) else args.get('cmd')
            if line and '{{' in line and line.strip() not in OPERATOR_COMMANDS:
                found.append('%s: %s' % (path, task.get('name')))
    assert not found, 'a command line built from inventory values (use argv): %s' % found


def test_no_task_sources_or_runs_a_file_of_the_fleet():
    found = []
    for path, task in every_task():
        text = yaml.safe_dump(task)
        if any(word in text for word in ('. "', 'source ', 'set -a', 'eval ')):
            found.append('%s: %s' % (path, task.get('name')))
    assert not found, found
