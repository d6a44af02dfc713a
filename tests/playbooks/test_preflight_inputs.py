"""Inputs that would leak a key or weaken trust are found by the preflight, before anything changes.

Same fake inventory as test_preflight.py (hosts that cannot be reached): a refusal must come first, and the PKI
directory must not be created.
"""
import pytest

from test_preflight import FLEET, assert_stopped_before_any_change, inventory, playbook, site

CERT_NAME_RULE = 'must match ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'


@pytest.mark.parametrize('variable, value', [
    ('worker_tls_cert_name', '../ca/ca'),            # today: the CA key shipped to the worker
    ('redis_tls_cert_name', '/etc/shadow'),
    ('api_tls_cert_name', 'api..api1'),
    ('client_tls_cert_name', '.hidden'),
    ('worker_tls_cert_name', 'x' * 65),
])
def test_a_cert_name_that_leaves_the_issued_dir_is_refused(tmp_path, variable, value):
    rc, output = site(inventory(tmp_path, FLEET), '-e', '%s=%s' % (variable, value))
    assert_stopped_before_any_change(tmp_path, rc, output, CERT_NAME_RULE)
    flat = ' '.join(output.split())
    assert variable in flat and 'remove %s' % variable in flat, flat[-2000:]


def test_a_cert_name_of_another_host_is_refused(tmp_path):
    """A safe name is still refused when it is not the host's own certificate: a worker never gets Redis's key."""
    rc, output = site(inventory(tmp_path, FLEET), '-e', 'worker_tls_cert_name=redis-pf-redis1')
    assert_stopped_before_any_change(tmp_path, rc, output, "is not this host's certificate")
    flat = ' '.join(output.split())
    # Every worker is named: all problems of the fleet at once.
    assert 'pf-worker1: worker_tls_cert_name' in flat and 'pf-worker2: worker_tls_cert_name' in flat, flat[-2000:]


def test_the_own_cert_name_set_explicitly_passes(tmp_path):
    rc, output = playbook(inventory(tmp_path, FLEET, {'worker_tls_cert_name': 'worker-{{ inventory_hostname }}'}),
                          'pki.yml')
    assert rc == 0, output[-3000:]


SYSTEM_STORE_WARNING = 'goes into the system trust store of'


def test_system_store_without_name_constraints_warns(tmp_path):
    rc, output = playbook(inventory(tmp_path, FLEET), 'pki.yml')
    assert rc == 0, output[-3000:]
    flat = ' '.join(output.split())
    assert SYSTEM_STORE_WARNING in flat and 'pki_ca_name_constraints_permitted_dns' in flat, flat[-3000:]


@pytest.mark.parametrize('all_vars', [
    # A suffix permits that name and every name below it (no leading dot): here the test fleet's own names.
    {'pki_ca_name_constraints_permitted_dns': ['pf-redis1', 'pf-worker1', 'pf-worker2', 'pf-api1', 'pf-pxe1',
                                               'localhost']},
    {'pki_ca_name_constraints_permitted_ip': ['10.20.0.0/16']},
    {'ca_trust_system_store': False},
])
def test_no_warning_with_name_constraints_or_without_the_system_store(tmp_path, all_vars):
    rc, output = playbook(inventory(tmp_path, FLEET, all_vars), 'pki.yml')
    assert rc == 0, output[-3000:]
    assert SYSTEM_STORE_WARNING not in ' '.join(output.split()), output[-3000:]
