# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a module writes to the host's syslog / journal when it starts (AnsibleModule._log_invocation).

Ansible logs each option not marked no_log as str(value), masking the no_log values it knows by substring. A
secret in a suboption of a list or dict is written in its repr there: a PEM's newlines become the two characters
'\\n' and a backslash is doubled, so the mask no longer matches and the secret went to the journal. Every option
holding a secret suboption must be no_log itself.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib
import pkgutil

import pytest

from ansible.module_utils import basic

from ansible_collections.fleetpki.mtls.plugins import modules as modules_package
from ansible_collections.fleetpki.mtls.plugins.modules import redis_admin, tls_files

KEY_BODY = 'MIGHAgEAlogKEYbody\\Zq9'
KEY_TEXT = '-----BEGIN ' + 'PRIVATE KEY-----\n' + KEY_BODY + '\n-----END ' + 'PRIVATE KEY-----\n'
PASSWORD = 'Pw7-log\\pass\'word"Kx'


@pytest.fixture
def logged(monkeypatch):
    lines = []
    monkeypatch.setattr(basic.AnsibleModule, 'log', lambda self, msg, log_args=None: lines.append(msg))
    return lines


def test_tls_files_never_logs_a_key_or_a_secret_entry(tmp_path, run_module, logged):
    args = {'files': [{'path': str(tmp_path / 'key.pem'), 'secret_content': KEY_TEXT, 'mode': '0600'}],
            'env_files': [{'path': str(tmp_path / '.env'), 'mode': '0600', 'secret_entries': {'PASS': PASSWORD}}]}
    assert run_module(tls_files, args).rc == 0
    text = '\n'.join(logged)
    assert 'Invoked' in text, text
    for secret in (KEY_BODY, KEY_BODY.replace('\\', '\\\\'), 'logKEYbody', 'log\\\\pass', 'log\\pass'):
        assert secret not in text, text


def test_redis_admin_never_logs_a_user_password(run_module, logged):
    args = {'command': 'users', 'users': [{'name': 'worker1', 'password': PASSWORD}],
            'login_password': 'x', 'tls_cert_file': '/nonexistent', 'tls_key_file': '/nonexistent',
            'tls_ca_file': '/nonexistent', 'conf_path': '/nonexistent/redis.conf'}
    run_module(redis_admin, args)  # fails later (no Redis): the start is what is logged
    text = '\n'.join(logged)
    assert 'Invoked' in text, text
    assert 'log\\\\pass' not in text and 'log\\pass' not in text, text


def argument_specs():
    """Each module's argument_spec, captured as its main() builds the AnsibleModule."""
    specs = {}

    class Captured(Exception):
        pass

    def capture(self, argument_spec, *args, **kwargs):
        raise Captured(argument_spec)

    for info in pkgutil.iter_modules(list(modules_package.__path__)):
        module = importlib.import_module(modules_package.__name__ + '.' + info.name)
        original = basic.AnsibleModule.__init__
        basic.AnsibleModule.__init__ = capture
        try:
            module.main()
        except Captured as exc:
            specs[info.name] = exc.args[0]
        finally:
            basic.AnsibleModule.__init__ = original
    return specs


def secret_suboptions(option):
    found = []
    for name, sub in (option.get('options') or {}).items():
        if sub.get('no_log'):
            found.append(name)
        found.extend(name + '.' + inner for inner in secret_suboptions(sub))
    return found


def test_every_option_holding_a_secret_suboption_is_no_log():
    specs = argument_specs()
    assert 'tls_files' in specs and 'redis_admin' in specs and 'pki_leaf' in specs
    logged = ['%s: %s (%s)' % (module, name, ', '.join(secret_suboptions(option)))
              for module, spec in sorted(specs.items()) for name, option in sorted(spec.items())
              if secret_suboptions(option) and not option.get('no_log')]
    assert logged == [], logged
