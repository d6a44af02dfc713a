# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""host_key (keys born on their hosts) and tls_files' src, with real keys and files: the request the host returns
is what pki_leaf signs, the key stays in root's directory, and tls_files copies it only from a file root alone
could have written."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto
from ansible_collections.fleetpki.mtls.plugins.modules import host_key, tls_files

WORKER = {'name': 'worker-worker1', 'common_name': 'worker1', 'dns': ['worker1', 'Worker1.Example.com'],
          'ip': ['10.0.0.7']}


def args(tmp_path, **extra):
    value = {'dir': str(tmp_path / 'keys'), 'keys': [WORKER]}
    value.update(extra)
    return value


def key_of(tmp_path, name='worker-worker1'):
    return serialization.load_pem_private_key((tmp_path / 'keys' / ('%s-key.pem' % name)).read_bytes(), None)


def test_a_key_is_made_on_the_host_and_its_request_returned(tmp_path, run_module):
    run = run_module(host_key, args(tmp_path))
    assert run.rc == 0 and run.result['changed'] is True
    made = run.result['requests']['worker-worker1']
    assert made['key_made'] is True and made['reason'] == 'no key yet'
    assert 'PRIVATE KEY' not in run.stdout
    assert oct(os.stat(str(tmp_path / 'keys')).st_mode & 0o777) == '0o700'
    assert oct(os.stat(str(tmp_path / 'keys' / 'worker-worker1-key.pem')).st_mode & 0o777) == '0o600'
    csr = x509.load_pem_x509_csr(made['csr'].encode())
    assert csr.is_signature_valid
    assert crypto.public_key_der(csr.public_key()) == crypto.public_key_der(key_of(tmp_path))
    assert csr.subject.rfc4514_string() == 'CN=worker1'
    assert crypto.sans(csr) == (['worker1', 'worker1.example.com'], ['10.0.0.7'])


def test_a_rerun_returns_the_same_request_bytes_and_changes_nothing(tmp_path, run_module):
    first = run_module(host_key, args(tmp_path)).result['requests']['worker-worker1']['csr']
    again = run_module(host_key, args(tmp_path))
    assert again.result['changed'] is False and again.result['requests']['worker-worker1']['csr'] == first
    assert again.result['requests']['worker-worker1']['reason'] == 'kept'


def test_new_names_make_a_new_request_for_the_same_key(tmp_path, run_module):
    run_module(host_key, args(tmp_path))
    key = crypto.public_key_der(key_of(tmp_path))
    moved = dict(WORKER, ip=['10.0.0.8'])
    run = run_module(host_key, args(tmp_path, keys=[moved]))
    csr = x509.load_pem_x509_csr(run.result['requests']['worker-worker1']['csr'].encode())
    assert run.result['changed'] is True and crypto.sans(csr)[1] == ['10.0.0.8']
    assert crypto.public_key_der(csr.public_key()) == key == crypto.public_key_der(key_of(tmp_path))


def test_rotate_makes_a_new_key(tmp_path, run_module):
    run_module(host_key, args(tmp_path))
    old = crypto.public_key_der(key_of(tmp_path))
    run = run_module(host_key, args(tmp_path, rotate=True))
    assert run.result['requests']['worker-worker1']['reason'] == 'rotated'
    assert crypto.public_key_der(key_of(tmp_path)) != old


def test_a_key_file_another_user_could_read_is_replaced(tmp_path, run_module):
    run_module(host_key, args(tmp_path))
    old = crypto.public_key_der(key_of(tmp_path))
    os.chmod(str(tmp_path / 'keys' / 'worker-worker1-key.pem'), 0o644)
    run = run_module(host_key, args(tmp_path))
    assert 'not root\'s alone' in run.result['requests']['worker-worker1']['reason']
    assert crypto.public_key_der(key_of(tmp_path)) != old


def test_a_directory_others_can_reach_is_refused(tmp_path, run_module):
    (tmp_path / 'keys').mkdir(mode=0o755)
    os.chmod(str(tmp_path / 'keys'), 0o755)
    run = run_module(host_key, args(tmp_path))
    assert run.rc == 1 and "must be root's alone" in run.result['msg'] and 'chmod 0700' in run.result['msg']
    assert os.listdir(str(tmp_path / 'keys')) == []


def test_check_mode_makes_nothing(tmp_path, run_module):
    run = run_module(host_key, args(tmp_path), check_mode=True)
    assert run.result['changed'] is True and run.result['requests']['worker-worker1']['csr'] is None
    assert not (tmp_path / 'keys').exists()


def test_tls_files_copies_the_key_from_roots_directory_only(tmp_path, run_module):
    run_module(host_key, args(tmp_path))
    src = str(tmp_path / 'keys' / 'worker-worker1-key.pem')
    (tmp_path / 'svc').mkdir()
    target = str(tmp_path / 'svc' / 'client-key.pem')
    copy = {'files': [{'path': target, 'src': src, 'mode': '0600', 'backup': True}]}
    run = run_module(tls_files, copy, diff=True)
    assert run.rc == 0 and run.result['changed'] is True
    assert open(target, 'rb').read() == open(src, 'rb').read()
    assert 'PRIVATE KEY' not in run.stdout
    assert run_module(tls_files, copy).result['changed'] is False
    # A source others could write (or read) is refused before any write.
    os.chmod(src, 0o640)
    refused = run_module(tls_files, copy)
    assert refused.rc == 1 and "is not root's alone" in refused.result['msg']
    os.chmod(src, 0o600)
    os.chmod(str(tmp_path / 'keys'), 0o770)
    refused = run_module(tls_files, copy)
    assert refused.rc == 1 and 'src directory' in refused.result['msg']
    os.chmod(str(tmp_path / 'keys'), 0o700)
    # A link in root's directory is never followed.
    os.symlink(target, str(tmp_path / 'keys' / 'link-key.pem'))
    linked = run_module(tls_files, {'files': [{'path': target, 'src': str(tmp_path / 'keys' / 'link-key.pem'),
                                               'mode': '0600'}]})
    assert linked.rc == 1 and 'symbolic link' in linked.result['msg']
    missing = run_module(tls_files, {'files': [{'path': target, 'src': str(tmp_path / 'keys' / 'none-key.pem'),
                                                'mode': '0600'}]})
    assert missing.rc == 1 and 'make the key first' in missing.result['msg']


def test_key_and_certificate_in_one_file_from_the_hosts_key(tmp_path, run_module):
    run_module(host_key, args(tmp_path))
    src = tmp_path / 'keys' / 'worker-worker1-key.pem'
    (tmp_path / 'svc').mkdir()
    both = {'files': [{'path': str(tmp_path / 'svc' / 'client.pem'), 'src': str(src), 'append': 'CERT\n\n',
                       'mode': '0600'}]}
    assert run_module(tls_files, both).rc == 0
    assert (tmp_path / 'svc' / 'client.pem').read_bytes() == src.read_bytes().rstrip() + b'\nCERT\n'
    alone = run_module(tls_files, {'files': [{'path': str(tmp_path / 'svc' / 'x'), 'content': 'x', 'append': 'y',
                                              'mode': '0600'}]})
    assert alone.rc == 1 and 'append and certificate go with src only' in alone.result['msg']


def test_missing_parents_are_made_0755_and_the_key_directory_0700(tmp_path, run_module):
    run = run_module(host_key, args(tmp_path, dir=str(tmp_path / 'etc' / 'fleetpki' / 'keys')))
    assert run.rc == 0, run.result
    assert oct(os.stat(str(tmp_path / 'etc' / 'fleetpki')).st_mode & 0o777) == '0o755'
    assert oct(os.stat(str(tmp_path / 'etc' / 'fleetpki' / 'keys')).st_mode & 0o777) == '0o700'
    check = run_module(host_key, args(tmp_path, dir=str(tmp_path / 'other' / 'keys')), check_mode=True)
    assert check.result['changed'] is True and not (tmp_path / 'other').exists()


def test_rotate_names_makes_a_new_key_for_those_only(tmp_path, run_module):
    other = {'name': 'client-worker1', 'common_name': 'worker1', 'dns': ['worker1']}
    run_module(host_key, args(tmp_path, keys=[WORKER, other]))
    before = {name: crypto.public_key_der(key_of(tmp_path, name)) for name in ('worker-worker1', 'client-worker1')}
    run = run_module(host_key, args(tmp_path, keys=[WORKER, other], rotate_names=['worker-worker1']))
    assert run.result['requests']['worker-worker1']['reason'] == 'its certificate was revoked: a new key is made'
    assert run.result['requests']['client-worker1']['reason'] == 'kept'
    assert crypto.public_key_der(key_of(tmp_path, 'worker-worker1')) != before['worker-worker1']
    assert crypto.public_key_der(key_of(tmp_path, 'client-worker1')) == before['client-worker1']


def test_a_key_that_is_not_the_certificates_is_never_installed(tmp_path, run_module, pki):
    """The key made on the host and the certificate from the control node go in together only when they match."""
    from cryptography import x509 as real_x509
    ca_dir = str(tmp_path / 'ca')
    pki.make_ca(ca_dir)
    first = run_module(host_key, args(tmp_path)).result['requests']['worker-worker1']['csr']
    certs = [{'name': 'worker-worker1', 'common_name': 'worker1', 'dns': ['worker1', 'worker1.example.com'],
              'ip': ['10.0.0.7'], 'usage': 'client', 'csr': first}]
    pki.issue(ca_dir, certs, default_dir=str(tmp_path / 'issued'))
    cert = (tmp_path / 'issued' / 'worker-worker1-cert.pem').read_text()
    assert real_x509.load_pem_x509_certificate(cert.encode())
    (tmp_path / 'svc').mkdir()
    target = str(tmp_path / 'svc' / 'client-key.pem')
    src = str(tmp_path / 'keys' / 'worker-worker1-key.pem')
    install = {'files': [{'path': target, 'src': src, 'certificate': cert, 'mode': '0600'}]}
    assert run_module(tls_files, install).rc == 0
    # The host makes a new key the control node has not certified: refused, the service keeps its pair.
    run_module(host_key, args(tmp_path, rotate=True))
    installed = open(target, 'rb').read()
    refused = run_module(tls_files, install)
    assert refused.rc == 1 and 'not the one the certificate from the control node is for' in refused.result['msg']
    assert open(target, 'rb').read() == installed
