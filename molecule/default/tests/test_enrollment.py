"""Enrollment of a PXE-booted validation machine in the two-site lab (fleetpki_enrollment): enrollment_token.yml mints
a one-time token for pxe1's MAC; pxe1 runs fleetpki-enroll as its booted image would (the token on its kernel command
line, the key in tmpfs), gets a client certificate of hours from the enrollment CA on api1 over server-auth TLS only,
and posts its report with it; with that certificate it reaches neither the workers' route nor Redis. A replayed
token, another machine's token, an expired one and one a newer token replaced are refused, and api1's journal says
why."""
import time

from fleetlab import CA_BUNDLE, PROJECT, assert_no_secret_in, put_file, run_playbook

from test_fleet import assert_refused_by_tls, redis_cli

API = 'https://172.30.98.14:8443'
SCRIPT = '/usr/local/bin/fleetpki-enroll'
CMDLINE = '/run/fleetpki-cmdline'
OUT = '/run/fleetpki'


def mint(pki_dir, machine, seconds=600):
    rc, output = run_playbook('playbooks/enrollment_token.yml', '-e', 'enroll_machine=%s' % machine,
                              '-e', 'enroll_token_seconds=%d' % seconds)
    assert rc == 0, output[-4000:]
    path = pki_dir / 'enrollment-tokens' / ('mac-%s.token' % machine.replace(':', ''))
    assert oct(path.stat().st_mode & 0o777) == '0o600'
    token = path.read_text().strip()
    assert token not in output, 'the token is in the playbook output'
    assert_no_secret_in({'enrollment_token.yml': output}, 'its output')
    return token


def enroll(host, token, machine):
    """fleetpki-enroll on pxe1 with the token on its (stand-in) kernel command line; returns its result."""
    put_file('pxe1', SCRIPT, (PROJECT / 'roles/api_tls/files/fleetpki-enroll.sh').read_text(), '0755')
    put_file('pxe1', CMDLINE, 'BOOT_IMAGE=/vmlinuz fleetpki.token=%s BOOTIF=01-%s\n'
             % (token, machine.replace(':', '-')), '0600')
    host.run('rm -rf %s' % OUT)
    return host.run('FLEETPKI_API=%s FLEETPKI_CA=%s FLEETPKI_CMDLINE=%s %s' % (API, CA_BUNDLE, CMDLINE, SCRIPT))


def post(host, route, mac, *cert):
    result = host.run('curl -sS --cacert %s %s -X POST -H "Content-Type: application/json" -d \'{"mac": "%s", '
                      '"result": "pass"}\' -w "\\n%%{http_code}" %s%s' % (CA_BUNDLE, ' '.join(cert), mac, API, route))
    return result.stdout + result.stderr


def journal(fleet, since):
    return fleet['api1'].check_output("journalctl -u fleet-api --since '@%d' --no-pager -o cat" % since)


def test_pxe1_enrolls_with_its_token_and_posts_its_report_with_its_certificate(fleet, pki_dir):
    pxe1, since = fleet['pxe1'], int(time.time()) - 1
    mac = pxe1.check_output('cat /sys/class/net/eth0/address')
    token = mint(pki_dir, mac)
    result = enroll(pxe1, token, mac)
    assert result.rc == 0, result.stderr
    assert pxe1.check_output('stat -c %%a %s/key.pem' % OUT) == '600'
    assert pxe1.check_output('findmnt -n -o FSTYPE --target %s' % OUT) == 'tmpfs', 'the key is kept in memory'
    text = pxe1.check_output('openssl x509 -in %s/cert.pem -noout -subject -ext extendedKeyUsage,subjectAltName '
                             '-startdate -enddate' % OUT)
    label = 'mac-' + mac.replace(':', '')
    assert 'CN = %s' % label in text and 'TLS Web Client Authentication' in text and 'Server' not in text, text
    assert 'DNS:%s.enroll.fleetpki.internal' % label in text, text
    hours = pxe1.run('openssl x509 -in %s/cert.pem -noout -checkend %d' % (OUT, 4 * 3600 + 60))
    assert hours.rc != 0, 'the certificate lasts longer than the 4 hours asked'
    cert = ('--cert', '%s/cert.pem' % OUT, '--key', '%s/key.pem' % OUT)
    posted = post(pxe1, '/api/v1/validation/report', mac, *cert)
    assert posted.endswith('202') and 'commonName=%s' % label in posted, posted
    # Only the API trusts the enrollment CA, and only for the validation routes.
    refused = post(pxe1, '/callback/report', mac, *cert)
    assert refused.endswith('403') and 'enrolled machine is for /api/v1/validation/ only' in refused, refused
    # Redis trusts the fleet's root alone: the handshake itself fails.
    assert_refused_by_tls(redis_cli(fleet, 'pxe1', 'PING', cert='%s/cert.pem' % OUT, key='%s/key.pem' % OUT, user=None))
    replay = enroll(pxe1, token, mac)
    assert replay.rc != 0 and 'already used' in replay.stderr, replay.stderr
    log = journal(fleet, since)
    assert 'enrolled %s' % mac in log and 'enrollment refused (409)' in log, log
    assert token not in log


def test_another_machines_token_and_an_expired_one_are_refused(fleet, pki_dir):
    pxe1, since = fleet['pxe1'], int(time.time()) - 1
    mac = pxe1.check_output('cat /sys/class/net/eth0/address')
    foreign = mint(pki_dir, '52:54:00:00:00:01')
    result = enroll(pxe1, foreign, mac)
    assert result.rc != 0 and 'bound to another machine' in result.stderr, result.stderr
    expiring = mint(pki_dir, mac, seconds=2)
    time.sleep(3)
    result = enroll(pxe1, expiring, mac)
    assert result.rc != 0 and 'expired' in result.stderr, result.stderr
    assert pxe1.run('test -e %s/cert.pem' % OUT).rc != 0
    log = journal(fleet, since)
    assert log.count('enrollment refused (403)') == 2, log


def test_a_new_token_for_a_machine_cancels_its_earlier_one(fleet, pki_dir):
    pxe1 = fleet['pxe1']
    mac = pxe1.check_output('cat /sys/class/net/eth0/address')
    earlier = mint(pki_dir, mac)
    later = mint(pki_dir, mac)
    result = enroll(pxe1, earlier, mac)
    assert result.rc != 0 and 'unknown token' in result.stderr, result.stderr
    assert enroll(pxe1, later, mac).rc == 0
