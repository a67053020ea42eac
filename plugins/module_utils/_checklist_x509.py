# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Certificate helpers of the security checklist, over ``_x509`` (private to this collection).

``_x509`` runs on the cryptography release of the registry hosts too (Debian 12: 38), so
these are thin conveniences around it: one place for the checklist's error wording.
"""

from __future__ import annotations

from ansible_collections.theprotocol.operator.plugins.module_utils import _x509 as x509u

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
except ImportError:
    pass  # x509u.require_cryptography() reports it


def load_chain(data, what='certificate file'):
    """Certificates in PEM ``data``, leaf first."""
    return x509u.load_pem_chain(data, what)


def load_key(data, what='private key file'):
    """The private key in PEM ``data``; errors never quote the key."""
    return x509u.load_pem_key(data, what)


def key_matches(key, cert):
    return x509u.key_matches_certificate(key, cert)


def load_der(data):
    x509u.require_cryptography()
    try:
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise x509u.X509Error('The served certificate cannot be parsed (%s).' % exc)


def der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def verify_chain(leaf, intermediates, bundle, now):
    return x509u.verify_chain(leaf, intermediates, bundle, now=now)


def chain_error(leaf, intermediates, bundle_pem, now):
    """None when ``leaf`` chains to a CA of ``bundle_pem``; else why not."""
    try:
        verify_chain(leaf, intermediates, load_chain(bundle_pem, 'trust bundle'), now)
    except x509u.X509Error as exc:
        return str(exc)
    return None
