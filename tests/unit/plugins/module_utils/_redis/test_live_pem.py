# Copyright (c) fleetpki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The certificate redis_admin's health check expects Redis to present is the first of its file, also when the file
carries the issuing CA's after it (two tiers), whatever the leaf's length."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import binascii
import ssl

from ansible_collections.fleetpki.mtls.plugins.module_utils._pki import crypto
from ansible_collections.fleetpki.mtls.plugins.module_utils._pki.ca import CaManager, load_ca
from ansible_collections.fleetpki.mtls.plugins.module_utils._redis.live import first_cert_der


def test_the_first_certificate_of_a_chain_file_whatever_its_length(tmp_path):
    """A leaf whose DER length is a multiple of 3 has no base64 padding: decoding the whole file ran on into the
    next block (a 1-in-3 failure of the lab's Redis health check under two tiers)."""
    for name, kwargs in (('root', {}), ('site', {'issuer_dir': str(tmp_path / 'root'),
                                                 'name_constraints_permitted_dns': ['example.com']})):
        manager = CaManager(str(tmp_path / name), common_name='%s CA' % name, **kwargs)
        manager.plan()
        manager.apply()
    site = load_ca(str(tmp_path / 'site'))
    lengths = set()
    for serial in range(1, 200):
        key = crypto.generate_key('ec-p256')
        cert = crypto.sign(crypto.x509.CertificateBuilder().subject_name(site.cert.subject).issuer_name(site.cert.subject)
                           .public_key(key.public_key()).serial_number(serial)
                           .not_valid_before(crypto.not_before(site.cert)).not_valid_after(crypto.not_after(site.cert)),
                           site.key)
        der = cert.public_bytes(crypto.serialization.Encoding.DER)
        lengths.add(len(der) % 3)
        text = (crypto.cert_pem(cert) + site.cert_pem).decode()
        assert first_cert_der(text) == der
        if len(der) % 3 == 0:
            # The case the whole-file parse got wrong: it raised, or decoded into the next block.
            try:
                assert ssl.PEM_cert_to_DER_cert(text) != der
            except binascii.Error:
                pass
        if lengths == {0, 1, 2}:
            break
    assert 0 in lengths
