# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: pki_dir
short_description: Where the fleet's PKI (or its backups) lives on the control node
version_added: 0.3.0
description:
  - The one definition of the PKI directory that every role and playbook of the collection uses.
  - Returns C(fleetpki_pki_dir) (or C(pki_backup_dir) for O(kind=backups)) when the inventory or C(-e) sets it.
  - Otherwise C(<project dir>/pki/<inventory dir name>) (or C(<project dir>/backups/<inventory dir name>)), where
    the project dir is the directory of the C(ansible.cfg) in use (C(ansible_config_file)) and the inventory dir
    name is the last part of the host's C(inventory_dir), for example C(pki/prod) for C(-i inventories/prod). It
    is outside every inventory (an inventory directory given to C(-i) is read whole, so a PKI inside it would be
    parsed as hosts and groups), keeps fleets apart, and moves with the project.
  - Fails, asking for C(fleetpki_pki_dir), when no C(ansible.cfg) is in use.
  - An old PKI at C(<inventory dir>/pki) (the default of earlier versions) is used where it is, never replaced by
    a new CA, with a warning that gives the exact C(mv) command that moves it out of the inventory. When both the
    old and the new directory hold a PKI, it fails and names both.
author:
  - fleetpki contributors (@fleetpki)
options:
  _terms:
    description: Not used.
    required: false
  kind:
    description: C(pki) for the PKI directory, C(backups) for the directory of its encrypted backups.
    type: str
    default: pki
    choices: [pki, backups]
'''

EXAMPLES = r'''
- name: The fleet's CA certificate on the control node
  ansible.builtin.debug:
    msg: "{{ lookup('fleetpki.mtls.pki_dir') }}/ca/ca-cert.pem"

- name: Where pki_backup.yml writes its archives
  ansible.builtin.debug:
    msg: "{{ lookup('fleetpki.mtls.pki_dir', kind='backups') }}"
'''

RETURN = r'''
_raw:
  description: One absolute path.
  type: list
  elements: str
'''

import glob
import os
import shlex

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display

display = Display()

# Which variable overrides the default, and what marks a directory as holding a PKI (or backups) already.
_KINDS = {
    'pki': ('fleetpki_pki_dir', ('ca', 'ca-next', 'issued', 'ca-bundle.pem', 'redis-password')),
    'backups': ('pki_backup_dir', ('*.fpkb',)),
}


def _holds_state(path, markers):
    return os.path.isdir(path) and any(glob.glob(os.path.join(glob.escape(path), marker)) for marker in markers)


def _move_command(old, new):
    return 'mkdir -p %s && mv %s %s' % (shlex.quote(os.path.dirname(new)), shlex.quote(old), shlex.quote(new))


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        kind = self.get_option('kind')
        variables = variables or {}
        override, markers = _KINDS[kind]

        inventory_dir = self._inventory_dir(variables)
        explicit = variables.get(override) or self._fleet_var(variables, override)
        if explicit:
            explicit = os.path.abspath(os.path.expanduser(str(self._templar.template(explicit))))
            if self._inside_an_inventory_dir(explicit, variables):
                self._warn_inside(kind, explicit, None)
            return [explicit]
        if not inventory_dir:
            raise AnsibleLookupError(
                'fleetpki: no inventory host to find the fleet by; run with -i inventories/<fleet>, or set %s'
                % override)

        old = os.path.join(inventory_dir, kind)
        config = variables.get('ansible_config_file')
        if not config:
            if _holds_state(old, markers):
                self._warn_inside(kind, old, None)
                return [old]
            raise AnsibleLookupError(
                'fleetpki: no ansible.cfg is in use, so there is no project directory to keep the %s of inventory '
                '%s in (<project dir>/%s/%s): set fleetpki_pki_dir (and pki_backup_dir) in the inventory, e.g. '
                'fleetpki_pki_dir: /srv/fleetpki/%s, or run from the directory of your ansible.cfg'
                % (kind, inventory_dir, kind, os.path.basename(inventory_dir), os.path.basename(inventory_dir)))
        project = os.path.dirname(os.path.abspath(str(config)))
        new = os.path.join(project, kind, os.path.basename(inventory_dir))
        # Both refusals guard the PKI (a wrong default would make a new CA); backups may go to the default as before.
        if kind == 'pki' and (os.path.basename(str(config)) == '.ansible.cfg' or project == '/etc/ansible'):
            # A user's or the system's ansible.cfg belongs to no project: its directory holds every project.
            raise AnsibleLookupError(
                'fleetpki: the ansible.cfg in use is %s, which belongs to no project, so the default %s directory '
                '(%s) may not be this fleet\'s. Put an ansible.cfg in your project (beside inventories/), or set %s in '
                'the inventory (for example %s: /srv/fleetpki/%s).'
                % (config, kind, new, override, override, os.path.basename(inventory_dir)))
        if kind == 'pki' and not (os.path.realpath(inventory_dir) + os.sep).startswith(os.path.realpath(project) + os.sep) \
                and not _holds_state(old, markers):
            # The ansible.cfg Ansible found (~/.ansible.cfg, /etc/ansible/ansible.cfg, another project's) is not this
            # fleet's project: its pki/ may hold nothing, and a run would make a new CA for a fleet that already has
            # one. Ask instead.
            raise AnsibleLookupError(
                'fleetpki: the inventory %s is not inside the directory of the ansible.cfg in use (%s), so the default '
                '%s directory (%s) may not be this fleet\'s. Run from the project whose ansible.cfg sits above the '
                'inventory, or set %s in the inventory (for example %s: /srv/fleetpki/%s).'
                % (inventory_dir, config, kind, new, override, override, os.path.basename(inventory_dir)))

        if _holds_state(old, markers) and os.path.realpath(old) != os.path.realpath(new):
            if _holds_state(new, markers):
                raise AnsibleLookupError(
                    'fleetpki: two PKI directories for inventory %s: %s (inside the inventory, the default of earlier '
                    'versions) and %s (the default now). Nothing was changed. Keep the one whose ca/ca-cert.pem your '
                    'fleet trusts (compare: openssl x509 -noout -fingerprint -in <dir>/ca/ca-cert.pem, and '
                    '/etc/fleetpki/ca-bundle.pem on a host), move the other away, or set fleetpki_pki_dir to the one '
                    'to use.' % (inventory_dir, old, new) if kind == 'pki' else
                    'fleetpki: two backup directories for inventory %s: %s (inside the inventory) and %s; move the '
                    'archives of the first into the second, or set pki_backup_dir.' % (inventory_dir, old, new))
            self._warn_inside(kind, old, new)
            return [old]
        return [new]

    @staticmethod
    def _fleet_var(variables, name):
        """A variable of the fleet's first host: the implicit localhost is in no inventory group, so a
        fleetpki_pki_dir set on the fleet's group (not on all) reaches the control node's plays only this way."""
        if variables.get('inventory_hostname') not in (None, 'localhost'):
            return None
        hosts = (variables.get('groups') or {}).get('all') or []
        return variables['hostvars'][hosts[0]].get(name) if hosts else None

    @staticmethod
    def _inventory_dir(variables):
        """The host's inventory dir; the implicit localhost has none, so take the fleet's first host's."""
        inventory_dir = variables.get('inventory_dir')
        if not inventory_dir:
            hosts = (variables.get('groups') or {}).get('all') or []
            if hosts:
                inventory_dir = variables['hostvars'][hosts[0]].get('inventory_dir')
        return os.path.abspath(str(inventory_dir)).rstrip('/') if inventory_dir else None

    @staticmethod
    def _inside_an_inventory_dir(path, variables):
        """Whether an inventory directory given to -i (read whole by the inventory plugins) holds the path."""
        real = os.path.realpath(path)
        for source in variables.get('ansible_inventory_sources') or []:
            source = os.path.realpath(str(source))
            if os.path.isdir(source) and (real + os.sep).startswith(source + os.sep):
                return True
        return False

    @staticmethod
    def _warn_inside(kind, old, new):
        what = 'PKI (CA key included)' if kind == 'pki' else 'PKI backups'
        if new:
            how = 'Move it out of the inventory once, when no playbook runs:\n%s\n' % _move_command(old, new)
        else:
            how = ('Move it to a directory outside the inventory (mv) and set %s to that directory.\n'
                   % _KINDS[kind][0])
        display.warning(
            'fleetpki: the fleet\'s %s is in %s, inside the inventory directory: an inventory directory given to -i is '
            'read whole, so its files are parsed as hosts and groups. It is used where it is (no new CA is made).\n%s'
            'See docs/fleet-rollout.md, "Where the PKI lives".' % (what, old, how))
