# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make ``ansible_collections.theprotocol.operator`` importable and build a real test PKI.

A plain ``pytest tests/unit`` from the repository root needs no installed collection:
``.build/collections/ansible_collections/theprotocol/operator`` is a symlink to the
repository root and ``.build/collections`` goes first on ``sys.path``.  The
``ansible_collections`` package is a namespace package, so the collections that the
``ansible`` package installs in site-packages stay importable next to ours.
"""

from __future__ import annotations

import datetime
import os
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS_DIR = os.path.join(REPO_ROOT, '.build', 'collections')
LINK = os.path.join(COLLECTIONS_DIR, 'ansible_collections', 'theprotocol', 'operator')


def _ensure_collection_link():
    # Running inside an installed collection tree (ansible-test units): nothing to do.
    parts = REPO_ROOT.split(os.sep)
    if len(parts) >= 3 and parts[-3] == 'ansible_collections':
        root = os.sep.join(parts[:-3])
    else:
        if not os.path.islink(LINK):
            os.makedirs(os.path.dirname(LINK), exist_ok=True)
            try:
                os.symlink(os.path.relpath(REPO_ROOT, os.path.dirname(LINK)), LINK)
            except FileExistsError:  # a concurrent run made it
                pass
        if os.path.realpath(LINK) != os.path.realpath(REPO_ROOT):
            raise RuntimeError('%s exists but does not point at %s: remove it and rerun.' % (LINK, REPO_ROOT))
        root = COLLECTIONS_DIR
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)


_ensure_collection_link()

# pylint: disable=wrong-import-position
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

NOW = datetime.datetime(2026, 6, 4, 12, 0, 0, tzinfo=datetime.timezone.utc)
HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)
TD = 'example.com'
REGISTRY_ID = 'spiffe://example.com/service/registry-acme'


def make_key(kind='ec'):
    if kind == 'rsa':
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == 'ed25519':
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn, org='SPIRE'):
    attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, 'US'), x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]
    if cn:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def make_cert(key, cn, issuer=None, ca=False, path_length=None, uris=(), dns=(), not_before=None, not_after=None,
              key_usage='auto', basic_constraints=True):
    """Issue a certificate for ``key``; ``issuer`` is ``(cert, key)`` or None for self-signed."""
    subject = _name(cn)
    issuer_name, signing_key = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer_name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before or NOW - DAY)
               .not_valid_after(not_after or NOW + DAY))
    if basic_constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None),
                                        critical=True)
    if key_usage == 'auto':
        key_usage = 'ca' if ca else 'leaf'
    if key_usage == 'ca':
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
    elif key_usage == 'leaf':
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=True, data_encipherment=False,
            key_agreement=True, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True)
    elif key_usage == 'no_sign':
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=True, data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False),
            critical=True)
    sans = [x509.UniformResourceIdentifier(u) for u in uris] + [x509.DNSName(d) for d in dns]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    algorithm = None if isinstance(signing_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signing_key, algorithm)


def cert_pem(*certs):
    return b''.join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Pki:
    """A real SPIRE-like PKI: root CA -> intermediate CA -> SVID leaf, plus broken variants."""

    now = NOW
    trust_domain = TD
    registry_id = REGISTRY_ID
    make_key = staticmethod(make_key)
    make_cert = staticmethod(make_cert)
    cert_pem = staticmethod(cert_pem)
    key_pem = staticmethod(key_pem)

    def __init__(self):
        self.root_key = make_key()
        self.root = make_cert(self.root_key, 'root', ca=True, not_before=NOW - 30 * DAY, not_after=NOW + 365 * DAY)
        self.int_key = make_key()
        self.intermediate = make_cert(self.int_key, 'intermediate', issuer=(self.root, self.root_key), ca=True,
                                      path_length=0, not_before=NOW - 2 * DAY, not_after=NOW + 30 * DAY)
        self.leaf_key = make_key()
        self.leaf = make_cert(self.leaf_key, None, issuer=(self.intermediate, self.int_key), uris=[REGISTRY_ID],
                              not_before=NOW - HOUR, not_after=NOW + HOUR)
        # Another trust domain / another root.
        self.other_root_key = make_key()
        self.other_root = make_cert(self.other_root_key, 'other-root', ca=True)
        self.other_leaf = make_cert(make_key(), None, issuer=(self.other_root, self.other_root_key),
                                    uris=['spiffe://other.org/service/registry-acme'])
        # Same root, wrong trust domain in the leaf.
        self.wrong_td_leaf = make_cert(make_key(), None, issuer=(self.intermediate, self.int_key),
                                       uris=['spiffe://other.org/service/registry-acme'])
        self.expired_leaf = make_cert(make_key(), None, issuer=(self.intermediate, self.int_key), uris=[REGISTRY_ID],
                                      not_before=NOW - 3 * HOUR, not_after=NOW - HOUR)
        self.future_leaf = make_cert(make_key(), None, issuer=(self.intermediate, self.int_key), uris=[REGISTRY_ID],
                                     not_before=NOW + HOUR, not_after=NOW + 3 * HOUR)
        self.mismatched_key = make_key()


@pytest.fixture(scope='session')
def pki():
    return Pki()
