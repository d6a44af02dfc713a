"""A worker roll says at the start of each batch which batch of how many it is and which hosts it holds.

Runs playbooks/roll.yml on an inventory of local hosts with --tags fleetpki_roll_batch: only the batch message
runs (no role task, nothing on this machine changes), with Ansible's own serial batching.
"""
import re

import pytest
import yaml

from test_preflight import FLEET, ROOT, assert_stopped_before_any_change, inventory, run_playbook, site

WORKERS = ['worker%d' % number for number in range(1, 10)]  # 9 workers


def roll(tmp_path, *extra):
    path = tmp_path / 'hosts.yml'
    path.write_text(yaml.safe_dump({'fleet': {
        'vars': {'ansible_connection': 'local', 'fleetpki_pki_dir': str(tmp_path / 'pki')},
        'children': {'workers': {'hosts': {host: None for host in WORKERS}}}}}))
    rc, output = run_playbook(path, ROOT / 'playbooks' / 'roll.yml', '--tags', 'fleetpki_roll_batch',
                              '-e', '{"fleetpki_roll_services": ["workers"]}', *extra)
    assert rc == 0, output[-3000:]
    assert not (tmp_path / 'pki').exists()
    return re.findall(r'"msg": "(batch [^"]*)"', output)


@pytest.mark.parametrize('batch_size, expected', [
    ('2', ['batch 1 of 5: worker1, worker2', 'batch 2 of 5: worker3, worker4', 'batch 3 of 5: worker5, worker6',
           'batch 4 of 5: worker7, worker8', 'batch 5 of 5: worker9']),          # the last batch is shorter
    ('25%', ['batch 1 of 5: worker1, worker2', 'batch 2 of 5: worker3, worker4', 'batch 3 of 5: worker5, worker6',
             'batch 4 of 5: worker7, worker8', 'batch 5 of 5: worker9']),        # 25% of 9, rounded down: 2
    ('50%', ['batch 1 of 3: worker1, worker2, worker3, worker4', 'batch 2 of 3: worker5, worker6, worker7, worker8',
             'batch 3 of 3: worker9']),
    ('9', ['batch 1 of 1: ' + ', '.join(WORKERS)]),
])
def test_each_batch_says_which_of_how_many(tmp_path, batch_size, expected):
    assert roll(tmp_path, '-e', 'fleetpki_worker_batch_size=%s' % batch_size) == expected


def test_default_one_worker_first_then_a_quarter_at_a_time(tmp_path):
    """The roll's time grows with its batches, not its workers: a canary, then 25% of the workers per batch."""
    assert roll(tmp_path) == ['batch 1 of 5: worker1', 'batch 2 of 5: worker2, worker3',
                              'batch 3 of 5: worker4, worker5', 'batch 4 of 5: worker6, worker7',
                              'batch 5 of 5: worker8, worker9']


def test_default_batch_of_one_under_limit(tmp_path):
    """--limit shrinks the play: the count is of the limited hosts."""
    assert roll(tmp_path, '--limit', 'worker2:worker7') == ['batch 1 of 2: worker2', 'batch 2 of 2: worker7']


@pytest.mark.parametrize('extra, shown', [
    ('fleetpki_worker_batch_size=x%', 'fleetpki_worker_batch_size="x%"'),
    ('fleetpki_worker_max_fail_percentage=abc', 'fleetpki_worker_max_fail_percentage=abc'),
    ('fleetpki_worker_max_fail_percentage=150', 'fleetpki_worker_max_fail_percentage=150'),
    ('{"fleetpki_worker_batch_size": [1, "ten"]}', 'fleetpki_worker_batch_size=[1, "ten"]'),
])
def test_a_batch_size_or_tolerance_the_roll_would_refuse_halfway_stops_before_any_change(tmp_path, extra, shown):
    """Ansible's serial or the batch's end would refuse these after the PKI and the first batches changed:
    site.yml refuses them first, naming the setting, the forms it takes and that nothing changed."""
    rc, output = site(inventory(tmp_path, FLEET), '-e', extra)
    assert_stopped_before_any_change(tmp_path, rc, output, shown)
    assert 'Nothing was changed' in output


def test_roll_run_alone_reads_every_cas_revoked_serials_at_each_batch(tmp_path):
    """roll.yml without pki.yml before it (a rerun of the roll alone) still knows the revoked serials, of the current
    CA and of the next one during a rollover, so a failed batch never puts a worker back on one (fail closed)."""
    for ca, serial in (('ca', '1A2B'), ('ca-next', '3C4D')):
        (tmp_path / 'pki' / ca).mkdir(parents=True)
        (tmp_path / 'pki' / ca / 'revoked.json').write_text(
            '{"revoked": [{"serial": "%s", "reason": "keyCompromise"}]}' % serial)
    path = tmp_path / 'hosts.yml'
    path.write_text(yaml.safe_dump({'fleet': {
        'vars': {'ansible_connection': 'local', 'fleetpki_pki_dir': str(tmp_path / 'pki')},
        'children': {'workers': {'hosts': {'worker1': None, 'worker2': None}}}}}))
    rc, output = run_playbook(path, ROOT / 'playbooks' / 'roll.yml', '-v', '--tags', 'fleetpki_roll_batch',
                              '-e', '{"fleetpki_roll_services": ["workers"]}')
    assert rc == 0, output[-3000:]
    flat = ' '.join(output.split())
    read = re.findall(r'Read the serials every CA of the fleet revoked\] \**.*?"pki_revoked_serials": \[([^\]]*)\]', flat)
    assert read == ['"1A2B", "3C4D"'] * 2, flat[-3000:]   # once per batch: the canary, then the rest
