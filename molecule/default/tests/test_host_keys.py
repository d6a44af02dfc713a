"""Keys born on their hosts (the lab's default, fleetpki_host_keys): every service's private key was made on its own
host, in root's directory there, and is nowhere on the control node (issued/, backups) nor in any log."""
import hashlib
import subprocess

import pytest

from fleetlab import PKI_DIR, changed_counts, run_playbook

# (host, certificate name, the service's key file)
SERVICES = [('redis1', 'redis-redis1', '/etc/redis/tls/redis-key.pem'),
            ('worker1', 'worker-worker1', '/etc/fleetpki/worker/client-key.pem'),
            ('worker2', 'worker-worker2', '/etc/fleetpki/worker/client-key.pem'),
            ('api1', 'api-api1', '/etc/fleetpki/api/api-key.pem'),
            ('pxe1', 'client-pxe1', '/etc/fleetpki/client/client-key.pem')]
KEY_DIR = '/etc/fleetpki/keys'


def test_the_control_node_holds_no_key_of_the_fleet():
    issued = PKI_DIR / 'issued'
    wanted = sorted('%s-cert.pem' % name for dummy, name, dummy in SERVICES)
    assert sorted(path.name for path in issued.glob('*-cert.pem')) == wanted
    assert list(issued.glob('*key*')) == []
    # Nothing under the PKI dir but the CA's own key(s) is a private key.
    found = [str(path) for path in PKI_DIR.rglob('*') if path.is_file() and b'PRIVATE KEY' in path.read_bytes()
             and not path.name == 'ca-key.pem']
    assert found == []


@pytest.mark.parametrize('host, name, service_key', SERVICES)
def test_each_key_was_made_on_its_host_in_roots_directory(fleet, host, name, service_key):
    machine = fleet[host]
    key_dir = machine.file(KEY_DIR)
    assert (key_dir.user, key_dir.group, key_dir.mode) == ('root', 'root', 0o700)
    key = machine.file('%s/%s-key.pem' % (KEY_DIR, name))
    assert (key.user, key.mode) == ('root', 0o600)
    # The service runs on that very key, and its certificate on the control node is for it.
    on_host = machine.check_output('openssl pkey -in %s -pubout -outform DER | sha256sum' % key.path).split()[0]
    served_key = machine.check_output('openssl pkey -in %s -pubout -outform DER | sha256sum' % service_key).split()[0]
    assert on_host == served_key
    pubkey = subprocess.run(['openssl', 'x509', '-noout', '-pubkey', '-in', str(PKI_DIR / 'issued' / ('%s-cert.pem' % name))],
                            capture_output=True, check=True).stdout
    der = subprocess.run(['openssl', 'pkey', '-pubin', '-outform', 'DER'], input=pubkey, capture_output=True,
                         check=True).stdout
    assert hashlib.sha256(der).hexdigest() == on_host


def test_a_rerun_of_the_pki_play_keeps_every_key_and_changes_nothing(fleet):
    before = dict((host, fleet[host].check_output('sha256sum %s/%s-key.pem' % (KEY_DIR, name)))
                  for host, name, dummy in SERVICES)
    rc, output = run_playbook('playbooks/pki.yml')
    assert rc == 0, output[-3000:]
    assert set(changed_counts(output).values()) == {0}, output[output.rindex('PLAY RECAP'):]
    assert before == dict((host, fleet[host].check_output('sha256sum %s/%s-key.pem' % (KEY_DIR, name)))
                          for host, name, dummy in SERVICES)
