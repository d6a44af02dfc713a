#!/usr/bin/python
# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: tls_files
short_description: Check and install a host's TLS files in one call
version_added: 0.3.0
description:
  - Ensures, in one round trip, the directories, files (certificates, private keys, CA bundles, CRLs) and managed
    C(KEY=value) entries of C(.env) files a host needs, and returns what changed.
  - Every target is looked at first, and the whole request is refused before any write if one cannot be done (a
    path that is a directory, a missing directory, an unknown owner). Only what differs is written.
  - A write goes to a temp file in the same directory, created C(0600) by the user the module runs as, written,
    fsynced, then given its final mode and, last, its owner, and renamed over the target. Owner, group or mode alone
    are fixed in place, through the open file, without rewriting the content.
  - The target directories may be writable by a service user (C(/etc/redis) is C(redis:redis 2770) on Debian), so
    no link is ever followed there. Every directory is opened one component at a time, following only a link that
    only root could have placed (its own, in a directory only root writes, such as C(/var/run)). A target, a
    O(checksums) or O(read) path that is a symbolic link, a FIFO, a socket, a device or a file with more than one
    hard link is refused, naming the path, and never read, written through or changed.
  - A file larger than 1 MiB is refused (it is read to compare it and to back it up).
  - Temp files a killed run of this module left in the target directories, and the backups an interrupted run left
    of the files this call names (they may hold key bytes) are removed; so are the C(ansible.builtin.copy) backups
    (C(<file>.<pid>.<date>@<time>~)) of the files this call keeps a backup of, which the roles made before this
    module. Another file's backup stays (a rollback later in the run may need it).
  - A failure part way through (a full or read-only disk) fails the task with RV(changed_paths) and RV(backups) of
    what was already changed, so a role's rescue can restore it.
  - Private keys (O(files[].secret_content)) and secret C(.env) entries (O(env_files[].secret_entries)) are
    C(no_log); they never appear in the result, the diff or the logged invocation.
  - Pass content read on the control node with C(lookup('ansible.builtin.file', src, rstrip=False)) so the bytes
    are exactly the source file's. The content travels in the module's payload, never on a command line.
author:
  - fleetpki contributors (@fleetpki)
attributes:
  check_mode:
    support: full
    description: Reports what would change; writes nothing.
  diff_mode:
    support: partial
    description: >-
      Public files' content, owner/group/mode changes and the managed C(.env) entries that change; a secret entry
      shows as C(KEY=(secret value)), a private key not at all.
options:
  directories:
    description: Directories to create or fix, in order (a parent before its children).
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: The directory., type: path, required: true}
      owner: {description: User name or uid., type: str}
      group: {description: Group name or gid., type: str}
      mode: {description: Octal mode such as C("0750")., type: raw, required: true}
  files:
    description: Files with given content. Their directory must exist or be listed under O(directories).
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: The file., type: path, required: true}
      content:
        description: The content (public files). Exactly one of O(files[].content), O(files[].secret_content) and
          O(files[].src).
        type: str
      secret_content:
        description: The content of a secret file (a private key); never logged, never in the diff.
        type: str
      src:
        description:
          - A file on the managed host whose content this file gets, as a secret (a key born on the host, made by
            M(fleetpki.mtls.host_key)). It is copied there, compared and written like O(files[].secret_content), and
            never sent to the control node.
          - It must be a regular file with one name, owned by the user the module runs as (root), readable and
            writable by nobody else, in a directory nobody else can write, reached without a link another user
            could have made; anything else is refused before any write.
        type: path
        version_added: 0.3.0
      append:
        description:
          - With O(files[].src) only, public text after the source's content (a certificate after its key, for a
            client that reads both from one file). The file is then the source without its trailing whitespace, a
            newline, this text without its trailing whitespace, a newline.
        type: str
        version_added: 0.3.0
      certificate:
        description:
          - With O(files[].src) only, the certificate (PEM) the key in O(files[].src) must belong to. A key that is
            not the certificate's is refused before any write (a key made on the host that the control node has not
            certified yet), so a service never gets a key with a certificate it does not match.
        type: str
        version_added: 0.3.0
      owner: {description: User name or uid., type: str}
      group: {description: Group name or gid., type: str}
      mode: {description: Octal mode such as C("0644")., type: raw, required: true}
      backup:
        description:
          - Keep the previous file, when it is replaced, beside it as C(<file>.fleetpki-previous~) (its path in
            RV(backups)) for a rollback (O(restore)); the caller removes it when done (O(remove_backups)). One left
            by an earlier run (stopped before it removed it) is removed by the next call that names the file.
          - The backup is owned by the user the module runs as; a private key's backup has mode C(0600), a public
            file's keeps the file's mode.
        type: bool
        default: false
  env_files:
    description:
      - C(.env) files of which only the given keys are managed; every other line stays as it is, and a missing file
        is created.
      - >-
        Each key is set as C(ansible.builtin.lineinfile) with C(regexp: ^KEY=) sets
        it, in order (O(env_files[].entries) first, then O(env_files[].secret_entries)); the last line starting with
        C(KEY=) is replaced, or the line is added at the end.
    type: list
    elements: dict
    default: []
    suboptions:
      path: {description: The .env file., type: path, required: true}
      owner: {description: User name or uid., type: str}
      group: {description: Group name or gid., type: str}
      mode: {description: Octal mode such as C("0640")., type: raw, required: true}
      entries:
        description:
          - Public KEY to value.
          - A key is a variable name (letters, digits, C(_), not starting with a digit). A value is one line for
            every reader, with no control character (tab included; C(\r), C(\x0b), C(\x0c), C(\x1c) to C(\x1e),
            C(\x85), C(\u2028) and C(\u2029) all end a line for Python's C(str.splitlines)), or the
            request is refused, naming the key and never the value.
        type: dict
        default: {}
      secret_entries:
        description: KEY to value of secrets (passwords); values never logged or shown. Checked as O(env_files[].entries).
        type: dict
        default: {}
      absent_keys:
        description:
          - Keys whose lines are removed (every line starting with C(KEY=)), such as those of a feature turned off;
            a file without them is left as it is. A key cannot be both set and absent.
        type: list
        elements: str
        default: []
        version_added: 0.3.0
  checksums:
    description:
      - Files whose SHA-256 to return after the changes (C(missing) for an absent one), as C(ansible.builtin.stat)
        with C(checksum_algorithm=sha256) gives it.
    type: list
    elements: path
    default: []
  read:
    description:
      - Small public text files (at most 64 KiB), such as the stamp of what a service loaded, to return as they are
        (after this call's changes), which saves a round trip. Never a secret file (the text is returned as it is).
    type: list
    elements: path
    default: []
  restore:
    description:
      - A role's rollback. Files to put back from the backup C(<file>.fleetpki-previous~) an earlier call made
        (O(files[].backup=true)), in one rename each, with the owner, group and mode given; the backup is then
        removed. A file without a backup is left as it is. A backup that is a link, a FIFO or has a second hard
        link is refused, never read.
      - Not with O(directories), O(files) or O(env_files).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The file to put back (not its backup's name).
        type: path
        required: true
      owner:
        description: Its owner (name or number); the current file's when not set.
        type: str
      group:
        description: Its group (name or number); the current file's when not set.
        type: str
      mode:
        description: Its mode, as an octal string such as C("0600").
        type: raw
        required: true
  remove_backups:
    description:
      - Files whose backup (C(<file>.fleetpki-previous~)) to remove once the new files are live, so no previous
        private key stays on the host. A missing backup is fine. A link there is removed, never followed.
    type: list
    elements: path
    default: []
'''

EXAMPLES = r'''
- name: Install the worker's key, certificate and .env
  fleetpki.mtls.tls_files:
    directories:
      - {path: /etc/fleetpki/worker, owner: root, group: fleet, mode: "0750"}
    files:
      - path: /etc/fleetpki/worker/client-key.pem
        secret_content: "{{ lookup('ansible.builtin.file', pki_issued ~ '/worker1-key.pem', rstrip=False) }}"
        owner: fleet
        group: fleet
        mode: "0600"
        backup: true
      - path: /etc/fleetpki/worker/client-cert.pem
        content: "{{ lookup('ansible.builtin.file', pki_issued ~ '/worker1-cert.pem', rstrip=False) }}"
        owner: fleet
        group: fleet
        mode: "0644"
        backup: true
    env_files:
      - path: /opt/fleet-worker/.env
        owner: root
        group: fleet
        mode: "0640"
        entries: {REDIS_USE_TLS: "true", REDIS_TLS_CERT: /etc/fleetpki/worker/client-cert.pem}
        secret_entries: {REDIS_PASSWORD: "{{ redis_password }}"}
  register: worker_files
'''

RETURN = r'''
changed_paths:
  description:
    - The paths created or changed (content, owner, group or mode), in the order given.
    - On a failure part way through, those changed before it.
  returned: always
  type: list
  elements: str
backups:
  description:
    - Path to the backup of the previous file, for each file with O(files[].backup=true) that was replaced.
    - On a failure part way through, those written before it.
  returned: always
  type: dict
  sample: {/etc/fleetpki/worker/client-key.pem: /etc/fleetpki/worker/client-key.pem.fleetpki-previous~}
removed_backups:
  description: The backups removed by O(restore) and O(remove_backups) (in check mode, those O(remove_backups) would remove).
  returned: always
  type: list
  elements: str
checksums:
  description: Path to hex SHA-256 (or C(missing)) for each of O(checksums).
  returned: when O(checksums) is not empty
  type: dict
texts:
  description: Path to text (C(null) when absent) for each of O(read).
  returned: when O(read) is not empty
  type: dict
'''

import copy

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetpki.mtls.plugins.module_utils._host.host_files import HostFiles, HostFilesError

MASK = 'VALUE_SPECIFIED_IN_NO_LOG_PARAMETER'
OWNERSHIP = dict(owner=dict(type='str'), group=dict(type='str'), mode=dict(type='raw', required=True))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directories=dict(type='list', elements='dict', default=[], options=dict(
                path=dict(type='path', required=True), **OWNERSHIP)),
            # files and env_files are no_log as a whole: Ansible logs an option to the host's journal as str(value),
            # where a key's newlines (and any backslash) are escaped and escape the mask of a no_log suboption.
            files=dict(type='list', elements='dict', default=[], no_log=True, options=dict(
                path=dict(type='path', required=True), content=dict(type='str'),
                secret_content=dict(type='str', no_log=True), src=dict(type='path'), append=dict(type='str'),
                certificate=dict(type='str'),
                backup=dict(type='bool', default=False), **OWNERSHIP),
                mutually_exclusive=[['content', 'secret_content', 'src']],
                required_one_of=[['content', 'secret_content', 'src']]),
            env_files=dict(type='list', elements='dict', default=[], no_log=True, options=dict(
                path=dict(type='path', required=True), entries=dict(type='dict', default={}),
                secret_entries=dict(type='dict', default={}, no_log=True),
                absent_keys=dict(type='list', elements='str', default=[], no_log=False), **OWNERSHIP)),
            checksums=dict(type='list', elements='path', default=[]),
            read=dict(type='list', elements='path', default=[]),
            restore=dict(type='list', elements='dict', default=[], options=dict(
                path=dict(type='path', required=True), **OWNERSHIP)),
            remove_backups=dict(type='list', elements='path', default=[]),
        ),
        supports_check_mode=True,
    )
    params = module.params
    # Not mutually_exclusive: an explicit empty list (files: []) counts as given there.
    if params['restore'] and (params['directories'] or params['files'] or params['env_files']):
        module.fail_json(msg='restore goes alone: give it without directories, files and env_files (a rollback call)')
    # Ansible masks a no_log value wherever it occurs as a substring of the result: a secret .env entry such as
    # '1' would rewrite the backups' paths and the digests the roles read back. Secrets never enter the result by
    # construction (no diff or message carries them), and the invocation masks every one of them (below).
    invocation = {'module_args': masked_args(params)}
    module.no_log_values.clear()
    try:
        host_files = HostFiles(params['directories'], params['files'], params['env_files'], params['checksums'],
                               params['read'], check_mode=module.check_mode, want_diff=module._diff,
                               restore=params['restore'], remove_backups=params['remove_backups'])
    except HostFilesError as exc:
        module.fail_json(msg='%s' % exc, changed=False, changed_paths=[], backups={}, removed_backups=[],
                         invocation=invocation)
    try:
        result = host_files.run()
    except (HostFilesError, OSError) as exc:
        # Every target is checked before the first write, but a write can still fail part way (a full or
        # read-only disk): what was already changed, and its backups, let a role's rescue restore it.
        module.fail_json(msg='%s' % exc, changed=bool(host_files.changed_paths or host_files.removed_backups)
                         and not module.check_mode, changed_paths=host_files.changed_paths, backups=host_files.backups,
                         removed_backups=host_files.removed_backups, invocation=invocation)
    module.exit_json(invocation=invocation, **result)


def masked_args(params):
    """The module's arguments with every secret replaced, as Ansible shows a no_log value."""
    args = copy.deepcopy(params)
    for spec in args.get('files') or []:
        if spec.get('secret_content') is not None:
            spec['secret_content'] = MASK
    for spec in args.get('env_files') or []:
        spec['secret_entries'] = dict((key, MASK) for key in spec.get('secret_entries') or {})
    return args


if __name__ == '__main__':
    main()
