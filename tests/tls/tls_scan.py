"""Scan a TLS listener with sslyze and check it against Mozilla's profiles (ssl-config.mozilla.org 5.7, as
sslyze ships them), the way an auditor's scanner sees it. Used by tests/tls and by the molecule scenario's
test_tls_policy.py.

Only the listener's policy is judged here: versions, suites, groups, key sizes and the TLS vulnerability checks.
The certificate checks of the Mozilla checker are reported apart, not judged: the fleet's certificates come from
its own CA (never in Mozilla's trust store, so "path validation" always fails) and their key type and lifetime
are the pki role's settings (pki_leaf_key_type, pki_leaf_valid_days), not the listener's.
"""
import dataclasses
import pathlib
import tempfile

from sslyze import (ClientAuthenticationCredentials, Scanner, ScanCommand, ServerNetworkConfiguration,
                    ServerNetworkLocation, ServerScanRequest, ServerScanStatusEnum)
from sslyze.mozilla_tls_profile.tls_config_checker import (SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
                                                           MozillaTlsConfiguration,
                                                           ServerNotCompliantWithTlsConfiguration,
                                                           TlsConfigurationEnum,
                                                           check_server_against_tls_configuration)

# Issues of the Mozilla checker that are about the certificate (the PKI), not the listener's TLS policy.
CERTIFICATE_ISSUES = ('certificate_path_validation', 'certificate_curves', 'certificate_types',
                      'certificate_signatures', 'rsa_key_size', 'maximum_certificate_lifespan')
VERSIONS = (('ssl_2_0_cipher_suites', 'SSLv2'), ('ssl_3_0_cipher_suites', 'SSLv3'),
            ('tls_1_0_cipher_suites', 'TLSv1.0'), ('tls_1_1_cipher_suites', 'TLSv1.1'),
            ('tls_1_2_cipher_suites', 'TLSv1.2'), ('tls_1_3_cipher_suites', 'TLSv1.3'))


# sslyze probes SSLv2 and SSLv3 with its legacy OpenSSL client, which cannot load a client certificate file that
# carries a chain (the leaf, then its issuing CA: two tiers); those two probes present the leaf alone. A server
# requiring client certificates then fails them on the certificate if it got that far, so under two tiers they
# cannot tell an SSLv3 server from one without it; the one-CA scans (tests/tls) probe them fully, with the same
# OpenSSL builds and settings.
LEGACY_COMMANDS = {ScanCommand.SSL_2_0_CIPHER_SUITES, ScanCommand.SSL_3_0_CIPHER_SUITES}
_PEM_END = b'-----END CERTIFICATE-----'


class ScanFailed(Exception):
    pass


def _run(host, port, ip_address, commands, client_cert, client_key):
    credentials = None
    if client_cert:
        credentials = ClientAuthenticationCredentials(certificate_chain_path=pathlib.Path(client_cert),
                                                      key_path=pathlib.Path(client_key))
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(hostname=host, port=int(port), ip_address=ip_address),
        network_configuration=ServerNetworkConfiguration(tls_server_name_indication=host,
                                                         tls_client_auth_credentials=credentials),
        scan_commands=commands)
    scanner = Scanner()
    scanner.queue_scans([request])
    result = next(iter(scanner.get_results()))
    if result.scan_status != ServerScanStatusEnum.COMPLETED:
        raise ScanFailed('sslyze could not connect to %s:%s: %s' % (host, port, result.connectivity_error_trace))
    return result


def scan(host, port, client_cert=None, client_key=None, ip_address=None, profile='intermediate'):
    """Scan host:port (connecting to ip_address when given, with host as SNI) presenting the client cert when
    given (Redis and the API refuse a handshake without one). Returns a dict: versions, suites (per version),
    groups, policy_issues (the Mozilla checker's issues about the listener), certificate_issues."""
    commands = set(SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER) | {ScanCommand.ELLIPTIC_CURVES}
    data = pathlib.Path(client_cert).read_bytes() if client_cert else b''
    if data.count(_PEM_END) < 2:
        result = _run(host, port, ip_address, commands, client_cert, client_key)
    else:
        result = _run(host, port, ip_address, commands - LEGACY_COMMANDS, client_cert, client_key)
        with tempfile.NamedTemporaryFile(suffix='.pem') as leaf:
            leaf.write(data[:data.index(_PEM_END) + len(_PEM_END)] + b'\n')
            leaf.flush()
            legacy = _run(host, port, ip_address, LEGACY_COMMANDS, leaf.name, client_key)
        result = dataclasses.replace(result, scan_result=dataclasses.replace(
            result.scan_result, ssl_2_0_cipher_suites=legacy.scan_result.ssl_2_0_cipher_suites,
            ssl_3_0_cipher_suites=legacy.scan_result.ssl_3_0_cipher_suites))
    found = {'versions': [], 'suites': {}, 'groups': [], 'policy_issues': {}, 'certificate_issues': {}}
    for field, version in VERSIONS:
        attempt = getattr(result.scan_result, field)
        if attempt.result is None:
            raise ScanFailed('sslyze could not test %s on %s:%s: %s' % (version, host, port, attempt.error_trace))
        if attempt.result.is_tls_version_supported:
            found['versions'].append(version)
            found['suites'][version] = sorted(s.cipher_suite.name for s in attempt.result.accepted_cipher_suites)
    curves = result.scan_result.elliptic_curves.result
    found['groups'] = sorted(c.name for c in (curves.supported_curves or []))
    try:
        check_server_against_tls_configuration(
            result, MozillaTlsConfiguration.get(TlsConfigurationEnum(profile)))
    except ServerNotCompliantWithTlsConfiguration as exc:
        for name, text in exc.issues.items():
            found['certificate_issues' if name in CERTIFICATE_ISSUES else 'policy_issues'][name] = text
    return found


def summary(found):
    """One readable block for assertion messages and the test log."""
    lines = ['versions: %s' % ', '.join(found['versions']), 'groups: %s' % ', '.join(found['groups'])]
    lines += ['%s suites: %s' % (version, ', '.join(suites)) for version, suites in found['suites'].items()]
    lines += ['policy issue %s: %s' % item for item in sorted(found['policy_issues'].items())]
    lines += ['certificate (not judged) %s: %s' % item for item in sorted(found['certificate_issues'].items())]
    return '\n'.join(lines)
