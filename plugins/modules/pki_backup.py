#!/usr/bin/python
# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: pki_backup
short_description: Encrypted backup, verification and restore of the control node's PKI directory
version_added: 0.2.0
description:
  - O(state=backup) writes the whole PKI directory O(pki_dir) (CA key and certificate, metadata, CRLs, issued keys
    and certificates, bundles, rollover state) into one encrypted archive O(archive), mode 0600, in one rename.
  - The archive is a gzip'd tar encrypted with AES-256-GCM under a key derived from O(backup_passphrase) by scrypt with a
    random salt, behind a small versioned header. It is made in Python; no openssl or gpg is run.
  - Left out of the archive are temp files of killed runs (C(.fleetpki-tmp-*)), lock files (C(*.lock), C(*.lck))
    and the C(metrics/) directory. Links, devices and unreadable files stop the backup with a message naming them.
  - The archive content is deterministic (sorted members, owner 0/0, mode kept, no modification time). When
    O(archive) exists and holds the same names, modes and bytes, nothing is written and the task reports no change.
  - O(state=verify) decrypts the archive and lists it (number of files, fingerprint of the CA certificate inside);
    it never changes anything.
  - O(state=restore) extracts the archive into O(pki_dir) with the archived file modes (a private key is never
    restored readable by group or others). A missing O(pki_dir) is made from the archive in a temp directory beside
    it and renamed into place. Files missing from an existing O(pki_dir) are put back; restoring content that is
    already there is not a change.
  - Restore refuses when O(pki_dir) holds another CA than the archive, or files that differ from the archive
    (newer serials or revocations would be lost), unless O(force=true); then the existing directory is moved aside
    to C(<pki_dir>.pre-restore-<UTC time>), never deleted.
  - Archive members with an absolute path, C(..), links, devices or anything but directories and regular files
    are refused before anything is written.
  - Runs on the control node only.
author:
  - fleetpki contributors (@fleetpki)
requirements:
  - cryptography >= 38.0
attributes:
  check_mode:
    support: full
    description: Decrypts and compares as in a real run, reports what would change, and writes nothing.
  diff_mode:
    support: none
    description: No diff is shown; the result says what changed, never file content.
extends_documentation_fragment:
  - fleetpki.mtls.pki_group
  - fleetpki.mtls.pki_group.action_group
options:
  state:
    description: What to do.
    type: str
    choices: [backup, restore, verify]
    default: backup
  pki_dir:
    description:
      - The PKI directory on the control node (C(fleetpki_pki_dir), by default C(<project dir>/pki/<inventory dir name>),
        from P(fleetpki.mtls.pki_dir#lookup)).
      - Backed up with O(state=backup), restored into with O(state=restore), unused with O(state=verify).
    type: path
    required: true
  archive:
    description:
      - Path of the encrypted archive. Must be outside O(pki_dir). Its directory is created with mode 0700.
    type: path
    required: true
  backup_passphrase:
    description:
      - Passphrase the archive key is derived from (scrypt). Keep it in ansible-vault, and a copy apart from the
        archive, since without it the archive cannot be read. Never logged.
      - Not the CA key's passphrase (O(ca_passphrase)); the archive holds the CA key as it is on disk.
    type: str
    required: true
    aliases: [passphrase]
  force:
    description:
      - With O(state=restore) only. Restore even when O(pki_dir) holds another CA or files that differ from the
        archive; the existing directory is moved aside to C(<pki_dir>.pre-restore-<UTC time>) first.
    type: bool
    default: false
notes:
  - A wrong passphrase, a corrupted, truncated or foreign archive stops the module with a message that names the
    archive and what to do; nothing is changed.
  - An existing O(archive) that cannot be read with O(backup_passphrase) is never overwritten by O(state=backup).
  - The modification times of files are not kept; restored files get the time of the restore.
seealso:
  - module: fleetpki.mtls.pki_ca
  - module: fleetpki.mtls.pki_leaf
'''

EXAMPLES = r'''
- name: Back up the PKI directory into an encrypted archive
  fleetpki.mtls.pki_backup:
    state: backup
    pki_dir: "{{ lookup('fleetpki.mtls.pki_dir') }}"
    archive: "{{ lookup('fleetpki.mtls.pki_dir', kind='backups') }}/pki-{{ now(utc=true, fmt='%Y-%m-%d') }}.fpkb"
    backup_passphrase: "{{ vault_pki_backup_passphrase }}"
  register: backup

- name: Check that an archive decrypts, and which CA it holds
  fleetpki.mtls.pki_backup:
    state: verify
    pki_dir: "{{ lookup('fleetpki.mtls.pki_dir') }}"
    archive: /mnt/offsite/pki-2025-01-31.fpkb
    backup_passphrase: "{{ vault_pki_backup_passphrase }}"
  register: archive_info

- name: Restore, moving a PKI directory with another CA aside
  fleetpki.mtls.pki_backup:
    state: restore
    pki_dir: "{{ lookup('fleetpki.mtls.pki_dir') }}"
    archive: /mnt/offsite/pki-2025-01-31.fpkb
    backup_passphrase: "{{ vault_pki_backup_passphrase }}"
    force: true
'''

RETURN = r'''
archive:
  description: Absolute path of the archive.
  returned: always
  type: str
  sample: /srv/fleet/backups/prod/pki-2025-01-31.fpkb
pki_dir:
  description: Absolute path of the PKI directory.
  returned: always
  type: str
  sample: /srv/fleet/inventories/prod/pki
files:
  description: Number of regular files in the archive (directories not counted).
  returned: always
  type: int
  sample: 42
ca_fingerprint_sha256:
  description:
    - SHA-256 fingerprint (colon-separated hex) of C(ca/ca-cert.pem) in the archive, or in O(pki_dir) for
      O(state=backup). Null when there is none.
  returned: always
  type: str
  sample: 3A:0F:...:9C
moved_aside:
  description: Where O(state=restore) with O(force=true) moved the existing PKI directory (would move, in check mode).
  returned: always
  type: str
  sample: /srv/fleet/inventories/prod/pki.pre-restore-20250131T031500Z
action:
  description: What was done (or would be in check mode).
  returned: always
  type: str
  choices: [none, create, update, fix_mode, restore_missing, replace]
  sample: none
members:
  description: Paths of the files in the archive, relative to the PKI directory.
  returned: when O(state=verify)
  type: list
  elements: str
  sample: [ca/ca-cert.pem, ca/ca-key.pem, ca/metadata.json]
'''

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.backup import BackupManager, STATES
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.errors import PkiError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            state=dict(type='str', default='backup', choices=list(STATES)),
            pki_dir=dict(type='path', required=True),
            archive=dict(type='path', required=True),
            backup_passphrase=dict(type='str', required=True, no_log=True, aliases=['passphrase']),
            # module_defaults for group/fleetpki.mtls.pki hands these to every module of the group
            ca_dir=dict(type='path'),
            ca_passphrase=dict(type='str', no_log=True),
            force=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    if not crypto.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography'), exception=crypto.CRYPTOGRAPHY_IMPORT_ERROR)

    params = module.params
    if params['force'] and params['state'] != 'restore':
        module.fail_json(msg='force applies to state=restore only; remove it (state is %s)' % params['state'])
    manager = BackupManager(
        state=params['state'],
        pki_dir=params['pki_dir'],
        archive=params['archive'],
        passphrase=params['backup_passphrase'],
        force=params['force'],
    )
    try:
        manager.plan()
        result = manager.result() if module.check_mode else manager.apply()
    except PkiError as exc:
        module.fail_json(msg=str(exc))
    for warning in manager.warnings:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
