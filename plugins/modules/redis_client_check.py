#!/usr/bin/python
# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: redis_client_check
short_description: Connect to Redis as a client does, with the identity in its .env
version_added: 0.3.0
description:
  - Reads a client's C(.env) on the host as data (never sourced or executed) and connects to Redis with what it
    names (C(REDIS_HOST), C(REDIS_PORT), C(REDIS_USERNAME), C(REDIS_PASSWORD), C(REDIS_USE_TLS), C(REDIS_TLS_CERT),
    C(REDIS_TLS_KEY), C(REDIS_TLS_CA)), with a real client, then C(PING)s.
  - C(redis-cli) gets the password on its standard input (C(--askpass)), never on its command line or in its
    environment. C(redis-py) checks the host name against the Redis certificate, as the reference worker does.
  - Changes nothing; the password never comes back in the result.
author:
  - fleetpki contributors (@fleetpki)
attributes:
  check_mode:
    support: full
    description: Runs the same read-only check.
  diff_mode:
    support: none
    description: It changes nothing.
options:
  env_file:
    description: The client's C(.env).
    type: path
    required: true
  client:
    description: Which client connects.
    type: str
    choices: [redis-cli, redis-py]
    default: redis-cli
  redis_host:
    description: Connect to this host name instead of C(REDIS_HOST) (to prove that a client expecting another name is refused).
    type: str
  timeout:
    description: Seconds before the attempt is given up.
    type: int
    default: 10
'''

EXAMPLES = r'''
- name: PING Redis with redis-cli and the worker's own identity
  fleetpki.mtls.redis_client_check:
    env_file: /opt/fleet-worker/.env
  register: redis_ping
'''

RETURN = r'''
ok:
  description: Whether Redis answered PONG.
  returned: always
  type: bool
detail:
  description: What the client answered or the error, without any secret.
  returned: always
  type: str
user:
  description: The ACL user the client logged in as (C(default) when the .env names none).
  returned: always
  type: str
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.fleetpki.mtls.plugins.module_utils._fleet_env import read_env, truthy


def redis_cli(module, env, host):
    argv = [module.get_bin_path('redis-cli', required=True), '-h', host, '-p', env.get('REDIS_PORT', '6379')]
    if truthy(env.get('REDIS_USE_TLS', 'false')):
        argv += ['--tls', '--cert', env['REDIS_TLS_CERT'], '--key', env['REDIS_TLS_KEY'], '--cacert', env['REDIS_TLS_CA']]
    if env.get('REDIS_USERNAME'):
        argv += ['--user', env['REDIS_USERNAME']]
    data = None
    if env.get('REDIS_PASSWORD'):
        argv += ['--askpass']
        data = env['REDIS_PASSWORD']
    argv += ['PING']
    rc, out, err = module.run_command(['timeout', str(module.params['timeout'])] + argv, data=data,
                                      binary_data=True)
    answer = (out.strip() or err.strip()).replace(env.get('REDIS_PASSWORD') or '\0', '***')
    return out.strip() == 'PONG', answer


def redis_py(module, env, host):
    try:
        import redis
    except ImportError:
        return False, 'redis-py is not installed on this host (python3-redis)'
    options = dict(host=host, port=int(env.get('REDIS_PORT', '6379')), username=env.get('REDIS_USERNAME') or None,
                   password=env.get('REDIS_PASSWORD') or None, socket_timeout=module.params['timeout'],
                   socket_connect_timeout=module.params['timeout'])
    if truthy(env.get('REDIS_USE_TLS', 'false')):
        options.update(ssl=True, ssl_certfile=env['REDIS_TLS_CERT'], ssl_keyfile=env['REDIS_TLS_KEY'],
                       ssl_ca_certs=env['REDIS_TLS_CA'], ssl_cert_reqs='required', ssl_check_hostname=True)
    try:
        return bool(redis.Redis(**options).ping()), 'PONG (host name %s checked)' % host
    except (redis.RedisError, OSError) as exc:
        return False, '%s: %s' % (type(exc).__name__, exc)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            env_file=dict(type='path', required=True),
            client=dict(type='str', default='redis-cli', choices=['redis-cli', 'redis-py']),
            redis_host=dict(type='str'),
            timeout=dict(type='int', default=10),
        ),
        supports_check_mode=True,
    )
    try:
        env = read_env(module.params['env_file'])
    except (IOError, OSError) as exc:
        module.fail_json(msg='cannot read %s: %s' % (module.params['env_file'], exc))
    if env.get('REDIS_PASSWORD'):
        module.no_log_values.add(env['REDIS_PASSWORD'])
    host = module.params['redis_host'] or env.get('REDIS_HOST', '')
    try:
        check = redis_cli if module.params['client'] == 'redis-cli' else redis_py
        ok, detail = check(module, env, host)
    except KeyError as exc:
        ok, detail = False, '%s names no %s' % (module.params['env_file'], exc)
    module.exit_json(changed=False, ok=ok, detail=detail, user=env.get('REDIS_USERNAME') or 'default')


if __name__ == '__main__':
    main()
