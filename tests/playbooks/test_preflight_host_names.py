"""A bad inventory host name is one more preflight problem, listed with all the others, not a filter error.

A certificate's DNS name follows RFC 1123 (labels of letters, digits and "-", not starting or ending with "-", at
most 63 characters each, 253 in all); upper case is accepted (DNS names are not case-sensitive: the certificate
carries the lower-case name). Same fake inventory as test_preflight.py: nothing may be created.
"""
import pytest

from test_preflight import FLEET, assert_stopped_before_any_change, inventory, playbook, site

BAD_NAMES = ['web_01', '-a', 'b-', 'x' * 64 + '.example', 'a..b']


def test_every_bad_name_is_listed_with_the_other_problems(tmp_path):
    groups = dict(FLEET, workers=['pf-worker1'] + BAD_NAMES[:3], pki_clients=BAD_NAMES[3:])
    rc, output = site(inventory(tmp_path, groups), '-e', 'worker_tls_redis_host=nowhere.example')
    assert_stopped_before_any_change(tmp_path, rc, output, 'problem(s):')
    flat = ' '.join(output.split())
    for name in BAD_NAMES:
        assert "inventory host '%s' is neither a host name nor an IP address" % name in flat, flat[-3000:]
    # The other problems of the same run are in the same message.
    assert 'pf-worker1: REDIS_HOST nowhere.example must be one of' in flat, flat[-3000:]
    assert 'Check the fleet' in flat and 'AnsibleFilterError' not in flat, flat[-3000:]


def test_a_bad_extra_san_is_listed_too(tmp_path):
    rc, output = site(inventory(tmp_path, FLEET, {'pki_extra_sans': ['bad_name.example']}))
    assert_stopped_before_any_change(tmp_path, rc, output, 'problem(s):')
    flat = ' '.join(output.split())
    assert "pf-worker1: SAN 'bad_name.example' (ansible_host or pki_extra_sans)" in flat, flat[-3000:]


@pytest.mark.parametrize('name', ['PF-Worker9', 'worker9.prov.example.com', '10.20.0.9'])
def test_good_names_pass(tmp_path, name):
    groups = dict(FLEET, workers=['pf-worker1', name])
    rc, output = playbook(inventory(tmp_path, groups), 'pki.yml')
    assert rc == 0, output[-3000:]
