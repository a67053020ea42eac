# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import hashlib

import pytest
from ansible.errors import AnsibleFilterError
from cryptography.hazmat.primitives import serialization

from ansible_collections.theprotocol.operator.plugins.filter import x509pop_agent_id as flt


def test_agent_id_is_sha1_of_der(pki):
    cert = pki.make_cert(pki.make_key(), 'operator-acme', issuer=(pki.root, pki.root_key))
    der = cert.public_bytes(serialization.Encoding.DER)
    pem = pki.cert_pem(cert).decode()
    want = 'spiffe://example.com/spire/agent/x509pop/' + hashlib.sha1(der).hexdigest()
    assert flt.x509pop_agent_id(pem, 'example.com') == want
    assert flt.x509pop_agent_id(pem.encode()) == want
    assert flt.FilterModule().filters()['x509pop_agent_id'] is flt.x509pop_agent_id


@pytest.mark.parametrize('value, message', [
    ('not a certificate', 'no PEM certificate'),
    (None, 'must be a PEM certificate'),
])
def test_agent_id_errors(value, message):
    with pytest.raises(AnsibleFilterError, match=message):
        flt.x509pop_agent_id(value, 'example.com')


def test_agent_id_bad_trust_domain(pki):
    with pytest.raises(AnsibleFilterError, match='trust domain'):
        flt.x509pop_agent_id(pki.cert_pem(pki.root).decode(), 'Example.COM')
