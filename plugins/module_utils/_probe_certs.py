# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Client certificates of the ``mtls_enforced`` probes (private to this collection).

What an attacker could present to nginx-federation, made in-process (no file, no network):

- a self-signed certificate carrying the registry's SPIFFE ID;
- a certificate from another CA (made here and thrown away) carrying the registry's SPIFFE ID;
- the SPIRE agent's own SVID: it chains to the trust bundle but is no registry
  (``spiffe://<td>/spire/agent/...``), read from the agent's data directory
  (``agent-data.json`` and the disk KeyManager's ``keys.json``);
- our SVID in a forged ``X-SSL-Client-Cert`` header, escaped like nginx's ``$ssl_client_escaped_cert``.

Keys are returned as PEM bytes for an ``ssl`` context only and never appear in an error
message. Works on cryptography 38 (Debian 12, the registry hosts) and current releases.
"""

from __future__ import annotations

import base64
import datetime
import json
import urllib.parse

from ansible_collections.theprotocol.operator.plugins.module_utils import _x509 as x509u

try:
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:
    pass  # x509u.require_cryptography() reports it

LIFETIME = datetime.timedelta(hours=1)
BACKDATE = datetime.timedelta(minutes=5)


class ProbeCertError(Exception):
    """A probe certificate that cannot be made or read; the message never quotes key material."""


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _builder(subject, issuer_name, public_key, now):
    if not isinstance(subject, x509.Name):
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    return (x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer_name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + LIFETIME))


def _leaf(builder, spiffe_id, public_key, issuer_key):
    return (builder
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(issuer_key, hashes.SHA256()))


def self_signed(spiffe_id, now=None):
    """(certificate PEM, key PEM): a self-signed certificate that carries ``spiffe_id``."""
    x509u.require_cryptography()
    now = now or datetime.datetime.now(datetime.timezone.utc)
    key = _key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'checklist probe: self-signed')])
    cert = _leaf(_builder('checklist probe: self-signed', name, key.public_key(), now), spiffe_id,
                 key.public_key(), key)
    return _pem(cert), _pem_key(key)


def foreign_ca(spiffe_id, now=None):
    """(leaf + CA PEM, leaf key PEM): ``spiffe_id`` issued by a CA made here, which no bundle holds."""
    x509u.require_cryptography()
    now = now or datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = _key(), _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, 'checklist probe'),
                         x509.NameAttribute(NameOID.COMMON_NAME, 'checklist probe: foreign CA')])
    ca = (_builder(ca_name, ca_name, ca_key.public_key(), now)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = _leaf(_builder('checklist probe: foreign CA leaf', ca_name, key.public_key(), now), spiffe_id,
                 key.public_key(), ca_key)
    return _pem(leaf) + _pem(ca), _pem_key(key)


def agent_svid(agent_data, keys_data):
    """(chain PEM, key PEM, SPIFFE ID) of the SPIRE agent's own SVID.

    ``agent_data``: ``agent-data.json`` of the agent's data directory (``svid``: base64 DER chain);
    ``keys_data``: the disk KeyManager's ``keys.json`` (``keys``: name -> base64 PKCS#8 DER), from which
    the key that matches the SVID is taken (``agent-svid-A`` or ``-B`` during a rotation).
    """
    x509u.require_cryptography()
    if not agent_data:
        raise ProbeCertError('agent-data.json of the SPIRE agent is missing or unreadable')
    if not keys_data:
        raise ProbeCertError('keys.json of the SPIRE agent is missing (KeyManager "disk" keeps the agent key there)')
    try:
        chain = []
        for item in json.loads(agent_data.decode('utf-8')).get('svid') or []:
            raw = base64.b64decode(item)
            # SPIRE 1.13 stores PEM blocks; DER is accepted too.
            chain.extend(x509u.load_pem_chain(raw, 'agent SVID') if raw.startswith(b'-----BEGIN')
                         else [x509.load_der_x509_certificate(raw)])
    except (ValueError, TypeError, AttributeError, x509u.X509Error):
        raise ProbeCertError('agent-data.json holds no readable agent SVID')
    if not chain:
        raise ProbeCertError('agent-data.json holds no agent SVID (the agent has not attested)')
    try:
        keys = json.loads(keys_data.decode('utf-8')).get('keys') or {}
        if not isinstance(keys, dict):
            raise TypeError
    except (ValueError, TypeError, AttributeError):
        raise ProbeCertError('keys.json of the SPIRE agent cannot be read')
    match = None
    for name in sorted(keys):
        if not name.startswith('agent-svid'):
            continue
        try:
            key = serialization.load_der_private_key(base64.b64decode(keys[name]), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            continue
        if x509u.key_matches_certificate(key, chain[0]):
            match = key
            break
    if match is None:
        raise ProbeCertError('no key in keys.json matches the agent SVID (rotation in progress?)')
    uris = x509u.uri_sans(chain[0])
    spiffe_id = uris[0] if len(uris) == 1 else None
    return b''.join(_pem(c) for c in chain), _pem_key(match), spiffe_id


def escaped_header(cert_pem):
    """The first certificate of ``cert_pem`` as nginx's ``$ssl_client_escaped_cert`` (URL-escaped PEM)."""
    data = cert_pem.decode('ascii') if isinstance(cert_pem, bytes) else cert_pem
    start = data.find('-----BEGIN CERTIFICATE-----')
    end = data.find('-----END CERTIFICATE-----', start)
    if start < 0 or end < 0:
        raise ProbeCertError('no PEM certificate to forge the header from')
    return urllib.parse.quote(data[start:end + len('-----END CERTIFICATE-----')] + '\n', safe='')
