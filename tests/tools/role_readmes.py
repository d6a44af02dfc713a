# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write roles/<role>/README.md from the role's meta/argument_specs.yml and meta/main.yml.

The argument specs are the one source of truth for a role's interface (ansible-core validates the variables
against them, ansible-doc and the docs site render them); the READMEs that Galaxy shows are generated from
them, so they cannot drift apart unnoticed:

    python3 tests/tools/role_readmes.py            # (re)write every role's README.md
    python3 tests/tools/role_readmes.py --check    # exit 1 naming each role whose README.md differs

Stdlib and PyYAML only (it runs before any venv exists). A role without meta/argument_specs.yml is skipped.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys

import yaml

COLLECTION = 'fleetpki.mtls'
GENERATOR = 'tests/tools/role_readmes.py'
# Hosts of a role's example play, for roles that the playbooks apply with a computed host pattern (roll.yml) or
# from several plays: the example inventory's group each is for. Other roles take the pattern of the first play
# of the collection's playbooks that applies them.
EXAMPLE_HOSTS = {
    'api_tls': 'api_servers',
    'ca_trust': 'redis_servers:workers:api_servers:pki_clients',
    'client_tls': 'pki_clients',
    'pki': 'redis_servers:workers:api_servers:pki_clients',
    'worker_tls': 'workers',
}

# Ansible documentation markup (as in DOCUMENTATION and argument_specs) to Markdown.
_MARKUP = [
    (re.compile(r'L\(([^)]+?),\s*([^)]+?)\)'), r'[\1](\2)'),
    (re.compile(r'U\(([^)]+?)\)'), r'[\1](\1)'),
    (re.compile(r'[CMOVRE]\(([^)]+?)\)'), r'`\1`'),
    (re.compile(r'P\(([^)#]+?)#[a-z]+\)'), r'`\1`'),
    (re.compile(r'I\(([^)]+?)\)'), r'*\1*'),
    (re.compile(r'B\(([^)]+?)\)'), r'**\1**'),
    (re.compile(r'HORIZONTALLINE'), r''),
]


# A code span: the text from a run of backticks to the next run of the same length (CommonMark).
_CODE_SPAN = re.compile(r'(`+)(?:(?!\1).)+?\1(?!`)')


def _escape_html(text):
    return text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')


def markdown(text):
    """Ansible markup to Markdown. Outside code spans, < > & are escaped: Galaxy's renderer would read <pki_dir> as
    HTML and drop it. Inside a code span (`...`, from C() and the like or written so) they stay: Markdown shows a
    code span literally, so &lt;dir&gt; there would show as such."""
    text = ' '.join(str(text).split())
    for pattern, replacement in _MARKUP:
        text = pattern.sub(replacement, text)
    out, last = [], 0
    for span in _CODE_SPAN.finditer(text):
        out += [_escape_html(text[last:span.start()]), span.group(0)]
        last = span.end()
    out.append(_escape_html(text[last:]))
    return ''.join(out)


def paragraphs(value):
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    return [markdown(item) for item in value]


def cell(text):
    """A Markdown table cell: one line, pipes escaped."""
    return text.replace('|', '\\|')


def code(value):
    if isinstance(value, str):
        return '`%s`' % value if value else '`""`'
    return '`%s`' % yaml.safe_dump(value, default_flow_style=True, width=10000).strip().replace('\n...', '')


def option_type(spec):
    kind = spec.get('type', 'str')
    if kind == 'list' and spec.get('elements'):
        return 'list of %s' % spec['elements']
    return kind


def variables_table(options):
    if not options:
        return ['This entry point takes no variables.', '']
    lines = ['| Variable | Type | Required | Default | Choices | Description |',
             '|---|---|---|---|---|---|']
    for name in sorted(options):
        spec = options[name] or {}
        default = code(spec['default']) if 'default' in spec else ''
        choices = ', '.join(code(choice) for choice in spec.get('choices', []))
        description = '<br>'.join(paragraphs(spec.get('description')))
        lines.append('| `%s` | %s | %s | %s | %s | %s |' % (
            name, option_type(spec), 'yes' if spec.get('required') else 'no', cell(default), cell(choices),
            cell(description)))
    lines.append('')
    return lines


def load_yaml(path):
    with open(path, encoding='utf-8') as handle:
        return yaml.safe_load(handle) or {}


def _role_names(node):
    """Role names a play or task list refers to (roles:, include_role, import_role), recursively."""
    if isinstance(node, list):
        for item in node:
            yield from _role_names(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == 'roles' and isinstance(value, list):
                for entry in value:
                    yield entry.get('role', entry.get('name')) if isinstance(entry, dict) else entry
            elif key.split('.')[-1] in ('include_role', 'import_role') and isinstance(value, dict):
                yield value.get('name')
            elif isinstance(value, (list, dict)):
                yield from _role_names(value)


def playbook_uses(root):
    """{role: [(playbook, hosts), ...]} for the collection's playbooks, in file order."""
    uses = {}
    directory = os.path.join(root, 'playbooks')
    for name in sorted(os.listdir(directory)):
        if not name.endswith('.yml'):
            continue
        try:
            plays = load_yaml(os.path.join(directory, name))
        except yaml.YAMLError:
            continue
        for play in plays if isinstance(plays, list) else []:
            if not isinstance(play, dict) or 'hosts' not in play:
                continue
            for role in _role_names(play):
                if isinstance(role, str) and role.startswith(COLLECTION + '.'):
                    entry = (name[:-len('.yml')], str(play['hosts']))
                    short = role[len(COLLECTION) + 1:]
                    if entry not in uses.setdefault(short, []):
                        uses[short].append(entry)
    return uses


def render(root, role, uses):
    role_dir = os.path.join(root, 'roles', role)
    specs = load_yaml(os.path.join(role_dir, 'meta', 'argument_specs.yml')).get('argument_specs') or {}
    meta_path = os.path.join(role_dir, 'meta', 'main.yml')
    meta = load_yaml(meta_path) if os.path.exists(meta_path) else {}
    info = meta.get('galaxy_info') or {}
    runtime = load_yaml(os.path.join(root, 'meta', 'runtime.yml'))
    fqcn = '%s.%s' % (COLLECTION, role)
    main = specs.get('main') or {}

    out = ['<!-- Generated by %s from roles/%s/meta/argument_specs.yml and meta/main.yml: do not edit here.' % (GENERATOR, role),
           '     Change those files, then run: python3 %s -->' % GENERATOR,
           '',
           '# %s' % fqcn,
           '']
    summary = info.get('description') or main.get('short_description') or ''
    if summary:
        out += [markdown(summary), '']
    if main:
        out += paragraphs(main.get('description')) and [p for para in paragraphs(main.get('description')) for p in (para, '')]

    out += ['## Requirements', '']
    if runtime.get('requires_ansible'):
        out.append('- ansible-core %s (the collection\'s `requires_ansible`).' % runtime['requires_ansible'])
    for platform in info.get('platforms') or []:
        versions = ', '.join(str(version) for version in platform.get('versions') or []) or 'all'
        out.append('- Platform: %s (%s).' % (platform.get('name'), versions))
    dependencies = meta.get('dependencies') or []
    out.append('- Role dependencies: %s.' % (', '.join('`%s`' % d for d in dependencies) if dependencies else 'none'))
    out.append('')

    out += ['## Entry points', '']
    seen = {}
    for entry in sorted(specs, key=lambda name: (name != 'main', name)):
        spec = specs[entry] or {}
        options = spec.get('options') or {}
        out += ['### `%s`' % entry, '']
        if spec.get('short_description'):
            out += ['%s.' % markdown(spec['short_description']).rstrip('.'), '']
        if entry != 'main':
            out += [p for para in paragraphs(spec.get('description')) for p in (para, '')]
        key = yaml.safe_dump(options, sort_keys=True)
        if options and key in seen:
            out += ['Variables: the same as entry point `%s`.' % seen[key], '']
        else:
            seen.setdefault(key, entry)
            out += variables_table(options)

    out += ['## Example playbook', '']
    used = uses.get(role) or []
    # A templated host pattern (roll.yml computes its own) says nothing to a reader: the first plain one, else all.
    hosts = EXAMPLE_HOSTS.get(role) or next((play_hosts for dummy, play_hosts in used if '{{' not in play_hosts), 'all')
    required = dict((name, option) for name, option in sorted((main.get('options') or {}).items())
                    if (option or {}).get('required'))
    out += ['```yaml',
            '- name: Apply %s' % fqcn,
            '  hosts: %s' % hosts,
            '  roles:',
            '    - role: %s' % fqcn]
    if required:
        out.append('      vars:')
        out += ['        %s: ...  # %s' % (name, option_type(option)) for name, option in required.items()]
    out += ['```', '']
    if used:
        out += ['The collection\'s playbooks that use it: %s.' % ', '.join(
            '`%s.%s`' % (COLLECTION, playbook) + ('' if '{{' in play_hosts else ' (hosts `%s`)' % play_hosts)
            for playbook, play_hosts in used), '']

    out += ['## License', '', '%s. Author: %s.' % (info.get('license') or 'GPL-3.0-or-later',
                                                   info.get('author') or 'fleetpki contributors'), '']
    return '\n'.join(out).rstrip('\n') + '\n'


def roles_with_specs(root):
    roles_dir = os.path.join(root, 'roles')
    return sorted(name for name in os.listdir(roles_dir)
                  if os.path.isfile(os.path.join(roles_dir, name, 'meta', 'argument_specs.yml')))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    parser.add_argument('--check', action='store_true',
                        help='write nothing; exit 1 naming each role whose README.md is not what would be generated')
    parser.add_argument('--root', default=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        help='collection root (default: this checkout)')
    parser.add_argument('roles', nargs='*', help='roles to do (default: every role with meta/argument_specs.yml)')
    args = parser.parse_args(argv)

    roles = args.roles or roles_with_specs(args.root)
    uses = playbook_uses(args.root)
    drift = []
    for role in roles:
        path = os.path.join(args.root, 'roles', role, 'README.md')
        try:
            wanted = render(args.root, role, uses)
        except (OSError, yaml.YAMLError) as exc:
            print('roles/%s: cannot generate README.md: %s' % (role, exc), file=sys.stderr)
            return 2
        current = None
        if os.path.exists(path):
            with open(path, encoding='utf-8') as handle:
                current = handle.read()
        if current == wanted:
            continue
        if args.check:
            drift.append(role)
            sys.stderr.writelines(difflib.unified_diff(
                (current or '').splitlines(True), wanted.splitlines(True),
                'roles/%s/README.md' % role, 'generated from roles/%s/meta' % role, n=1))
        else:
            with open(path, 'w', encoding='utf-8') as handle:
                handle.write(wanted)
            print('wrote roles/%s/README.md' % role)
    if drift:
        print('README.md out of date for role(s): %s. Run: python3 %s' % (', '.join(drift), GENERATOR), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
