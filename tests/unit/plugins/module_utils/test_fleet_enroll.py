"""The rules of enrollment both sides share (fleet_enroll.py): how a machine is named, and that a token works once,
for its machine, before it expires, with nothing consumed by a request that is refused for its own fault."""
import base64
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ansible_collections.fleetpki.mtls.plugins.module_utils import _fleet_enroll as enroll
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.ca import CaManager

MAC = '52:54:00:12:34:56'


@pytest.mark.parametrize('value, expected', [
    ('52:54:00:12:34:56', MAC), ('52-54-00-12-34-56', MAC), ('52:54:00:AB:CD:EF', '52:54:00:ab:cd:ef'),
    ('SN-LAB-0001', 'sn-lab-0001'), ('x', 'x'),
])
def test_a_machine_has_one_name(value, expected):
    assert enroll.machine_id(value) == expected


@pytest.mark.parametrize('value', ['', None, '52:54:00:12:34', '52:54-00:12:34:56', 'sn lab', '-sn', 'sn-', 'a.b',
                                   'x' * 61, '../x', 52])
def test_anything_else_is_refused_with_the_forms_named(value):
    with pytest.raises(ValueError, match='MAC address'):
        enroll.machine_id(value)


def test_a_mac_and_a_serial_of_the_same_digits_get_different_names():
    assert enroll.machine_label(MAC) == 'mac-525400123456'
    assert enroll.machine_label(enroll.machine_id('525400123456')) == 'sn-525400123456'


def csr(key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    request = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    return base64.b64encode(request.public_bytes(serialization.Encoding.DER)).decode('ascii')


@pytest.fixture
def enrollment(tmp_path):
    manager = CaManager(str(tmp_path / 'enroll'), common_name='Enrollment', path_length=0,
                        name_constraints_permitted_dns=['enroll.example'], usage='client',
                        name_constraints_excluded_ip=['0.0.0.0/0', '::/0'])
    manager.plan()
    manager.apply()
    (tmp_path / 'tokens').mkdir()
    return enroll.Enrollment(str(tmp_path / 'tokens'), str(tmp_path / 'enroll' / 'ca-cert.pem'),
                             str(tmp_path / 'enroll' / 'ca-key.pem'), 2)


def grant(enrollment, machine=MAC, seconds=60):
    token = enroll.new_token()
    with open('%s/%s.json' % (enrollment.tokens_dir, enroll.token_digest(token)), 'w') as handle:
        handle.write(enroll.token_record(machine, time.time() + seconds))
    return token


def test_a_bad_request_consumes_nothing(enrollment):
    token = grant(enrollment)
    for body, status in (({'token': token, 'machine': MAC, 'csr': 'bm90IGEgcmVxdWVzdA=='}, 400),
                         ({'token': token, 'machine': MAC, 'csr': csr(ec.generate_private_key(ec.SECP521R1()))}, 400),
                         ({'token': token, 'machine': 'nope!', 'csr': csr()}, 400),
                         ({'token': token, 'machine': '52:54:00:00:00:01', 'csr': csr()}, 403),
                         ('not an object', 400)):
        with pytest.raises(enroll.EnrollError) as refused:
            enrollment.enroll(body)
        assert refused.value.status == status, refused.value
    pem, machine, dummy = enrollment.enroll({'token': token, 'machine': MAC.upper(), 'csr': csr()})
    assert pem.count('BEGIN CERTIFICATE') == 2, 'the enrollment CA follows the certificate'
    leaf = x509.load_pem_x509_certificate(pem.encode('ascii'))  # the first one
    assert machine == MAC and leaf.subject.rfc4514_string() == 'CN=mac-525400123456'
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ['mac-525400123456.enroll.example'], 'the suffix of the CA'
    # cryptography 38 (Debian 12's) has no *_utc; newer ones deprecate the naive properties.
    lifetime = (getattr(leaf, 'not_valid_after_utc', None) or leaf.not_valid_after) - \
        (getattr(leaf, 'not_valid_before_utc', None) or leaf.not_valid_before)
    assert lifetime <= enroll.datetime.timedelta(hours=2, minutes=5)


def test_a_token_works_once_even_for_requests_at_the_same_moment(enrollment):
    """Eight API processes at once (each an Enrollment of its own, so no lock is shared): one rename wins."""
    token = grant(enrollment)
    outcomes = []
    processes = [enroll.Enrollment(enrollment.tokens_dir, enrollment.ca_cert_path, enrollment.ca_key_path, 2)
                 for dummy in range(8)]
    barrier = threading.Barrier(len(processes))

    def attempt(process):
        barrier.wait()
        try:
            process.enroll({'token': token, 'machine': MAC, 'csr': csr()})
            outcomes.append(201)
        except enroll.EnrollError as exc:
            outcomes.append(exc.status)

    threads = [threading.Thread(target=attempt, args=(process,)) for process in processes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [201] + [409] * 7


def test_an_expired_or_unknown_token_is_refused(enrollment):
    with pytest.raises(enroll.EnrollError, match='expired'):
        enrollment.enroll({'token': grant(enrollment, seconds=-1), 'machine': MAC, 'csr': csr()})
    with pytest.raises(enroll.EnrollError, match='unknown token'):
        enrollment.enroll({'token': enroll.new_token(), 'machine': MAC, 'csr': csr()})


def test_a_ca_that_cannot_sign_uses_no_token_up(enrollment, tmp_path):
    token = grant(enrollment, seconds=5000 * 86400)  # outlives the CA, for the request past the CA's end
    key = tmp_path / 'enroll' / 'ca-key.pem'
    saved = key.read_bytes()
    key.unlink()
    with pytest.raises(enroll.EnrollError, match='cannot be loaded on the API host') as refused:
        enrollment.enroll({'token': token, 'machine': MAC, 'csr': csr()})
    assert refused.value.status == 503
    key.write_bytes(saved)
    # An expired CA: the moment of the request past its end.
    with pytest.raises(enroll.EnrollError, match='ca_renew.yml'):
        enrollment.enroll({'token': token, 'machine': MAC, 'csr': csr()}, now=time.time() + 4000 * 86400)
    assert enrollment.enroll({'token': token, 'machine': MAC, 'csr': csr()})[1] == MAC


@pytest.mark.parametrize('record', ['[1]', '{"machine": "%s", "expires": "soon"}' % MAC, 'not json'])
def test_an_unreadable_record_is_refused_by_name(enrollment, record):
    token = enroll.new_token()
    with open('%s/%s.json' % (enrollment.tokens_dir, enroll.token_digest(token)), 'w') as handle:
        handle.write(record)
    with pytest.raises(enroll.EnrollError, match='unreadable record'):
        enrollment.enroll({'token': token, 'machine': MAC, 'csr': csr()})


@pytest.mark.parametrize('routes', [['api/v1/validation'], ['/api/v1/validation', 'health']])
def test_routes_that_are_not_path_prefixes_are_refused_by_name(enrollment, routes):
    with pytest.raises(ValueError, match='API_ENROLL_ROUTES is a comma-separated list of path prefixes'):
        enroll.Enrollment(enrollment.tokens_dir, enrollment.ca_cert_path, enrollment.ca_key_path, routes=routes)


def test_the_routes_and_the_issuer_are_the_enrollments_own():
    made = enroll.Enrollment('tokens', 'ca-cert.pem', 'ca-key.pem', routes=('/api/v1/validation/',),
                             issuer=((('commonName', 'Fleet Enrollment CA'),),))
    assert made.routes == ['/api/v1/validation/'] and made.issuer == ((('commonName', 'Fleet Enrollment CA'),),)


def test_routes_without_the_issuer_that_tells_enrolled_certificates_apart_are_refused():
    """Without the issuer the routes would hold no certificate to them: refused, not failing open."""
    with pytest.raises(ValueError, match='need the enrollment CA'):
        enroll.Enrollment('tokens', 'ca-cert.pem', 'ca-key.pem', routes=['/api/v1/validation/'])
