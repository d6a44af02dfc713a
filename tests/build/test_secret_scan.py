"""The log scan CI runs on every converge (tests/tools/scan_log_for_secrets.py): a line of a private key fails it;
a certificate's lines do not, even where an unencrypted key holds the same public-key bytes (the enrollment CA)."""
import pathlib
import subprocess
import sys

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.ca import CaManager

SCAN = pathlib.Path(__file__).resolve().parents[2] / 'tests' / 'tools' / 'scan_log_for_secrets.py'


def scan(log, pki):
    return subprocess.run([sys.executable, str(SCAN), str(log), str(pki)], stdout=subprocess.PIPE,
                          universal_newlines=True, check=False)


def test_a_key_line_fails_the_scan_and_a_certificate_does_not(tmp_path):
    pki = tmp_path / 'pki'
    manager = CaManager(str(pki / 'enrollment-ca'), common_name='Fleet Enrollment CA', path_length=0,
                        name_constraints_permitted_dns=['enroll.fleetpki.internal'], usage='client',
                        name_constraints_excluded_ip=['0.0.0.0/0', '::/0'])
    manager.plan()
    manager.apply()
    cert = (pki / 'enrollment-ca' / 'ca-cert.pem').read_text()
    key_lines = (pki / 'enrollment-ca' / 'ca-key.pem').read_text().splitlines()[1:-1]
    log = tmp_path / 'converge.log'
    log.write_text('TASK [copy] +++ after: crl-issuers.pem\n' + cert)
    assert scan(log, pki).returncode == 0, scan(log, pki).stdout
    log.write_text('TASK [debug] ok: ' + key_lines[0] + '\n')
    result = scan(log, pki)
    assert result.returncode == 1 and 'a line of %s' % (pki / 'enrollment-ca' / 'ca-key.pem') in result.stdout
