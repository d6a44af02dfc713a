"""rotate.yml, revoke.yml and ca_rollover.yml stop with a clear message before anything changes, on the bad
options an operator can type.

Same fake inventory as the preflight tests (hosts that cannot be reached): the check must fail first, and the
PKI directory must not be created.
"""
import pytest

from test_preflight import FLEET, assert_stopped_before_any_change, inventory, playbook

ROTATE_OPTIONS = 'services is a comma-separated list of redis, api, workers, clients, renew_days a whole number'
REVOKE_OPTIONS = ('Give exactly one of -e revoke_host=<inventory host>, -e revoke_serial=<hex serial> or -e '
                  'revoke_site=<site>')


@pytest.mark.parametrize('extra', [['-e', 'services=redis,mail'], ['-e', 'services='], ['-e', 'renew_days=soon'],
                                   ['-e', 'renew_days=-5'], ['-e', 'rotate_key=maybe']])
def test_rotate_refuses_unknown_services_and_bad_renew_days(tmp_path, extra):
    rc, output = playbook(inventory(tmp_path, FLEET), 'rotate.yml', *extra)
    assert_stopped_before_any_change(tmp_path, rc, output, ROTATE_OPTIONS)


@pytest.mark.parametrize('extra', [[], ['-e', 'revoke_host=pf-worker1', '-e', 'revoke_serial=4F2A'],
                                   ['-e', 'revoke_host=no-such-host'],
                                   ['-e', 'revoke_host=pf-worker1', '-e', 'revoke_service=mail'],
                                   ['-e', 'revoke_site=site-b'], ['-e', 'revoke_site=site-b', '-e', 'revoke_host=pf-worker1']])
def test_revoke_needs_one_known_host_or_one_serial(tmp_path, extra):
    rc, output = playbook(inventory(tmp_path, FLEET), 'revoke.yml', *extra)
    assert_stopped_before_any_change(tmp_path, rc, output, REVOKE_OPTIONS)
    assert 'Nothing was changed.' in output


@pytest.mark.parametrize('phase', ['2', '3', '4'])
def test_rollover_without_one_in_progress_starts_with_phase_1(tmp_path, phase):
    rc, output = playbook(inventory(tmp_path, FLEET), 'ca_rollover.yml', '-e', 'phase=%s' % phase)
    assert_stopped_before_any_change(tmp_path, rc, output, 'no rollover is in progress, so it starts with phase 1')
    assert 'Run -e phase=1 next' in ' '.join(output.split())
