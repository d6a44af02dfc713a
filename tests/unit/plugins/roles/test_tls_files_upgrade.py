# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Upgrading from the copy/lineinfile/template roles: a fleet they wrote is unchanged for the tls_files roles.

One localhost ansible-playbook run: the first play writes the files as the earlier roles' tasks did (copy, file,
lineinfile, template, as in ca_trust, client_tls, worker_tls, api_tls and redis_tls before tls_files), into a tmp
directory; the second play runs the roles' current file tasks on the same paths, and none may report a change.
Under tests/unit/plugins/roles, not modules/: ansible-test units runs it as controller code (ansible-playbook).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import grp
import json
import os
import pwd
import re
import subprocess
import sys

from ansible_collections.fleetpki.mtls.plugins.modules import tls_files

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..'))  # the collection's tree
# Where this copy of the collection is importable from (the checkout's collections/, or ansible-test's copy).
COLLECTIONS_PATH = tls_files.__file__.split(os.sep + 'ansible_collections' + os.sep, maxsplit=1)[0]
KEY = '-----BEGIN ' + 'PRIVATE KEY-----\nMIGHAgEAupgradeKEY\n-----END ' + 'PRIVATE KEY-----\n'
CERT = '-----BEGIN CERTIFICATE-----\nMIIBupgradeCERT\n-----END CERTIFICATE-----\n'
ME = pwd.getpwuid(os.getuid()).pw_name
MY_GROUP = grp.getgrgid(os.getgid()).gr_name
OPERATOR_ENV = '# operator settings\nLOG_LEVEL=debug\nREDIS_HOST=old-redis\nAPI_PORT=1\nLAST=no-newline'


def old_tasks():
    """The earlier roles' file tasks (as in the commit before tls_files), on the paths of the play's vars."""
    own = {'owner': ME, 'group': MY_GROUP}

    def directory(path, mode):
        return {'ansible.builtin.file': dict(own, path=path, state='directory', mode=mode)}

    def copy(src, dest, mode, backup=False):
        return {'ansible.builtin.copy': dict(own, src=src, dest=dest, mode=mode, backup=backup)}

    def env_file(path, mode, loops):
        """env.yml: its directory, touch, then one lineinfile (regexp ^KEY=) per entry of each loop."""
        tasks = [directory('{{ %s | dirname }}' % path, '0750'),
                 {'ansible.builtin.file': dict(own, path='{{ %s }}' % path, state='touch', mode=mode,
                                               modification_time='preserve', access_time='preserve')}]
        for loop in loops:
            tasks.append({'ansible.builtin.lineinfile': dict(own, path='{{ %s }}' % path, regexp='^{{ item.key }}=',
                                                             line='{{ item.key }}={{ item.value }}', mode=mode),
                          'loop': loop})
        return tasks

    return (
        # ca_trust
        [directory('{{ ca_trust_bundle_path | dirname }}', '0755'),
         copy('{{ ca_trust_bundle_src }}', '{{ ca_trust_bundle_path }}', '0644'),
         copy('{{ ca_trust_bundle_src }}', '{{ ca_trust_system_store_file }}', '0644')]
        # client_tls
        + [directory('{{ client_tls_dir }}', '0750'),
           copy('{{ t.src }}-key.pem', '{{ client_tls_dir }}/client-key.pem', '0600'),
           copy('{{ t.src }}-cert.pem', '{{ client_tls_dir }}/client-cert.pem', '0644'),
           {'ansible.builtin.copy': dict(own, dest='{{ client_tls_dir }}/client.pem', mode='0600', content=(
               "{{ lookup('ansible.builtin.file', t.src ~ '-key.pem') }}\n"
               "{{ lookup('ansible.builtin.file', t.src ~ '-cert.pem') }}\n"))}]
        # redis_tls certs.yml
        + [directory('{{ redis_tls_dir }}', '0750'),
           copy('{{ redis_tls_key_src }}', '{{ redis_tls_key_file }}', '0600', backup=True),
           copy('{{ redis_tls_cert_src }}', '{{ redis_tls_cert_file }}', '0644', backup=True)]
        # worker_tls certs.yml and env.yml (TLS entries, extra entries, then the password)
        + [directory('{{ worker_tls_dir }}', '0750'),
           copy('{{ t.src }}-key.pem', '{{ worker_tls_key_file }}', '0600', backup=True),
           copy('{{ t.src }}-cert.pem', '{{ worker_tls_cert_file }}', '0644', backup=True)]
        + env_file('worker_tls_env_file', '0640', [
            '{{ t.worker_env | dict2items }}', '{{ worker_tls_extra_env | dict2items }}',
            "{{ {'REDIS_PASSWORD': worker_tls_redis_password} | dict2items }}"])
        # api_tls certs.yml, tls_policy.yml and env.yml
        + [directory('{{ api_tls_dir }}', '0750'),
           copy('{{ t.src }}-key.pem', '{{ api_tls_key_file }}', '0600', backup=True),
           copy('{{ t.src }}-cert.pem', '{{ api_tls_cert_file }}', '0644', backup=True),
           copy('{{ api_tls_crl_src }}', '{{ api_tls_crl_file }}', '0644'),
           {'ansible.builtin.template': dict(own, src=ROOT + '/roles/api_tls/templates/openssl-tls-policy.cnf.j2',
                                             dest='{{ api_tls_openssl_conf }}', mode='0644')}]
        + env_file('api_tls_env_file', '0600', ['{{ t.api_env | combine(api_tls_extra_env) | dict2items }}'])
    )


def settings(tmp):
    pki = os.path.join(tmp, 'pki')
    host = os.path.join(tmp, 'host')
    own = {'worker_tls_user': ME, 'worker_tls_group': MY_GROUP, 'api_tls_user': ME, 'api_tls_group': MY_GROUP,
           'redis_tls_user': ME, 'redis_tls_group': MY_GROUP, 'client_tls_owner': ME, 'client_tls_group': MY_GROUP}
    values = dict(
        own,
        ca_trust_bundle_src=pki + '/ca-bundle.pem', ca_trust_bundle_path=host + '/fleetpki/ca-bundle.pem',
        ca_trust_system_store_file=host + '/store/fleetpki-ca.crt',
        client_tls_pki_issued_dir=pki, client_tls_cert_name='leaf', client_tls_dir=host + '/fleetpki/client',
        redis_tls_key_src=pki + '/leaf-key.pem', redis_tls_cert_src=pki + '/leaf-cert.pem', redis_tls_dir=host + '/redis-tls',
        redis_tls_ca_file=host + '/fleetpki/ca-bundle.pem',
        worker_tls_pki_issued_dir=pki, worker_tls_cert_name='leaf', worker_tls_dir=host + '/fleetpki/worker',
        worker_tls_env_file=host + '/fleet-worker/.env', worker_tls_ca_file=host + '/fleetpki/ca-bundle.pem',
        worker_tls_redis_host='redis1', worker_tls_redis_port=6379, worker_tls_redis_password='Upgrade-pass-1234567',
        worker_tls_callback_api_url='https://api1:8443/callback/report',
        worker_tls_extra_env={'OPERATOR_TOKEN': 'tok', 'REDIS_HOST': 'redis-extra'},
        api_tls_pki_issued_dir=pki, api_tls_cert_name='leaf', api_tls_dir=host + '/fleetpki/api',
        api_tls_env_file=host + '/fleet-api/.env', api_tls_crl_src=pki + '/crl-bundle.pem',
        api_tls_crl_issuers_src=pki + '/crl-issuers.pem', api_tls_enrollment_ca_src=pki + '/enrollment-ca',
        api_tls_ca_file=host + '/fleetpki/ca-bundle.pem', api_tls_extra_env={'API_PORT': '9443', 'EXTRA': 'x'},
        api_tls_client_cert_routes={'/api/v1/validation/': 'optional'},
    )
    t = {'src': pki + '/leaf',
         'worker_env': {
             'WORKER_NAME': '{{ inventory_hostname }}', 'REDIS_USERNAME': '{{ worker_tls_redis_username }}',
             'REDIS_HOST': '{{ worker_tls_redis_host }}', 'REDIS_PORT': '{{ worker_tls_redis_port }}',
             'REDIS_USE_TLS': '{{ worker_tls_redis_use_tls | bool | string | lower }}',
             'REDIS_TLS_CERT': '{{ worker_tls_cert_file }}', 'REDIS_TLS_KEY': '{{ worker_tls_key_file }}',
             'REDIS_TLS_CA': '{{ worker_tls_ca_file }}', 'PKI_CA_CERT': '{{ worker_tls_ca_file }}',
             'API_USE_TLS': '{{ worker_tls_api_use_tls | bool | string | lower }}', 'API_TLS_CA': '{{ worker_tls_ca_file }}',
             'API_TLS_CERT': '{{ worker_tls_cert_file }}', 'API_TLS_KEY': '{{ worker_tls_key_file }}',
             'CALLBACK_API_URL': '{{ worker_tls_callback_api_url }}'},
         'api_env': {
             'API_BIND': '{{ api_tls_bind }}', 'API_PORT': '{{ api_tls_port }}', 'API_USE_TLS': 'true',
             'API_TLS_CERT': '{{ api_tls_cert_file }}', 'API_TLS_KEY': '{{ api_tls_key_file }}',
             'API_TLS_CA': '{{ api_tls_ca_file }}', 'PKI_CA_CERT': '{{ api_tls_ca_file }}',
             'API_REQUIRE_CLIENT_CERT': '{{ api_tls_require_client_cert | bool | string | lower }}',
             'API_TLS_CRL': "{{ api_tls_crl_file if api_tls_crl_check | bool else '' }}",
             'API_TLS_MIN_VERSION': '{{ api_tls_min_version }}', 'API_TLS_CIPHERS': '{{ api_tls_ciphers }}',
             'API_TLS_OPENSSL_CONF': '{{ api_tls_openssl_conf }}',
             # Added to the .env after the earlier roles (the per-route policy): the one line an upgrade adds.
             'API_CLIENT_CERT_ROUTES': "{{ api_tls_client_cert_routes.items() | map('join', '=') | join(',') }}"}}
    os.makedirs(pki)
    for name, text in (('leaf-key.pem', KEY), ('leaf-cert.pem', CERT), ('ca-bundle.pem', CERT + CERT),
                       ('crl-bundle.pem', '-----BEGIN X509 CRL-----\nMIIBupgradeCRL\n-----END X509 CRL-----\n')):
        with open(os.path.join(pki, name), 'w') as handle:
            handle.write(text)
    for env in (values['worker_tls_env_file'], values['api_tls_env_file']):
        os.makedirs(os.path.dirname(env))
        with open(env, 'w') as handle:
            handle.write(OPERATOR_ENV)
    os.makedirs(host + '/store')
    return values, t


def test_a_fleet_the_earlier_roles_wrote_is_unchanged(tmp_path):
    values, t = settings(str(tmp_path))
    # The earlier roles' defaults these tasks read (the current roles take them from their own defaults).
    earlier_defaults = {
        'worker_tls_key_file': '{{ worker_tls_dir }}/client-key.pem', 'worker_tls_cert_file': '{{ worker_tls_dir }}/client-cert.pem',
        'worker_tls_redis_username': '{{ inventory_hostname }}', 'worker_tls_redis_use_tls': True, 'worker_tls_api_use_tls': True,
        'redis_tls_key_file': '{{ redis_tls_dir }}/redis-key.pem', 'redis_tls_cert_file': '{{ redis_tls_dir }}/redis-cert.pem',
        'api_tls_key_file': '{{ api_tls_dir }}/api-key.pem', 'api_tls_cert_file': '{{ api_tls_dir }}/api-cert.pem',
        'api_tls_crl_file': '{{ api_tls_dir }}/crl.pem', 'api_tls_crl_check': True, 'api_tls_bind': '0.0.0.0',
        'api_tls_port': 8443, 'api_tls_require_client_cert': True, 'api_tls_profile': 'intermediate',
        'api_tls_min_version': 'TLSv1.2', 'api_tls_ciphers': 'ECDHE-ECDSA-AES128-GCM-SHA256',
        'api_tls_ciphersuites': 'TLS_AES_128_GCM_SHA256', 'api_tls_groups': 'X25519:P-256:P-384',
        'api_tls_openssl_conf': '{{ api_tls_dir }}/openssl-tls-policy.cnf',
    }
    earlier = [{'name': 'earlier roles', 'hosts': 'localhost', 'gather_facts': False,
                'vars': dict(values, t=t, **earlier_defaults), 'tasks': old_tasks()}]
    first = run_playbook(tmp_path, 'earlier.yml', earlier)
    assert 'changed: [localhost]' in first
    same = dict((key, earlier_defaults[key]) for key in ('api_tls_ciphers', 'api_tls_ciphersuites', 'api_tls_groups'))
    # The keys the earlier roles shipped from the control node stay so here (fleetpki_host_keys: []); moving them to
    # keys born on their hosts is a rotation (molecule default checks that path).
    same['fleetpki_host_keys'] = []
    current = [{'name': 'current roles', 'hosts': 'localhost', 'gather_facts': False, 'vars': dict(values, **same),
                'tasks': [{'ansible.builtin.include_role': {'name': 'fleetpki.mtls.' + role, 'tasks_from': tasks_from}}
                          for role, tasks_from, dummy in CURRENT]}]
    second = run_playbook(tmp_path, 'current.yml', current)
    for role, dummy, task in CURRENT:
        assert 'TASK [fleetpki.mtls.%s : %s] ***' % (role, task) in second, second
    assert 'changed: [localhost]' not in second, second
    assert re.search(r'localhost +: ok=\d+ +changed=0 +unreachable=0 +failed=0', second), second
    assert KEY.split('\n')[1] not in first + second


# The current roles' file tasks: (role, tasks_from, name of its one tls_files task).
CURRENT = [
    ('ca_trust', 'main', 'Install the trust bundle and add the CA to the system trust store'),
    ('client_tls', 'main', 'Install the client key, certificate, and both as one file'),
    ('redis_tls', 'certs', 'Install the server key and certificate'),
    ('worker_tls', 'certs', 'Install the client key and certificate and write the worker .env'),
    ('api_tls', 'certs', 'Install the API key, certificate, CRL, TLS policy and .env'),
]


def run_playbook(tmp_path, name, plays):
    """ansible-playbook -v of this very Python (ansible-test's venv has no ansible-playbook script) on localhost,
    without the checkout's ansible.cfg (make exports ANSIBLE_CONFIG); returns its output."""
    path = tmp_path / name
    path.write_text(json.dumps(plays))
    env = dict((key, value) for key, value in os.environ.items() if key != 'ANSIBLE_CONFIG')
    env = dict(env, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_NOCOLOR='1', ANSIBLE_LOCALHOST_WARNING='0',
               ANSIBLE_INVENTORY_UNPARSED_WARNING='0', ANSIBLE_STDOUT_CALLBACK='ansible.builtin.default')
    proc = subprocess.run([sys.executable, '-m', 'ansible.cli.playbook', '-v', '-i', 'localhost,', '-c', 'local',
                           '-e', 'ansible_python_interpreter=' + sys.executable, str(path)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path), check=False)
    output = proc.stdout.decode()
    assert proc.returncode == 0, output[-4000:]
    return output


def test_redis_conf_rendered_on_the_control_node_is_what_the_template_module_wrote(tmp_path):
    """redis_tls writes redis.conf with tls_files from lookup('template') (write_conf.yml); the template module
    wrote it before. Same bytes for the constructs redis.conf.j2 uses (the managed header, trimmed blocks, loops,
    the last newline), so an upgraded Redis host sees no change and no restart."""
    template = tmp_path / 'conf.j2'
    template.write_text('{{ ansible_managed | comment }}\nport {{ port }}\n{% for user in users %}\n'
                        'user {{ user }} on\n{% endfor %}\n{% if port %}\ntls-port 6379\n{% endif %}\nlast line\n')
    earlier = tmp_path / 'earlier.conf'
    current = tmp_path / 'current.conf'
    plays = [{'name': 'render', 'hosts': 'localhost', 'gather_facts': False,
              'vars': {'port': 0, 'users': ['a', 'b']},
              'tasks': [{'ansible.builtin.template': {'src': str(template), 'dest': str(earlier), 'mode': '0640'}},
                        {'fleetpki.mtls.tls_files': {'files': [{
                            'path': str(current), 'mode': '0640',
                            'secret_content': "{{ lookup('ansible.builtin.template', '%s') }}" % template}]}}]}]
    run_playbook(tmp_path, 'render.yml', plays)
    assert current.read_bytes() == earlier.read_bytes()
