"""Enrollment of PXE-booted validation machines, against the real fleet-api.py on loopback with real TLS and the
real fleetpki-enroll script (openssl and curl): a machine with its one-time token gets a client certificate of
hours from the enrollment CA and posts its report with it, and nowhere else; a replayed, expired or another
machine's token is refused and logged; the fleet's root does not vouch for an enrolled machine; what the enrollment
CA signs cannot serve TLS, carry an address or a name outside its suffix."""
import datetime
import ipaddress
import os
import subprocess
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.fleetpki.mtls.plugins.module_utils import _fleet_enroll as fleet_enroll

from test_api_reload import Api, ROOT
from test_api_sites import Root, issue, make_ca, publish_crl

SCRIPT = ROOT / 'roles/api_tls/files/fleetpki-enroll.sh'
SUFFIX = 'enroll.fleetpki.internal'
MAC = '02:42:ac:1e:62:0f'
OTHER_MAC = '02:42:ac:1e:62:10'


class Lab:
    """A root, an issuing CA for the API, the enrollment CA under the root and the API serving both routes."""

    def __init__(self, tmp_path):
        self.pki, self.work = tmp_path / 'pki', tmp_path / 'api'
        self.tokens = self.work / 'tokens'
        for directory in (self.pki, self.work, self.tokens):
            directory.mkdir()
        make_ca(self.pki / 'root', common_name='Fleet Root CA')
        make_ca(self.pki / 'ca', issuer_dir=str(self.pki / 'root'), common_name='Fleet Issuing CA',
                name_constraints_permitted_dns=['localhost'], name_constraints_permitted_ip=['127.0.0.0/8'])
        # As the pki role makes it: an anchor of its own, trusted by the API alone.
        make_ca(self.pki / 'enroll', common_name='Fleet Enrollment CA', path_length=0,
                name_constraints_permitted_dns=[SUFFIX], name_constraints_excluded_ip=['0.0.0.0/0', '::/0'],
                usage='client')
        issue(self.pki / 'ca', self.work, 'api', 'server')
        issue(self.pki / 'ca', self.pki, 'client', 'client')
        for name in ('root', 'ca', 'enroll'):
            publish_crl(self.pki / name)
        (self.work / 'crl.pem').write_bytes(b''.join((self.pki / name / 'crl.pem').read_bytes()
                                                     for name in ('root', 'ca', 'enroll')))
        (self.pki / 'ca-cert.pem').write_bytes((self.pki / 'root' / 'ca-cert.pem').read_bytes())
        self.api = Api(self.work, Root(self.pki))
        self.api.write_env(API_TLS_CRL=str(self.work / 'crl.pem'),
                           API_CLIENT_CERT_ROUTES='/api/v1/enroll=optional,/api/v1/validation=required',
                           API_ENROLL_CA_CERT=str(self.pki / 'enroll' / 'ca-cert.pem'),
                           API_ENROLL_CA_KEY=str(self.pki / 'enroll' / 'ca-key.pem'),
                           API_ENROLL_TOKENS=str(self.tokens))
        assert 'reloaded' in self.api.reload()

    def grant(self, machine, seconds=600):
        """A token as playbooks/enrollment_token.yml mints it: the API host keeps only its digest."""
        token = fleet_enroll.new_token()
        (self.tokens / (fleet_enroll.token_digest(token) + '.json')).write_text(
            fleet_enroll.token_record(machine, time.time() + seconds))
        return token

    def enroll(self, token, machine, where):
        """fleetpki-enroll as the booted image runs it, the token on its (stand-in) kernel command line."""
        where.mkdir(exist_ok=True)
        (where / 'cmdline').write_text('BOOT_IMAGE=/vmlinuz quiet fleetpki.token=%s BOOTIF=01-%s\n'
                                       % (token, machine.replace(':', '-')))
        env = dict(os.environ, FLEETPKI_API='https://localhost:%d' % self.api.port,
                   FLEETPKI_CA=str(self.pki / 'ca-cert.pem'), FLEETPKI_CMDLINE=str(where / 'cmdline'),
                   FLEETPKI_DIR=str(where / 'run'))
        return subprocess.run(['sh', str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=60, check=False)

    def post(self, path, *cert):
        proc = subprocess.run(['curl', '-sS', '-w', '\n%{http_code}', '--cacert', str(self.pki / 'ca-cert.pem')]
                              + list(cert) + ['-X', 'POST', '-H', 'Content-Type: application/json',
                                              '-d', '{"mac": "%s", "result": "pass"}' % MAC,
                                              'https://localhost:%d%s' % (self.api.port, path)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=30,
                              check=False)
        body, dummy, status = proc.stdout.rpartition('\n')
        return status, body


REPORT = '/api/v1/validation/report'


def openssl_verify(anchor, cert, purpose):
    return subprocess.run(['openssl', 'verify', '-CAfile', str(anchor), '-untrusted', str(cert),
                           '-purpose', purpose, str(cert)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)


def test_a_machine_enrolls_once_with_its_token_and_reports_with_its_short_lived_certificate(tmp_path):
    lab = Lab(tmp_path)
    try:
        status, body = lab.post(REPORT)
        assert status == '403' and 'client certificate is required' in body, 'every report authenticated'
        token = lab.grant(MAC)
        done = lab.enroll(token, MAC, tmp_path / 'pxe')
        assert done.returncode == 0, done.stderr
        cert_pem = tmp_path / 'pxe' / 'run' / 'cert.pem'
        key_pem = tmp_path / 'pxe' / 'run' / 'key.pem'
        assert oct(key_pem.stat().st_mode & 0o777) == '0o600'
        chain = x509.load_pem_x509_certificates(cert_pem.read_bytes())
        leaf = chain[0]
        assert len(chain) == 2 and chain[1].subject == x509.load_pem_x509_certificate(
            (lab.pki / 'enroll' / 'ca-cert.pem').read_bytes()).subject
        assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == 'mac-0242ac1e620f'
        assert leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName) == ['mac-0242ac1e620f.' + SUFFIX]
        assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == \
            [ExtendedKeyUsageOID.CLIENT_AUTH]
        assert leaf.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc) <= datetime.timedelta(hours=4)
        assert 'OK' in openssl_verify(lab.pki / 'enroll' / 'ca-cert.pem', cert_pem, 'sslclient').stdout
        # The fleet's root does not vouch for it: Redis and every other host trust the root alone.
        assert 'OK' not in openssl_verify(lab.pki / 'ca-cert.pem', cert_pem, 'sslclient').stdout
        status, body = lab.post(REPORT, '--cert', str(cert_pem), '--key', str(key_pem))
        assert status == '202' and 'commonName=mac-0242ac1e620f' in body, body
        for route in ('/callback/report', '/api/v1/validation-admin'):
            status, body = lab.post(route, '--cert', str(cert_pem), '--key', str(key_pem))
            assert status == '403' and 'enrolled machine is for /api/v1/validation only' in body, (route, body)
        status, body = lab.post('/callback/report', '--cert', str(lab.pki / 'client-cert.pem'),
                                '--key', str(lab.pki / 'client-key.pem'))
        assert status == '202', 'a fleet client keeps the workers\' route'
        # The same token again (a replay, or a second boot reusing it): refused, logged, no certificate.
        again = lab.enroll(token, MAC, tmp_path / 'replay')
        assert again.returncode != 0 and 'already used' in again.stderr, again.stderr
        assert not (tmp_path / 'replay' / 'run' / 'cert.pem').exists()
        assert 'enrollment refused (409)' in lab.api.log.read_text()
        assert token not in lab.api.log.read_text(), 'the token is never logged'
    finally:
        lab.api.stop()


def test_a_foreign_or_expired_token_is_refused_and_logged(tmp_path):
    lab = Lab(tmp_path)
    try:
        token = lab.grant(MAC)
        foreign = lab.enroll(token, OTHER_MAC, tmp_path / 'other')
        assert foreign.returncode != 0 and 'bound to another machine' in foreign.stderr, foreign.stderr
        assert not (tmp_path / 'other' / 'run' / 'cert.pem').exists()
        # A foreign machine's attempt does not use the token up: its own machine still enrolls.
        assert lab.enroll(token, MAC, tmp_path / 'own').returncode == 0
        expired = lab.grant(MAC, seconds=-1)
        late = lab.enroll(expired, MAC, tmp_path / 'late')
        assert late.returncode != 0 and 'expired' in late.stderr, late.stderr
        unknown = lab.enroll(fleet_enroll.new_token(), MAC, tmp_path / 'unknown')
        assert unknown.returncode != 0 and 'unknown token' in unknown.stderr, unknown.stderr
        log = lab.api.log.read_text()
        assert log.count('enrollment refused (403)') == 3, log
        assert 'enrolled %s' % MAC in log
    finally:
        lab.api.stop()


def test_what_the_enrollment_ca_signs_is_a_client_named_under_its_suffix_and_nothing_else(tmp_path):
    """With the enrollment CA's key (a stolen API host), a server certificate, or one for an address or another
    name, fails OpenSSL's checks: the CA's EKU and nameConstraints limit it, not the API's good behaviour."""
    lab = Lab(tmp_path)
    lab.api.stop()
    ca_cert = x509.load_pem_x509_certificate((lab.pki / 'enroll' / 'ca-cert.pem').read_bytes())
    ca_key = serialization.load_pem_private_key((lab.pki / 'enroll' / 'ca-key.pem').read_bytes(), None)

    def forged(name, usage, sans):
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(hours=1))
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .sign(ca_key, hashes.SHA256()))
        path = tmp_path / ('%s.pem' % name)
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM))
        return path

    anchor = lab.pki / 'enroll' / 'ca-cert.pem'
    good = forged('good', ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName('m1.' + SUFFIX)])
    assert 'OK' in openssl_verify(anchor, good, 'sslclient').stdout
    server = forged('server', ExtendedKeyUsageOID.SERVER_AUTH, [x509.DNSName('api.' + SUFFIX)])
    assert 'unsuitable certificate purpose' in openssl_verify(anchor, server, 'sslserver').stdout
    address = forged('address', ExtendedKeyUsageOID.CLIENT_AUTH, [x509.IPAddress(ipaddress.ip_address('10.1.100.5'))])
    assert 'excluded subtree violation' in openssl_verify(anchor, address, 'sslclient').stdout
    other = forged('other', ExtendedKeyUsageOID.CLIENT_AUTH, [x509.DNSName('redis1.fleet.internal')])
    assert 'permitted subtree violation' in openssl_verify(anchor, other, 'sslclient').stdout
