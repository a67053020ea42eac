# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The client certificates of the mtls_enforced probes, checked with real X.509 parsing and chain
verification (the same code that the checklist uses for the registry SVID)."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.parse

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist_probe as probe
from ansible_collections.theprotocol.operator.plugins.module_utils import _probe_certs as pc
from ansible_collections.theprotocol.operator.plugins.module_utils import _x509

AGENT_ID = 'spiffe://example.com/spire/agent/x509pop/0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33'


def _der_key(key):
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture(scope='module')
def agent(pki):
    key = pki.make_key()
    leaf = pki.make_cert(key, None, issuer=(pki.intermediate, pki.int_key), uris=[AGENT_ID])
    # As SPIRE 1.13 writes them: agent-data.json "svid" = base64 of PEM blocks; keys.json = base64 PKCS#8 DER.
    data = json.dumps(dict(svid=[base64.b64encode(pki.cert_pem(leaf)).decode(),
                                 base64.b64encode(pki.cert_pem(pki.intermediate)).decode()],
                           bundle=[], reattestable=True)).encode()
    other = pki.make_key()
    keys = json.dumps(dict(keys={'agent-svid-A': base64.b64encode(_der_key(other)).decode(),
                                 'agent-svid-B': base64.b64encode(_der_key(key)).decode()})).encode()
    return dict(key=key, leaf=leaf, data=data, keys=keys, other=other)


def test_self_signed_carries_the_registry_id_and_chains_to_nothing_but_itself(pki):
    cert_pem, key_pem = pc.self_signed(pki.registry_id, pki.now)
    cert = _x509.load_pem_chain(cert_pem)[0]
    assert _x509.svid_spiffe_id(cert)[0] == pki.registry_id
    assert cert.issuer == cert.subject and not _x509.is_ca(cert)
    assert _x509.key_matches_certificate(_x509.load_pem_key(key_pem), cert)
    with pytest.raises(_x509.X509Error):
        _x509.verify_chain(cert, [], [pki.root], now=pki.now)
    probe.tls_context_pem(cert_pem, key_pem)  # loadable by ssl


def test_foreign_ca_leaf_chains_to_its_own_ca_only(pki):
    chain_pem, key_pem = pc.foreign_ca(pki.registry_id, pki.now)
    leaf, ca = _x509.load_pem_chain(chain_pem)
    assert _x509.svid_spiffe_id(leaf)[0] == pki.registry_id
    assert _x509.is_ca(ca) and not _x509.is_ca(leaf) and leaf.issuer == ca.subject
    _x509.verify_chain(leaf, [], [ca], now=pki.now)
    with pytest.raises(_x509.X509Error):
        _x509.verify_chain(leaf, [ca], [pki.root], now=pki.now)
    assert _x509.key_matches_certificate(_x509.load_pem_key(key_pem), leaf)
    probe.tls_context_pem(chain_pem, key_pem)


def test_agent_svid_from_the_agent_data_dir_takes_the_matching_key(pki, agent):
    chain_pem, key_pem, spiffe_id = pc.agent_svid(agent['data'], agent['keys'])
    assert spiffe_id == AGENT_ID
    chain = _x509.load_pem_chain(chain_pem)
    assert chain[0] == agent['leaf'] and chain[1] == pki.intermediate
    _x509.verify_chain(chain[0], chain[1:], [pki.root], now=pki.now)  # chains to the bundle: only the allow-list refuses it
    assert _x509.key_matches_certificate(_x509.load_pem_key(key_pem), agent['leaf'])
    probe.tls_context_pem(chain_pem, key_pem)


def test_agent_svid_in_der_is_read_too(pki, agent):
    data = json.dumps(dict(svid=[base64.b64encode(agent['leaf'].public_bytes(serialization.Encoding.DER)).decode()]))
    assert pc.agent_svid(data.encode(), agent['keys'])[2] == AGENT_ID


@pytest.mark.parametrize('case, words', [
    ('no data', 'agent-data.json of the SPIRE agent is missing'),
    ('no keys', 'keys.json of the SPIRE agent is missing'),
    ('empty svid', 'holds no agent SVID'),
    ('garbage data', 'holds no readable agent SVID'),
    ('garbage keys', 'cannot be read'),
    ('no matching key', 'no key in keys.json matches'),
])
def test_agent_svid_errors_say_why_and_never_quote_a_key(agent, case, words):
    data, keys = agent['data'], agent['keys']
    only_other = json.dumps(dict(keys={'agent-svid-A': base64.b64encode(_der_key(agent['other'])).decode()})).encode()
    data, keys = {
        'no data': (None, keys), 'no keys': (data, b''), 'empty svid': (b'{"svid": []}', keys),
        'garbage data': (b'{"svid": ["!!"]}', keys), 'garbage keys': (data, b'[1, 2]'),
        'no matching key': (data, only_other)}[case]
    with pytest.raises(pc.ProbeCertError) as info:
        pc.agent_svid(data, keys)
    assert words in str(info.value)
    assert 'PRIVATE' not in str(info.value) and 'MII' not in str(info.value)


def test_forged_header_is_the_leaf_escaped_like_nginx(pki):
    pem = pki.cert_pem(pki.leaf, pki.intermediate)
    value = pc.escaped_header(pem)
    assert '\n' not in value and ' ' not in value and '%0A' in value
    decoded = urllib.parse.unquote(value).encode()
    assert x509.load_pem_x509_certificate(decoded) == pki.leaf
    with pytest.raises(pc.ProbeCertError):
        pc.escaped_header(b'not a certificate')


def test_tls_context_pem_leaves_no_file_behind(pki, tmp_path, monkeypatch):
    monkeypatch.setattr('tempfile.tempdir', str(tmp_path))
    context = probe.tls_context_pem(*pc.self_signed(pki.registry_id, pki.now))
    assert isinstance(context, ssl.SSLContext) and list(tmp_path.iterdir()) == []
