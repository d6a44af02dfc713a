#!/usr/bin/python
# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: redis_admin
short_description: Administer the local Redis over TLS as its admin user, without a restart
version_added: 0.3.0
description:
  - Every administrative action of the C(fleetpki.mtls.redis_tls) role on the Redis host goes through this module,
    applying a new C(redis.conf) to the running Redis with one C(CONFIG SET), reloading the TLS files, checking
    that a new mTLS connection presents the installed certificate, closing the plaintext port once its clients
    have moved, and managing per-host ACL users.
  - It runs on the Redis host and connects to C(127.0.0.1) the way the current O(conf_path) says (plaintext
    while a plaintext port is open, else TLS with the files Redis serves), logs in as O(login_user), or, on a
    Redis from before per-host users, as C(default) with O(legacy_password) or the C(requirepass) of O(conf_path).
  - Passwords travel only inside the module's arguments (never on a command line or in a process's
    environment) and never come back in a result.
  - Standard library only on the Redis host (no redis-py needed).
author:
  - fleetpki contributors (@fleetpki)
attributes:
  check_mode:
    support: full
    description: >-
      Reports what would change and changes nothing; C(users) creates and deletes a short-lived probe user (off,
      no password) to compare rules the way Redis normalizes them.
  diff_mode:
    support: none
    description: Nothing to show as a diff (and redis.conf values may be secrets).
options:
  command:
    description:
      - C(config) compares every directive of O(desired_conf) with the running Redis (C(CONFIG GET)) and sets
        those that differ in one C(CONFIG SET); a plaintext port that is open stays open. RV(runtime=false) when
        only a restart can apply the file (nothing was changed then).
      - C(reload_tls) loads O(tls_cert_file), O(tls_key_file) and O(tls_ca_file) in one C(CONFIG SET) (atomic;
        existing connections stay).
      - C(check) PINGs over a new mTLS connection to the TLS port and, with O(expect_cert), compares the
        certificate Redis presents with that file.
      - C(close_plain) waits up to O(drain_timeout) seconds until no client uses the plaintext port, then closes
        it (C(CONFIG SET port 0)).
      - C(users) makes the ACL users in O(users) exactly as defined (and deletes others with O(purge)).
    type: str
    required: true
    choices: [config, reload_tls, check, close_plain, users]
  conf_path:
    description: redis.conf of the running Redis, read to know how to reach it.
    type: path
    default: /etc/redis/redis.conf
  login_user:
    description: ACL user to log in as.
    type: str
    default: fleetpki-admin
  login_password:
    description: Password of O(login_user). Never logged.
    type: str
  legacy_password:
    description: The shared password of the C(default) user, tried when O(login_user) cannot log in (a Redis from before per-host users). Never logged.
    type: str
  tls_cert_file:
    description: Client certificate of the admin connection (and, with C(reload_tls), the certificate to load); default the C(tls-cert-file) of O(conf_path).
    type: path
  tls_key_file:
    description: Key of O(tls_cert_file).
    type: path
  tls_ca_file:
    description: CA bundle to verify Redis with (and, with C(reload_tls), the one to load); default the C(tls-ca-cert-file) of O(conf_path).
    type: path
  verify_server:
    description:
      - Verify the certificate Redis presents.
      - A Redis that still serves an expired certificate (a fleet back from a long shutdown) is reached without
        checking it whatever this says, so the new one can be loaded (the connection is to this host's loopback and
        logs in with the admin password); V(false) skips the check for every other failure too.
    type: bool
    default: true
  desired_conf:
    description: With C(config), the new redis.conf text. Never logged (it may hold secrets).
    type: str
  expect_cert:
    description: With C(check), the certificate file a new connection must be presented.
    type: path
  drain_timeout:
    description: With C(close_plain), or C(users) and O(default_user=off), how long to wait for clients to move, in seconds.
    type: int
    default: 0
  users:
    description: With C(users), the ACL users.
    type: list
    elements: dict
    suboptions:
      name:
        description: User name (letters, digits, dot, dash, underscore).
        type: str
        required: true
      password:
        description: Its password (at least 16 characters); only its SHA-256 reaches Redis. Never logged.
        type: str
      rules:
        description: ACL rules other than passwords and on/off, for example C(~fleet:* -@all +@read).
        type: str
        default: ''
      enabled:
        description: V(false) turns the user off and closes its connections at once.
        type: bool
        default: true
  purge:
    description: With C(users), delete every user not listed (except C(default) and O(login_user)).
    type: bool
    default: false
  default_user:
    description:
      - With C(users), what happens to the C(default) user (the shared C(requirepass)).
      - C(off) turns it off once no client uses it (waiting up to O(drain_timeout)); while clients still use it
        it stays on and RV(default_clients) lists them. C(unchanged) leaves it as it is.
    type: str
    choices: ['off', unchanged]
    default: unchanged
seealso:
  - module: fleetpki.mtls.pki_leaf
'''

EXAMPLES = r'''
- name: Apply the new redis.conf to the running Redis
  fleetpki.mtls.redis_admin:
    command: config
    login_password: "{{ fleetpki_redis_admin_password }}"
    desired_conf: "{{ lookup('ansible.builtin.template', 'redis.conf.j2') }}"

- name: A worker's own ACL user, allowed only the queue
  fleetpki.mtls.redis_admin:
    command: users
    login_password: "{{ fleetpki_redis_admin_password }}"
    users:
      - name: worker1
        password: "{{ worker1_redis_password }}"
        rules: "~fleet:* resetchannels -@all +@connection +@read +@write +@keyspace -@admin -@dangerous"

- name: Check that a new mTLS connection presents the installed certificate
  fleetpki.mtls.redis_admin:
    command: check
    login_password: "{{ fleetpki_redis_admin_password }}"
    expect_cert: /etc/redis/tls/redis-cert.pem
'''

RETURN = r'''
reachable:
  description: With C(config), whether Redis could be reached and logged in to.
  returned: command is config
  type: bool
runtime:
  description: With C(config), false when only a restart can apply the new file.
  returned: command is config
  type: bool
reason:
  description: With C(config), why not at runtime.
  returned: command is config
  type: str
changed_settings:
  description: With C(config), the directives that differ (and were set, unless check mode).
  returned: command is config
  type: list
  elements: str
plain_port_kept:
  description: With C(config), the plaintext port kept open while its clients move (0 when none).
  returned: command is config
  type: int
plain_clients:
  description: Addresses of the clients on the plaintext port.
  returned: command is config or close_plain
  type: list
  elements: str
ping:
  description: With C(check), the answer to PING.
  returned: command is check
  type: str
presented:
  description: With C(check) and O(expect_cert), what the new connection was presented.
  returned: command is check and expect_cert is set
  type: str
created:
  description: With C(users), users created.
  returned: command is users
  type: list
  elements: str
updated:
  description: With C(users), users whose password, rules or state changed.
  returned: command is users
  type: list
  elements: str
disabled:
  description: With C(users), users turned off (their connections were closed).
  returned: command is users
  type: list
  elements: str
deleted:
  description: With C(users) and O(purge), users deleted.
  returned: command is users
  type: list
  elements: str
default_user:
  description: With C(users), whether the C(default) user is C(on) or C(off) after this run.
  returned: command is users
  type: str
default_clients:
  description: With C(users) and O(default_user=off), clients still using the C(default) user (it stays on).
  returned: command is users
  type: list
  elements: str
login_user:
  description: The user this run logged in as.
  returned: command is config or users
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetpki.mtls.plugins.module_utils._redis.admin import AdminError
from ansible_collections.fleetpki.mtls.plugins.module_utils._redis.commands import run


def main():
    module = AnsibleModule(
        argument_spec=dict(
            command=dict(type='str', required=True, choices=['config', 'reload_tls', 'check', 'close_plain', 'users']),
            conf_path=dict(type='path', default='/etc/redis/redis.conf'),
            login_user=dict(type='str', default='fleetpki-admin'),
            login_password=dict(type='str', no_log=True),
            legacy_password=dict(type='str', no_log=True),
            tls_cert_file=dict(type='path'),
            tls_key_file=dict(type='path'),
            tls_ca_file=dict(type='path'),
            verify_server=dict(type='bool', default=True),
            desired_conf=dict(type='str', no_log=True),
            expect_cert=dict(type='path'),
            drain_timeout=dict(type='int', default=0),
            # no_log as a whole: Ansible logs an option to the host's journal as str(value), where a password with a
            # backslash or a quote is escaped and escapes the mask (tests/unit/plugins/modules/test_module_logging.py).
            users=dict(type='list', elements='dict', no_log=True, options=dict(
                name=dict(type='str', required=True),
                password=dict(type='str', no_log=True),
                rules=dict(type='str', default=''),
                enabled=dict(type='bool', default=True),
            )),
            purge=dict(type='bool', default=False),
            default_user=dict(type='str', default='unchanged', choices=['off', 'unchanged']),
        ),
        required_if=[('command', 'reload_tls', ('tls_cert_file', 'tls_key_file', 'tls_ca_file')),
                     ('command', 'config', ('desired_conf',)), ('command', 'users', ('users',))],
        supports_check_mode=True,
    )
    # Mask only the secrets in what is returned, not every user name and rule of the no_log users option.
    params = module.params
    module.no_log_values.intersection_update(
        [params['login_password'], params['legacy_password'], params['desired_conf']]
        + [user['password'] for user in params['users'] or [] if user.get('password')])
    try:
        result = run(module.params, module.check_mode)
    except AdminError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
