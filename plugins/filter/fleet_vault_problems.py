# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: fleet_vault_problems
short_description: Secrets the vault should provide and does not, found before anything changes
version_added: 0.3.0
description:
  - "The scaffold keeps secrets as C(vault_) variables in C(group_vars/all/vault.yml) (encrypted) and refers to
    them from C(group_vars/all/vars.yml), such as C(pki_ca_passphrase: \"{{ vault_pki_ca_passphrase }}\"). Run
    without the vault (no C(--ask-vault-pass)), or with a vault that lacks the variable, the reference is undefined:
    a CA would then be made with an unencrypted key."
  - Returns one message per variable whose template uses an undefined C(vault_) variable (a C(default) in the
    template makes it optional), per variable of O(needed) that is not set, and for C(pki_ca_passphrase) when a
    key of O(ca_key_files) is encrypted and no passphrase is set, or is not encrypted while one is set (with the
    two ways out, to unset it or to encrypt the key in place with
    O(fleetpki.mtls.pki_ca#module:encrypt_existing_key)). Each message names the variable, the file that
    keeps it and C(--ask-vault-pass) / C(--vault-password-file).
  - Reads the raw (untemplated) variables of C(localhost) and of the first host of each fleet group for the
    C(vault_) references; P(fleetpki.mtls.fleet_preflight#filter) includes these checks and those of the Redis
    secrets of every host.
  - "C(pki_ca_passphrase) must have one value on C(localhost) and on every fleet host: the PKI tasks of
    C(playbooks/pki.yml) run once, delegated to C(localhost), with the variables of the fleet play's first host
    (another one under C(--limit)), while C(ca_renew.yml), C(revoke.yml) and C(ca_rollover.yml) use the value of C(localhost).
    A value set only for the fleet group, one group or C(localhost) is refused with where each value was read
    (file and line, when Ansible knows it) and the fix: set it once in C(group_vars/all). The raw value of every
    host is read once and one host per distinct raw value is templated, so the cost is linear in hosts; the
    values themselves are never shown."
  - When the vault cannot be decrypted, Ansible's own error stops the run before this check.
author:
  - fleetpki contributors (@fleetpki)
positional: groups
options:
  _input:
    description: The C(hostvars) magic variable.
    type: dict
    required: true
  groups:
    description: The C(groups) magic variable.
    type: dict
    required: true
  needed:
    description: Secrets the caller needs set and not empty on the control node, such as C(pki_backup_passphrase).
    type: list
    elements: str
  ca_key_files:
    description: CA key files; when one is encrypted, C(pki_ca_passphrase) must be set, and when one is not, it must not be.
    type: list
    elements: path
'''

EXAMPLES = r'''
- name: Stop before a backup when the vault was not opened
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join(' | ') }}"
  vars:
    problems: "{{ hostvars | fleetpki.mtls.fleet_vault_problems(groups, needed=['pki_backup_passphrase']) }}"
'''

RETURN = r'''
_value:
  description: One message per problem, naming the variable, the vault file and the options that open it.
  type: list
  elements: str
'''

import os
import re

from ansible.errors import AnsibleUndefinedVariable
from jinja2 import Undefined
from jinja2.exceptions import UndefinedError

from ansible_collections.fleetpki.mtls.plugins.filter.fleet_cert_requests import CERT_ROLES

try:  # ansible-core 2.19+: where a value was read (file and line), for the operator's message only
    from ansible._internal._datatag._tags import Origin
except ImportError:  # pragma: no cover (older ansible-core: the message names the hosts, not the files)
    Origin = None

# Where the scaffold (and inventories/example) keeps the secrets: the vault_ variables, encrypted.
VAULT_FILE = 'group_vars/all/vault.yml'
VAULT_HINT = ('keep it in %s beside the inventory (an encrypted file: ansible-vault edit <inventory>/%s), and '
              'run with --ask-vault-pass or --vault-password-file <file>' % (VAULT_FILE, VAULT_FILE))
# A vault_ variable used in a template, unless the template gives it a default (then it is optional).
_TEMPLATE = re.compile(r'{{(.*?)}}', re.S)
_VAULT_NAME = re.compile(r'\b(vault_[A-Za-z0-9_]+)\b')


def _undefined_reference(host, variable, error):
    """The problem of a variable whose template uses an undefined variable (a vault that was not opened)."""
    missing = _VAULT_NAME.search(str(error))
    if missing:
        return '%s: %s refers to %s, which is not defined: %s' % (host, variable, missing.group(1), VAULT_HINT)
    return '%s: %s cannot be resolved (%s): %s' % (host, variable, error, VAULT_HINT)


def secret(host, host_vars, variable, problems, default=None):
    """host_vars[variable], or default and a problem when its template refers to an undefined variable."""
    try:
        value = host_vars.get(variable, default)
        if isinstance(value, Undefined):  # ansible-core 2.19 hands a marker back, which raises when used
            value._fail_with_undefined_error()
        return value
    except (AnsibleUndefinedVariable, UndefinedError) as error:
        problems.append(_undefined_reference(host, variable, error))
        return default


def _missing_vault_names(value):
    """The vault_ names a raw (untemplated) value uses without a default, in nested lists and dicts too."""
    if isinstance(value, dict):
        return set(name for item in value.values() for name in _missing_vault_names(item))
    if isinstance(value, (list, tuple)):
        return set(name for item in value for name in _missing_vault_names(item))
    if not isinstance(value, str) or 'vault_' not in value:
        return set()
    names = set()
    for expression in _TEMPLATE.findall(value):
        if 'default(' not in expression and '| d(' not in expression:
            names.update(_VAULT_NAME.findall(expression))
    return names


# The fleet play of playbooks/pki.yml, in the order of its host pattern (redis_servers:workers:api_servers:
# pki_clients): its PKI tasks run once, delegated to localhost, with the variables of the play's first host.
FLEET_PLAY_GROUPS = ('redis_servers', 'workers', 'api_servers', 'pki_clients')
# Secrets those PKI tasks read from that fleet host while ca_renew.yml, revoke.yml and ca_rollover.yml read them
# from localhost: each must have one value everywhere, or a CA made by one play cannot be opened by another.
SHARED_SECRETS = ('pki_ca_passphrase', 'pki_root_passphrase')
_SHOWN_HOSTS = 5


def _raw_vars(hostvars, host):
    """The host's variables untemplated (no secret is decrypted or resolved)."""
    try:
        return hostvars.raw_get(host)
    except AttributeError:  # a plain dict (unit tests): its values are already raw
        return hostvars.get(host) or {}


def _origin(value):
    """The file (and line) a raw value was read from, or None when Ansible does not say."""
    tag = Origin.get_tag(value) if Origin is not None else None
    if tag is None or not tag.path:
        return None
    return '%s:%s' % (tag.path, tag.line_num) if tag.line_num else tag.path


def _raw_key(value, raw):
    """Equal for two hosts whose raw values resolve alike: the value (or where it was read, for a value that
    is not a plain string, such as an inline vault) and the same for the vault_ variables it refers to."""
    if value is None or isinstance(value, (str, int, float, bool)):
        key = (type(value).__name__, value)
    else:
        key = ('origin', _origin(value) or id(value))
    names = sorted(_VAULT_NAME.findall(value)) if isinstance(value, str) else []
    return (key,) + tuple((name, _raw_key(raw.get(name), {})) for name in names)


def _hosts_text(hosts):
    shown = ', '.join(hosts[:_SHOWN_HOSTS])
    return shown + (' and %d more' % (len(hosts) - _SHOWN_HOSTS) if len(hosts) > _SHOWN_HOSTS else '')


def fleet_play_hosts(groups):
    """The hosts of the fleet play in the order it runs them (its first one runs the PKI tasks)."""
    hosts = []
    seen = set()
    for group in FLEET_PLAY_GROUPS:
        for host in groups.get(group) or []:
            if host not in seen:
                seen.add(host)
                hosts.append(host)
    return hosts


def shared_secret_problem(hostvars, groups, variable, problems, raw_cache=None):
    """A message when localhost and the fleet hosts do not all see the same value of ``variable``, else None.

    Every host's raw value is read once (linear in hosts; once for all the shared secrets with ``raw_cache``, a
    dict kept by the caller); one host per distinct raw value is templated.
    """
    raw_cache = {} if raw_cache is None else raw_cache
    fleet = fleet_play_hosts(groups)
    if not fleet:
        return None
    buckets = {}  # raw key -> hosts with it, in inventory order (dicts keep it)
    raws = {}
    for host in ['localhost'] + [host for host in fleet if host != 'localhost']:
        if host not in raw_cache:
            raw_cache[host] = _raw_vars(hostvars, host)
        raw = raw_cache[host]
        value = raw.get(variable)
        key = _raw_key(value, raw)
        buckets.setdefault(key, []).append(host)
        raws.setdefault(key, value)
    if len(buckets) == 1:
        return None
    resolved = {}  # resolved value -> raw keys; the values stay in memory, never in a message
    for key, hosts in buckets.items():
        value = '' if raws[key] is None else secret(hosts[0], hostvars[hosts[0]], variable, problems, default='')
        resolved.setdefault(str(value or ''), []).append(key)
    if len(resolved) == 1:
        return None
    places = []
    number = 0
    for value, keys in resolved.items():
        hosts = [host for key in keys for host in buckets[key]]
        origins = sorted(set(origin for origin in (_origin(raws[key]) for key in keys) if origin))
        if not value:
            places.append('not set on %s' % _hosts_text(hosts))
            continue
        number += 1
        source = 'from ' + ', '.join(origins) if origins else 'where from is not known'
        places.append('value %d on %s (%s)' % (number, _hosts_text(hosts), source))
    return ('%s is not the same on localhost and every fleet host: the PKI tasks of pki.yml read it from the fleet '
            'play\'s first host (%s; another one under --limit) and ca_renew.yml, revoke.yml and ca_rollover.yml '
            'from localhost, so a CA made by one cannot be opened by another. Today: %s. Set it once in '
            'group_vars/all beside the inventory (as the scaffold does: %s: "{{ vault_%s }}" in '
            'group_vars/all/vars.yml, the value in %s, an encrypted file) and remove the other settings'
            % (variable, fleet[0], '; '.join(places), variable, variable, VAULT_FILE))


def _key_head(path):
    """The start of a key file, enough for its PEM header; empty when there is no file (no CA yet)."""
    try:
        with open(path, 'r') as handle:
            return handle.read(200)
    except (IOError, OSError):
        return ''


def _is_encrypted_key(path):
    """A PEM key file whose first line says it is encrypted (PKCS#8 or the traditional Proc-Type header)."""
    return 'ENCRYPTED' in _key_head(path)


def _is_unencrypted_key(path):
    """A PEM private key file that is not encrypted (so a passphrase given for it is refused by pki_ca)."""
    head = _key_head(path)
    return 'PRIVATE KEY' in head and 'ENCRYPTED' not in head


# The way out for a CA key written unencrypted while a passphrase was meant (the passphrase was set on localhost
# only before the preflight checked it): encrypt it in place, once. The passphrase is templated by Ansible from the
# inventory's variables, never typed on the command line.
ENCRYPT_IN_PLACE = ('ansible localhost -i <inventory> -m fleetpki.mtls.pki_ca -a '
                    '\'{"ca_dir": "%s", "ca_passphrase": "{{ pki_ca_passphrase }}", "encrypt_existing_key": true}\' '
                    '(with --ask-vault-pass or --vault-password-file <file>, as for the playbooks)')


def fleet_vault_problems(hostvars, groups, needed=None, ca_key_files=None):
    """Secrets the vault should provide and does not, found before anything changes.

    - every variable that uses a vault_ variable (the scaffold's group_vars/all/vars.yml: pki_ca_passphrase:
      "{{ vault_pki_ca_passphrase }}") while that vault_ variable is not defined, because the vault was not opened
      or lacks it: the variables of localhost and of the first host of each fleet group are read raw, so this is
      cheap on a large fleet (group_vars/all reaches them all; the per-host secrets fleet_preflight reads are
      checked on every host there);
    - pki_ca_passphrase (and pki_root_passphrase) not the same on localhost and every fleet host
      (shared_secret_problem);
    - each variable of ``needed`` that is not set (or empty) on localhost;
    - pki_ca_passphrase not set while a CA key of ``ca_key_files`` is encrypted;
    - pki_ca_passphrase set while a CA key of ``ca_key_files`` is not encrypted (pki_ca would refuse it).
    """
    problems = []
    hosts = ['localhost'] + [(groups.get(group) or [None])[0] for group, _role, _usage in CERT_ROLES]
    seen = set()
    for host in hosts:
        if host is None or host in seen:
            continue
        seen.add(host)
        raw = _raw_vars(hostvars, host)
        for variable in sorted(raw):
            if variable.startswith('vault_'):
                continue
            for name in sorted(_missing_vault_names(raw[variable])):
                if name not in raw:
                    # group_vars/all reaches localhost: a variable only a fleet host has is named with its host.
                    message = '%s%s refers to %s, which is not defined: %s' % (
                        '' if host == 'localhost' else host + ': ', variable, name, VAULT_HINT)
                    if message not in problems:
                        problems.append(message)
    differ = set()
    raw_cache = {}
    for variable in SHARED_SECRETS:
        found = []
        problem = shared_secret_problem(hostvars, groups, variable, found, raw_cache)
        # localhost's own messages are worded without its name by the check above
        problems.extend(message for message in (m[len('localhost: '):] if m.startswith('localhost: ') else m
                                                for m in found) if message not in problems)
        if problem:
            differ.add(variable)
            problems.append(problem)
    # Past the check above, localhost's value of a shared secret is the one every play sees.
    localhost = hostvars['localhost'] if 'localhost' in hostvars else {}
    wanted = list(needed or [])
    if any(_is_encrypted_key(path) for path in ca_key_files or []):
        wanted.append('pki_ca_passphrase')
    plain_keys = [path for path in ca_key_files or [] if _is_unencrypted_key(path)]
    if plain_keys and 'pki_ca_passphrase' not in differ and not any(
            problem.startswith('pki_ca_passphrase refers to') for problem in problems):
        if secret('localhost', localhost, 'pki_ca_passphrase', problems, default=''):
            for path in plain_keys:
                problems.append(
                    'the CA key %s is not encrypted but pki_ca_passphrase is set, so fleetpki.mtls.pki_ca would '
                    'refuse it. Either unset pki_ca_passphrase (remove it from group_vars/all and its vault) to keep '
                    'the key as it is, or encrypt the key in place with it, once (pki_ca encrypt_existing_key: the '
                    'same key and certificate, mode 0600): %s, then run again'
                    % (path, ENCRYPT_IN_PLACE % os.path.dirname(path)))
    for variable in wanted:
        if variable in differ or any(problem.startswith(variable + ' refers to') for problem in problems):
            continue
        value = secret('localhost', localhost, variable, problems, default='')
        if not value:
            if variable == 'pki_ca_passphrase':
                problems.append('the CA key (%s) is encrypted and pki_ca_passphrase is not set: set it from '
                                'vault_pki_ca_passphrase in group_vars/all/vars.yml as the scaffold does, %s'
                                % (', '.join(path for path in ca_key_files if _is_encrypted_key(path)),
                                   VAULT_HINT.replace('keep it', 'keep vault_pki_ca_passphrase')))
            else:
                problems.append('%s is not set: set it from vault_%s in group_vars/all/vars.yml as the scaffold '
                                'does, %s' % (variable, variable, VAULT_HINT.replace('keep it', 'keep vault_' + variable)))
    return problems


class FilterModule:
    def filters(self):
        return {'fleet_vault_problems': fleet_vault_problems}
