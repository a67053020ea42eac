# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization

from ansible_collections.theprotocol.operator.plugins.module_utils import _x509 as x

HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


@pytest.fixture(params=['cryptography40-api', 'cryptography38-api'], autouse=True)
def api_path(request, monkeypatch):
    """Every test runs on both paths: the modern API and the one Debian 12 hosts (cryptography 38) take."""
    if request.param == 'cryptography38-api':
        monkeypatch.setattr(x, 'MODERN_API', False)
    return request.param


# ----------------------------------------------------------------------------- import guard

def test_cryptography_present():
    assert x.HAS_CRYPTOGRAPHY is True
    assert x.CRYPTOGRAPHY_IMP_ERR is None
    x.require_cryptography()


def test_require_cryptography_missing(monkeypatch):
    monkeypatch.setattr(x, 'HAS_CRYPTOGRAPHY', False)
    with pytest.raises(x.X509Error, match=r'cryptography >= 38\.0 is required on the target host'):
        x.require_cryptography()
    with pytest.raises(x.X509Error, match='cryptography'):
        x.load_pem_chain(b'-----BEGIN CERTIFICATE-----')
    with pytest.raises(x.X509Error, match='cryptography'):
        x.load_pem_key(b'')
    with pytest.raises(x.X509Error, match='cryptography'):
        x.verify_chain(None, [], [])


# ----------------------------------------------------------------------------- loading

def test_load_pem_chain_order_and_str(pki):
    data = pki.cert_pem(pki.leaf, pki.intermediate)
    chain = x.load_pem_chain(data)
    assert chain == [pki.leaf, pki.intermediate]
    assert x.load_pem_chain(data.decode('ascii')) == chain


@pytest.mark.parametrize('data', [b'', None, b'hello', b'-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'])
def test_load_pem_chain_no_certificate(data):
    with pytest.raises(x.X509Error, match='The bundle contains no PEM certificate.*cert-writer'):
        x.load_pem_chain(data, 'bundle')


def test_load_pem_chain_damaged(pki):
    pem = pki.cert_pem(pki.leaf).decode('ascii')
    lines = pem.splitlines()
    damaged = '\n'.join([lines[0], lines[1][:10] + '!!!!', lines[-1]]) + '\n'
    with pytest.raises(x.X509Error, match='cannot be parsed.*damaged or truncated'):
        x.load_pem_chain(damaged)


@pytest.mark.parametrize('kind', ['ec', 'rsa', 'ed25519'])
def test_load_pem_key_kinds(pki, kind):
    key = pki.make_key(kind)
    loaded = x.load_pem_key(pki.key_pem(key))
    assert loaded.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
        == key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_load_pem_key_traditional_formats(pki):
    rsa_key = pki.make_key('rsa')
    pkcs1 = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption())
    assert b'BEGIN RSA PRIVATE KEY' in pkcs1
    x.load_pem_key(pkcs1)
    sec1 = pki.make_key('ec').private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                            serialization.NoEncryption())
    assert b'BEGIN EC PRIVATE KEY' in sec1
    x.load_pem_key(sec1.decode('ascii'))


def test_load_pem_key_encrypted(pki):
    enc = pki.leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.BestAvailableEncryption(b'correct horse'))
    with pytest.raises(x.X509Error, match='is encrypted'):
        x.load_pem_key(enc)


@pytest.mark.parametrize('data', [b'', None, b'not a key'])
def test_load_pem_key_missing(pki, data):
    with pytest.raises(x.X509Error, match='contains no PEM private key'):
        x.load_pem_key(data)
    with pytest.raises(x.X509Error, match='no PEM private key'):
        x.load_pem_key(pki.cert_pem(pki.leaf))


def test_load_pem_key_damaged_does_not_echo_content(pki):
    pem = pki.key_pem(pki.leaf_key).decode('ascii')
    lines = pem.splitlines()
    body = lines[1]
    damaged = '\n'.join([lines[0], body[:20] + 'AAAA', lines[-1]]) + '\n'
    with pytest.raises(x.X509Error, match='cannot be parsed as a private key') as info:
        x.load_pem_key(damaged)
    assert body[:20] not in str(info.value)


def test_key_matches_certificate(pki):
    assert x.key_matches_certificate(pki.leaf_key, pki.leaf) is True
    assert x.key_matches_certificate(pki.mismatched_key, pki.leaf) is False
    assert x.key_matches_certificate(pki.make_key('rsa'), pki.leaf) is False
    assert x.key_matches_certificate(pki.root_key, pki.root) is True


def test_key_matches_certificate_weird_key(pki):
    class NoKey:
        def public_key(self):
            raise TypeError('nope')
    assert x.key_matches_certificate(NoKey(), pki.leaf) is False


# ----------------------------------------------------------------------------- SPIFFE IDs

@pytest.mark.parametrize('spiffe_id, expected', [
    ('spiffe://example.com/service/registry-acme', ('example.com', '/service/registry-acme')),
    ('spiffe://example.com', ('example.com', '')),
    ('spiffe://a_b-c.0/Path.With_Mixed-Case/x', ('a_b-c.0', '/Path.With_Mixed-Case/x')),
    ('spiffe://td/spire/agent/x509pop/0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33',
     ('td', '/spire/agent/x509pop/0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33')),
])
def test_parse_spiffe_id_valid(spiffe_id, expected):
    assert x.parse_spiffe_id(spiffe_id) == expected


@pytest.mark.parametrize('spiffe_id, message', [
    ('', 'is empty'),
    (None, 'is empty'),
    ('https://example.com/service/x', 'not a SPIFFE ID'),
    ('SPIFFE://example.com/service/x', 'not a SPIFFE ID'),
    ('spiffe:/example.com/x', 'not a SPIFFE ID'),
    ('spiffe:///service/x', 'no trust domain'),
    ('spiffe://Example.com/x', 'invalid trust domain'),
    ('spiffe://exa mple.com/x', 'invalid trust domain'),
    ('spiffe://example.com:8443/x', 'user info or a port'),
    ('spiffe://user@example.com/x', 'user info or a port'),
    ('spiffe://example.com/x?y=1', 'query or fragment'),
    ('spiffe://example.com/x#frag', 'query or fragment'),
    ('spiffe://example.com/', 'empty path segment'),
    ('spiffe://example.com//x', 'empty path segment'),
    ('spiffe://example.com/x/', 'empty path segment'),
    ('spiffe://example.com/./x', r'"\." or "\.\."'),
    ('spiffe://example.com/x/..', r'"\." or "\.\."'),
    ('spiffe://example.com/x%20y', 'invalid path segment'),
    ('spiffe://example.com/caf\u00e9', 'invalid path segment'),
    ('spiffe://example.com/' + 'a' * 2048, 'longer than 2048 bytes'),
])
def test_parse_spiffe_id_invalid(spiffe_id, message):
    with pytest.raises(x.X509Error, match=message):
        x.parse_spiffe_id(spiffe_id)


@pytest.mark.parametrize('td', ['example.com', 'a', 'my_td-1.local'])
def test_validate_trust_domain_ok(td):
    assert x.validate_trust_domain(td) == td


@pytest.mark.parametrize('td, message', [
    ('', 'is empty'), (None, 'is empty'), ('Example.com', 'only lowercase'), ('a/b', 'only lowercase'),
    ('ex ample', 'only lowercase'),
])
def test_validate_trust_domain_bad(td, message):
    with pytest.raises(x.X509Error, match=message):
        x.validate_trust_domain(td)


def test_svid_spiffe_id(pki):
    assert x.svid_spiffe_id(pki.leaf) == (pki.registry_id, 'example.com', '/service/registry-acme')
    assert x.uri_sans(pki.leaf) == [pki.registry_id]
    assert x.spiffe_ids(pki.leaf) == [pki.registry_id]


def test_svid_spiffe_id_no_san(pki):
    cert = pki.make_cert(pki.make_key(), 'no-san', issuer=(pki.intermediate, pki.int_key))
    assert x.uri_sans(cert) == []
    with pytest.raises(x.X509Error, match='no URI SAN, so it is not an X.509-SVID'):
        x.svid_spiffe_id(cert)


def test_svid_spiffe_id_dns_only(pki):
    cert = pki.make_cert(pki.make_key(), 'dns', issuer=(pki.intermediate, pki.int_key), dns=['registry.example.com'])
    with pytest.raises(x.X509Error, match='no URI SAN'):
        x.svid_spiffe_id(cert)


def test_svid_spiffe_id_two_uris(pki):
    cert = pki.make_cert(pki.make_key(), None, issuer=(pki.intermediate, pki.int_key),
                         uris=[pki.registry_id, 'spiffe://example.com/service/other'])
    assert len(x.spiffe_ids(cert)) == 2
    with pytest.raises(x.X509Error, match='has 2 URI SANs.*exactly one'):
        x.svid_spiffe_id(cert)


def test_svid_spiffe_id_not_spiffe(pki):
    cert = pki.make_cert(pki.make_key(), None, issuer=(pki.intermediate, pki.int_key),
                         uris=['https://example.com/service/registry-acme'])
    assert x.spiffe_ids(cert) == []
    with pytest.raises(x.X509Error, match='not a SPIFFE ID'):
        x.svid_spiffe_id(cert)


def test_svid_spiffe_id_trust_domain_only(pki):
    cert = pki.make_cert(pki.make_key(), None, issuer=(pki.intermediate, pki.int_key), uris=['spiffe://example.com'])
    with pytest.raises(x.X509Error, match='trust domain ID .* without a path'):
        x.svid_spiffe_id(cert)


def test_svid_spiffe_id_wrong_trust_domain_still_parses(pki):
    assert x.svid_spiffe_id(pki.wrong_td_leaf)[1] == 'other.org'


# ----------------------------------------------------------------------------- names

@pytest.mark.parametrize('name', ['acme', 'a', '0', 'acme-registry-1', 'a' * 63, 'a1-b2'])
def test_validate_operator_name_ok(name):
    assert x.validate_operator_name(name) == name


@pytest.mark.parametrize('name', ['', None, 'Acme', '-acme', 'acme-', 'a' * 64, 'ac_me', 'ac.me', 'ac me', 'acmé', 42])
def test_validate_operator_name_bad(name):
    with pytest.raises(x.X509Error, match='RFC 1123 label'):
        x.validate_operator_name(name)


def test_registry_spiffe_id():
    assert x.registry_spiffe_id('example.com', 'acme') == 'spiffe://example.com/service/registry-acme'
    # What we build must parse back.
    assert x.parse_spiffe_id(x.registry_spiffe_id('lab.internal', 'op-1')) == ('lab.internal', '/service/registry-op-1')
    with pytest.raises(x.X509Error, match='RFC 1123'):
        x.registry_spiffe_id('example.com', 'ACME')
    with pytest.raises(x.X509Error, match='only lowercase'):
        x.registry_spiffe_id('Example.com', 'acme')


def test_x509pop_agent_spiffe_id(pki):
    der = pki.leaf.public_bytes(serialization.Encoding.DER)
    expected = 'spiffe://example.com/spire/agent/x509pop/' + hashlib.sha1(der).hexdigest()
    assert x.x509pop_agent_spiffe_id('example.com', pki.leaf) == expected
    assert x.parse_spiffe_id(expected)[1].startswith('/spire/agent/x509pop/')
    with pytest.raises(x.X509Error):
        x.x509pop_agent_spiffe_id('bad td', pki.leaf)


def test_fingerprints(pki):
    der = pki.root.public_bytes(serialization.Encoding.DER)
    assert x.sha1_fingerprint(pki.root) == hashlib.sha1(der).hexdigest()
    assert x.sha256_fingerprint(pki.root) == hashlib.sha256(der).hexdigest()


# ----------------------------------------------------------------------------- time

def test_time_helpers(pki):
    now = pki.now
    assert x.not_valid_before(pki.leaf) == now - HOUR
    assert x.not_valid_after(pki.leaf) == now + HOUR
    assert x.remaining_seconds(pki.leaf, now) == 3600
    assert x.remaining_seconds(pki.leaf, now + datetime.timedelta(seconds=0.5)) == 3599
    assert x.remaining_seconds(pki.expired_leaf, now) == -3600
    assert not x.is_expired(pki.leaf, now)
    assert x.is_expired(pki.expired_leaf, now)
    assert not x.is_not_yet_valid(pki.leaf, now)
    assert x.is_not_yet_valid(pki.future_leaf, now)
    # Boundaries are inclusive on both ends (RFC 5280).
    assert not x.is_expired(pki.leaf, now + HOUR)
    assert not x.is_not_yet_valid(pki.leaf, now - HOUR)
    # Naive datetimes are taken as UTC.
    assert x.remaining_seconds(pki.leaf, now.replace(tzinfo=None)) == 3600
    # Other time zones are converted.
    plus2 = datetime.timezone(datetime.timedelta(hours=2))
    assert x.remaining_seconds(pki.leaf, now.astimezone(plus2)) == 3600


def test_time_helpers_default_now(pki):
    real = pki.make_cert(pki.make_key(), 'now', not_before=datetime.datetime.now(datetime.timezone.utc) - HOUR,
                         not_after=datetime.datetime.now(datetime.timezone.utc) + HOUR)
    assert 3500 < x.remaining_seconds(real) <= 3600
    assert not x.is_expired(real)
    assert not x.is_not_yet_valid(real)


def test_naive_datetime_fallback():
    class Old:
        not_valid_before = datetime.datetime(2026, 1, 1)
        not_valid_after = datetime.datetime(2026, 1, 2)
    assert x.not_valid_before(Old()).tzinfo is datetime.timezone.utc
    assert x.isoformat(x.not_valid_after(Old())) == '2026-01-02T00:00:00Z'


def test_isoformat():
    plus2 = datetime.timezone(datetime.timedelta(hours=2))
    assert x.isoformat(datetime.datetime(2026, 6, 4, 14, 0, 1, 999, tzinfo=plus2)) == '2026-06-04T12:00:01Z'


# ----------------------------------------------------------------------------- extensions

def test_key_usage_and_ca_flags(pki):
    assert x.has_digital_signature(pki.leaf)
    assert not x.is_ca(pki.leaf)
    assert x.is_ca(pki.root)
    no_sign = pki.make_cert(pki.make_key(), 'nosign', issuer=(pki.intermediate, pki.int_key), key_usage='no_sign')
    assert not x.has_digital_signature(no_sign)
    no_ku = pki.make_cert(pki.make_key(), 'noku', issuer=(pki.intermediate, pki.int_key), key_usage=None,
                          basic_constraints=False)
    assert not x.has_digital_signature(no_ku)
    assert not x.is_ca(no_ku)


# ----------------------------------------------------------------------------- chain

def test_verify_chain_ok(pki):
    path = x.verify_chain(pki.leaf, [pki.intermediate], [pki.root], now=pki.now)
    assert path == [pki.leaf, pki.intermediate, pki.root]


def test_verify_chain_ok_several_anchors_and_extra_intermediates(pki):
    other_int_key = pki.make_key()
    other_int = pki.make_cert(other_int_key, 'unrelated', issuer=(pki.other_root, pki.other_root_key), ca=True)
    path = x.verify_chain(pki.leaf, [other_int, pki.intermediate], [pki.other_root, pki.root], now=pki.now)
    assert path[-1] == pki.root


def test_verify_chain_intermediate_in_bundle(pki):
    # SPIRE bundles may carry the intermediate as well: it is then the trust anchor.
    path = x.verify_chain(pki.leaf, [pki.intermediate], [pki.root, pki.intermediate], now=pki.now)
    assert path == [pki.leaf, pki.intermediate]


def test_verify_chain_directly_under_root(pki):
    leaf_key = pki.make_key('rsa')
    leaf = pki.make_cert(leaf_key, None, issuer=(pki.root, pki.root_key), uris=[pki.registry_id])
    assert x.verify_chain(leaf, [], [pki.root], now=pki.now) == [leaf, pki.root]


def test_verify_chain_ed25519(pki):
    root_key = pki.make_key('ed25519')
    root = pki.make_cert(root_key, 'ed-root', ca=True)
    leaf = pki.make_cert(pki.make_key('ed25519'), None, issuer=(root, root_key), uris=[pki.registry_id])
    assert x.verify_chain(leaf, [], [root], now=pki.now) == [leaf, root]


def test_verify_chain_default_now(pki):
    start = datetime.datetime.now(datetime.timezone.utc) - HOUR
    root_key = pki.make_key()
    root = pki.make_cert(root_key, 'now-root', ca=True, not_before=start, not_after=start + DAY)
    leaf = pki.make_cert(pki.make_key(), None, issuer=(root, root_key), not_before=start, not_after=start + DAY)
    assert x.verify_chain(leaf, None, [root]) == [leaf, root]


def test_verify_chain_wrong_bundle(pki):
    with pytest.raises(x.X509Error, match=r'No certificate in the trust bundle \(1 CA\(s\)\) or among the 1 '
                                          r'intermediate\(s\) issued .*chain does not lead to the bundle'):
        x.verify_chain(pki.leaf, [pki.intermediate], [pki.other_root], now=pki.now)


def test_verify_chain_missing_intermediate(pki):
    with pytest.raises(x.X509Error, match='issuer "CN=intermediate,O=SPIRE,C=US"'):
        x.verify_chain(pki.leaf, [], [pki.root], now=pki.now)


def test_verify_chain_empty_bundle(pki):
    with pytest.raises(x.X509Error, match='holds no CA certificate'):
        x.verify_chain(pki.leaf, [pki.intermediate], [], now=pki.now)


def test_verify_chain_forged_signature(pki):
    # Same issuer name as the real intermediate, signed by a different key.
    impostor_key = pki.make_key()
    impostor = pki.make_cert(impostor_key, 'intermediate', issuer=(pki.root, pki.root_key), ca=True)
    forged = pki.make_cert(pki.make_key(), None, issuer=(impostor, impostor_key), uris=[pki.registry_id])
    with pytest.raises(x.X509Error, match='does not lead to the bundle'):
        x.verify_chain(forged, [pki.intermediate], [pki.root], now=pki.now)
    # With the impostor shipped along it chains (the impostor is a real child of root).
    assert x.verify_chain(forged, [pki.intermediate, impostor], [pki.root], now=pki.now)[1] == impostor


def test_verify_chain_self_signed_leaf(pki):
    key = pki.make_key()
    selfsigned = pki.make_cert(key, 'self', uris=[pki.registry_id])
    with pytest.raises(x.X509Error, match='does not lead to the bundle'):
        x.verify_chain(selfsigned, [], [pki.root], now=pki.now)


def test_verify_chain_expired_leaf(pki):
    with pytest.raises(x.X509Error, match=r'The certificate "O=SPIRE,C=US" expired at 2026-06-04T11:00:00Z\. '
                                          'Fetch a fresh SVID'):
        x.verify_chain(pki.expired_leaf, [pki.intermediate], [pki.root], now=pki.now)


def test_verify_chain_not_yet_valid_leaf(pki):
    with pytest.raises(x.X509Error, match='is not valid before 2026-06-04T13:00:00Z.*clock'):
        x.verify_chain(pki.future_leaf, [pki.intermediate], [pki.root], now=pki.now)


def test_verify_chain_expired_intermediate(pki):
    key = pki.make_key()
    old_int = pki.make_cert(key, 'old-int', issuer=(pki.root, pki.root_key), ca=True,
                            not_before=pki.now - 10 * DAY, not_after=pki.now - DAY)
    leaf = pki.make_cert(pki.make_key(), None, issuer=(old_int, key), uris=[pki.registry_id])
    with pytest.raises(x.X509Error, match='CA certificate "CN=old-int,O=SPIRE,C=US" expired.*current trust bundle'):
        x.verify_chain(leaf, [old_int], [pki.root], now=pki.now)


def test_verify_chain_expired_root(pki):
    key = pki.make_key()
    root = pki.make_cert(key, 'old-root', ca=True, not_before=pki.now - 10 * DAY, not_after=pki.now - DAY)
    leaf = pki.make_cert(pki.make_key(), None, issuer=(root, key))
    with pytest.raises(x.X509Error, match='CA certificate .*old-root.* expired.*ask the parent frame'):
        x.verify_chain(leaf, [], [root], now=pki.now)


def test_verify_chain_issuer_not_ca(pki):
    not_ca_key = pki.make_key()
    not_ca = pki.make_cert(not_ca_key, 'not-a-ca', issuer=(pki.root, pki.root_key))
    leaf = pki.make_cert(pki.make_key(), None, issuer=(not_ca, not_ca_key))
    with pytest.raises(x.X509Error, match='not-a-ca.*is not a CA'):
        x.verify_chain(leaf, [not_ca], [pki.root], now=pki.now)


def test_verify_chain_issuer_without_basic_constraints(pki):
    key = pki.make_key()
    issuer = pki.make_cert(key, 'no-bc', issuer=(pki.root, pki.root_key), basic_constraints=False, key_usage='ca')
    leaf = pki.make_cert(pki.make_key(), None, issuer=(issuer, key))
    with pytest.raises(x.X509Error, match='basicConstraints CA:TRUE missing'):
        x.verify_chain(leaf, [issuer], [pki.root], now=pki.now)


def test_verify_chain_anchor_not_ca(pki):
    key = pki.make_key()
    anchor = pki.make_cert(key, 'leafy-anchor', key_usage='leaf')
    leaf = pki.make_cert(pki.make_key(), None, issuer=(anchor, key))
    with pytest.raises(x.X509Error, match='leafy-anchor.*is not a CA'):
        x.verify_chain(leaf, [], [anchor], now=pki.now)


def test_verify_chain_path_length(pki):
    # The intermediate has pathLen 0: a second intermediate below it breaks the constraint.
    sub_key = pki.make_key()
    sub = pki.make_cert(sub_key, 'sub-int', issuer=(pki.intermediate, pki.int_key), ca=True)
    leaf = pki.make_cert(pki.make_key(), None, issuer=(sub, sub_key), uris=[pki.registry_id])
    with pytest.raises(x.X509Error, match='allows 0 intermediate CA.*chain has 1'):
        x.verify_chain(leaf, [sub, pki.intermediate], [pki.root], now=pki.now)
    # Under the root (no pathLen), two levels are fine.
    sub2 = pki.make_cert(sub_key, 'sub-int', issuer=(pki.root, pki.root_key), ca=True, path_length=1)
    sub3_key = pki.make_key()
    sub3 = pki.make_cert(sub3_key, 'sub3', issuer=(sub2, sub_key), ca=True)
    leaf3 = pki.make_cert(pki.make_key(), None, issuer=(sub3, sub3_key))
    assert len(x.verify_chain(leaf3, [sub3, sub2], [pki.root], now=pki.now)) == 4


def test_verify_chain_ca_without_key_cert_sign(pki):
    key = pki.make_key()
    weak = pki.make_cert(key, 'weak-ca', issuer=(pki.root, pki.root_key), ca=True, key_usage='leaf')
    leaf = pki.make_cert(pki.make_key(), None, issuer=(weak, key))
    with pytest.raises(x.X509Error, match='without keyCertSign'):
        x.verify_chain(leaf, [weak], [pki.root], now=pki.now)


def test_verify_chain_too_long(pki, monkeypatch):
    monkeypatch.setattr(x, 'MAX_CHAIN_DEPTH', 1)
    with pytest.raises(x.X509Error, match='longer than 1 certificates'):
        x.verify_chain(pki.leaf, [pki.intermediate], [pki.root], now=pki.now)


def test_verify_chain_wrong_trust_domain_is_not_a_chain_question(pki):
    # Chain checks are about signatures, not names: the trust domain is checked separately.
    assert x.verify_chain(pki.wrong_td_leaf, [pki.intermediate], [pki.root], now=pki.now)
    with pytest.raises(x.X509Error):
        x.verify_chain(pki.other_leaf, [pki.intermediate], [pki.root], now=pki.now)


# ----------------------------------------------------------------------------- describe

def test_describe_certificate(pki):
    d = x.describe_certificate(pki.leaf, pki.now)
    assert d == {
        'subject': 'O=SPIRE,C=US',
        'issuer': 'CN=intermediate,O=SPIRE,C=US',
        'serial': format(pki.leaf.serial_number, 'x'),
        'not_before': '2026-06-04T11:00:00Z',
        'not_after': '2026-06-04T13:00:00Z',
        'remaining_seconds': 3600,
        'is_ca': False,
        'spiffe_id': pki.registry_id,
        'spiffe_ids': [pki.registry_id],
        'sha1_fingerprint': hashlib.sha1(pki.leaf.public_bytes(serialization.Encoding.DER)).hexdigest(),
        'sha256_fingerprint': hashlib.sha256(pki.leaf.public_bytes(serialization.Encoding.DER)).hexdigest(),
    }
    text = json.dumps(d)
    assert 'PRIVATE' not in text and 'BEGIN' not in text


def test_describe_certificate_ca_and_multi(pki):
    d = x.describe_certificate(pki.root, pki.now)
    assert d['is_ca'] is True and d['spiffe_id'] is None and d['spiffe_ids'] == []
    two = pki.make_cert(pki.make_key(), None, uris=['spiffe://a/x', 'spiffe://a/y'])
    assert x.describe_certificate(two)['spiffe_id'] is None


# ----------------------------------------------------------------------------- moved from test_checklist
# (the checklist's certificate helpers, _checklist_x509, are _x509's own functions now)

def test_checklist_chain_helpers_on_the_cryptography38_api(pki, monkeypatch):
    monkeypatch.setattr(x, 'MODERN_API', False)
    bundle = [pki.root]
    assert x.verify_chain(pki.leaf, [pki.intermediate], bundle, now=pki.now)[-1] == pki.root
    with pytest.raises(x.X509Error):
        x.verify_chain(pki.other_leaf, [], bundle, now=pki.now)
    with pytest.raises(x.X509Error):
        x.verify_chain(pki.expired_leaf, [pki.intermediate], bundle, now=pki.now)
    chain = x.load_pem_chain(pki.cert_pem(pki.leaf, pki.intermediate))
    assert [c.serial_number for c in chain] == [pki.leaf.serial_number, pki.intermediate.serial_number]
    with pytest.raises(x.X509Error) as info:
        x.load_pem_key(b'-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n')
    assert 'not a key' not in str(info.value)


# ----------------------------------------------------------------------------- the SVID verdict

def _written(pki, seconds):
    return pki.now - datetime.timedelta(seconds=seconds)


def test_svid_verdict_of_a_good_svid(pki):
    v = x.svid_verdict(pki.cert_pem(pki.leaf, pki.intermediate), pki.key_pem(pki.leaf_key), pki.cert_pem(pki.root),
                       pki.registry_id, written_at=_written(pki, 20), interval=15, min_remaining=600, now=pki.now)
    assert v['present'] is True and v['error'] is None
    assert (v['spiffe_id'], v['trust_domain'], v['spiffe_path']) == (pki.registry_id, 'example.com',
                                                                     '/service/registry-acme')
    assert v['spiffe_id_error'] is None and v['spiffe_id_matches'] is True
    assert v['serial'] == format(pki.leaf.serial_number, 'x')
    assert v['sha256_fingerprint'] == hashlib.sha256(pki.leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert (v['not_before'], v['not_after']) == ('2026-06-04T11:00:00Z', '2026-06-04T13:00:00Z')
    assert v['remaining_seconds'] == 3600
    assert v['expired'] is False and v['not_yet_valid'] is False and v['remaining_sufficient'] is True
    assert v['digital_signature'] is True and v['is_ca'] is False and v['intermediate_count'] == 1
    assert v['chain_ok'] is True and v['chain_error'] is None and v['bundle_ca_count'] == 1
    assert v['key_matches'] is True and v['key_error'] is None
    assert v['age_seconds'] == 20 and v['stale'] is False
    assert v['certificate'] == x.describe_certificate(pki.leaf, pki.now)
    text = json.dumps(v)
    assert 'PRIVATE' not in text and 'BEGIN' not in text


def test_svid_verdict_checks_only_what_it_is_given(pki):
    v = x.svid_verdict(pki.cert_pem(pki.leaf), now=pki.now)
    assert v['present'] and v['spiffe_id'] == pki.registry_id
    for key in ('spiffe_id_matches', 'chain_ok', 'chain_error', 'bundle_ca_count', 'key_matches', 'key_error',
                'remaining_sufficient', 'age_seconds', 'stale'):
        assert v[key] is None, key


@pytest.mark.parametrize('age, stale', [(0, False), (29, False), (30, False), (31, True), (300, True), (-5, False)],
                         ids=['just-written', 'within', 'at-the-limit', 'past-the-limit', 'old', 'clock-behind'])
def test_svid_verdict_one_staleness_rule(pki, age, stale):
    # Two intervals, no slack: cert-writer's own healthcheck rule (check.go: age >= 2x interval is unhealthy).
    assert x.STALE_AFTER_INTERVALS == 2 and x.stale_after(15) == 30
    v = x.svid_verdict(pki.cert_pem(pki.leaf), written_at=_written(pki, age), interval=15, now=pki.now)
    assert v['age_seconds'] == age and v['stale'] is stale
    assert x.is_stale(age, 15) is stale


def test_svid_verdict_stale_when_unknown_or_expired(pki):
    assert x.svid_verdict(pki.cert_pem(pki.leaf), interval=15, now=pki.now)['stale'] is True
    expired = x.svid_verdict(pki.cert_pem(pki.expired_leaf), written_at=pki.now, interval=15, now=pki.now)
    assert expired['expired'] is True and expired['age_seconds'] == 0 and expired['stale'] is True
    assert x.age_seconds(None) is None and x.is_stale(None, 300)


@pytest.mark.parametrize('data, words', [(None, 'The SVID file is missing.'), (b'', 'contains no PEM certificate'),
                                         (b'junk', 'contains no PEM certificate')])
def test_svid_verdict_unusable_svid(pki, data, words):
    v = x.svid_verdict(data, pki.key_pem(pki.leaf_key), pki.cert_pem(pki.root), pki.registry_id, interval=15,
                       now=pki.now)
    assert v['present'] is False and words in v['error']
    assert v['stale'] is True and v['chain_ok'] is None and v['key_matches'] is None


def test_svid_verdict_findings(pki):
    v = x.svid_verdict(pki.cert_pem(pki.other_leaf), pki.key_pem(pki.mismatched_key), pki.cert_pem(pki.root),
                       pki.registry_id, min_remaining=2 * 86400, now=pki.now)
    assert v['spiffe_id'] == 'spiffe://other.org/service/registry-acme' and v['spiffe_id_matches'] is False
    assert v['chain_ok'] is False and 'does not lead to the bundle' in v['chain_error'] and v['bundle_error'] is None
    assert v['key_matches'] is False and v['remaining_sufficient'] is False
    expired = x.svid_verdict(pki.cert_pem(pki.expired_leaf, pki.intermediate), bundle_pem=pki.cert_pem(pki.root),
                             min_remaining=0, now=pki.now)
    assert expired['remaining_seconds'] == -3600 and expired['remaining_sufficient'] is False
    assert 'expired at' in expired['chain_error']
    future = x.svid_verdict(pki.cert_pem(pki.future_leaf), now=pki.now)
    assert future['not_yet_valid'] is True and future['expired'] is False


def test_svid_verdict_not_an_svid(pki):
    key = pki.make_key()
    plain = pki.make_cert(key, 'plain', issuer=(pki.intermediate, pki.int_key), key_usage='no_sign')
    v = x.svid_verdict(pki.cert_pem(plain), expected_spiffe_id=pki.registry_id, now=pki.now)
    assert v['spiffe_id'] is None and 'no URI SAN' in v['spiffe_id_error'] and v['spiffe_id_matches'] is False
    assert v['digital_signature'] is False
    ca = x.svid_verdict(pki.cert_pem(pki.intermediate), now=pki.now)
    assert ca['is_ca'] is True


def test_svid_verdict_unusable_key_and_bundle_are_named_by_the_labels(pki):
    v = x.svid_verdict(pki.cert_pem(pki.leaf), b'-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n',
                       b'', now=pki.now, labels=('svid', 'my key', 'my bundle'))
    assert v['present'] and v['key_matches'] is None
    assert 'The my key cannot be parsed as a private key' in v['key_error'] and 'not a key' not in v['key_error']
    assert v['bundle_error'].startswith('The my bundle contains no PEM certificate')
    assert v['chain_ok'] is False and v['chain_error'] == v['bundle_error']


# ----------------------------------------------------------------------------- served vs written

def test_same_certificate_by_sha256_of_the_der(pki):
    served = x.der(pki.leaf)
    assert served == pki.leaf.public_bytes(serialization.Encoding.DER)
    fingerprint = x.sha256_fingerprint(pki.leaf)
    for written in (pki.leaf, pki.cert_pem(pki.leaf, pki.intermediate), pki.cert_pem(pki.leaf).decode(), fingerprint,
                    fingerprint.upper()):
        assert x.same_certificate(served, written) is True
    for written in (pki.expired_leaf, pki.cert_pem(pki.intermediate, pki.leaf), x.sha256_fingerprint(pki.root)):
        assert x.same_certificate(served, written) is False


def test_served_verdict(pki):
    svid_pem = pki.cert_pem(pki.leaf, pki.intermediate)
    same = x.served_verdict(x.der(pki.leaf), svid_pem, now=pki.now)
    assert same['matches_svid'] is True and same['error'] is None and same['svid_error'] is None
    assert same['serial'] == same['svid_serial'] == format(pki.leaf.serial_number, 'x')
    assert same['sha256_fingerprint'] == x.sha256_fingerprint(pki.leaf) and same['expired'] is False
    old = x.served_verdict(x.der(pki.expired_leaf), svid_pem, now=pki.now)
    assert old['matches_svid'] is False and old['expired'] is True
    assert (old['not_after'], old['svid_not_after']) == ('2026-06-04T11:00:00Z', '2026-06-04T13:00:00Z')
    by_fingerprint = x.served_verdict(x.der(pki.leaf), svid_sha256=x.sha256_fingerprint(pki.leaf), now=pki.now)
    assert by_fingerprint['matches_svid'] is True and by_fingerprint['svid_serial'] is None
    assert x.served_verdict(x.der(pki.leaf), now=pki.now)['matches_svid'] is None
    garbage = x.served_verdict(b'not a certificate', svid_pem)
    assert garbage['error'].startswith('The served certificate cannot be parsed') and garbage['matches_svid'] is False
    junk = x.served_verdict(x.der(pki.leaf), b'junk', label='SVID file svid.pem')
    assert 'The SVID file svid.pem contains no PEM certificate' in junk['svid_error'] and junk['matches_svid'] is None


# ----------------------------------------------------------------------------- every consumer, one rule

def test_checklist_and_incident_judge_staleness_and_the_served_certificate_alike(pki):
    from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist as cl
    from ansible_collections.theprotocol.operator.plugins.module_utils import _incident as inc
    running = dict(exists=True, running=True, status='running')
    fetch = ('2026-06-04T11:59:59.000000000Z 2026-06-04T11:59:59Z cert-writer: fetched SVID '
             'spiffe_id=spiffe://example.com/service/registry-acme serial=ab not_after=2026-06-04T13:00:00Z '
             'bundle_cas=1 dir=/certs\n')
    from ansible_collections.theprotocol.operator.plugins.module_utils import _logs
    for age in (29, 30, 31, 89, 91):
        written = _written(pki, age)
        files_stale = any('files on the volume were written' in e for e in cl.check_cert_writer_running(
            running, _logs.split_docker_log(fetch), written, 15, pki.now)['evidence'])
        incident = inc.svid_state(pki.cert_pem(pki.leaf), pki.registry_id, written, 15, pki.now)
        verdict = x.svid_verdict(pki.cert_pem(pki.leaf), written_at=written, interval=15, now=pki.now)
        assert files_stale is incident['stale'] is verdict['stale'] is (age > 30), age
    svid_pem = pki.cert_pem(pki.leaf, pki.intermediate)
    svid = inc.svid_state(svid_pem, pki.registry_id, pki.now, 15, pki.now)
    for served, matches in ((pki.leaf, True), (pki.expired_leaf, False)):
        assert inc.served_state(x.der(served), svid)['matches_svid'] is matches
        assert (cl.check_served_svid_current(x.der(served), None, svid_pem, pki.now)['status'] == 'pass') is matches
        assert x.served_verdict(x.der(served), svid_pem)['matches_svid'] is matches


def test_import_without_cryptography():
    # Run in a fresh interpreter where importing cryptography fails.
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from ansible_collections.theprotocol.operator.plugins.module_utils import _x509 as x\n"
        "assert x.HAS_CRYPTOGRAPHY is False\n"
        "assert 'ImportError' in x.CRYPTOGRAPHY_IMP_ERR or 'ModuleNotFoundError' in x.CRYPTOGRAPHY_IMP_ERR\n"
        "assert x.parse_spiffe_id('spiffe://example.com/a') == ('example.com', '/a')\n"
        "try:\n"
        "    x.load_pem_chain(b'')\n"
        "except x.X509Error as exc:\n"
        "    print(exc)\n"
    )
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=False,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p)))
    assert proc.returncode == 0, proc.stderr
    assert 'cryptography >= 38.0 is required' in proc.stdout


# Moved from test_incident.py (was _incident.x509pop_state): one reading of the x509pop certificate.
def test_x509pop_state(pki):
    state = x.x509pop_verdict(pki.cert_pem(pki.expired_leaf), 'example.com', pki.now)
    assert state['expired']
    assert state['agent_spiffe_id'] == x.x509pop_agent_spiffe_id('example.com', pki.expired_leaf)
    assert not x.x509pop_verdict(pki.cert_pem(pki.leaf), 'example.com', pki.now)['expired']
    assert not x.x509pop_verdict(None, 'example.com', pki.now)['present']


def test_x509pop_verdict_reads_what_the_checklist_and_the_incident_need(pki):
    state = x.x509pop_verdict(pki.cert_pem(pki.leaf), None, pki.now)
    assert state['present'] and state['error'] is None and state['agent_spiffe_id'] is None
    assert not state['not_yet_valid'] and state['remaining_seconds'] > 0
    assert state['not_after'] == x.isoformat(x.not_valid_after(pki.leaf))
    early = x.x509pop_verdict(pki.cert_pem(pki.leaf), None, x.not_valid_before(pki.leaf) - datetime.timedelta(1))
    assert early['not_yet_valid'] and not early['expired']
    junk = x.x509pop_verdict(b'junk', 'example.com', pki.now)
    assert not junk['present'] and 'x509pop certificate spire/x509pop.crt' in junk['error']
