"""X.509-SVID validation of a federation peer's client certificate.

nginx forwards the client certificate as ``$ssl_client_escaped_cert`` (URL-escaped
PEM); the registry validates it itself against the SPIRE trust bundle -- no "verify"
header from the proxy is trusted.

Written for cryptography 38 (Debian bookworm) and later: no ``x509.verification``,
no ``load_pem_x509_certificates``, no ``verify_directly_issued_by``.  Signatures are
checked with the issuer public key's ``verify()``.
"""

import datetime
import re
import urllib.parse

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import SignatureAlgorithmOID

MAX_CHAIN_CERTS = 8          # leaf + intermediates accepted from the header
MAX_PATH_DEPTH = 6           # intermediates between leaf and trust anchor
MAX_PEM_BYTES = 64 * 1024

_PEM_RE = re.compile(
    rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)
_WS_RE = re.compile(rb"\s+")


class SVIDRejected(Exception):
    """The presented certificate is not a valid X.509-SVID.  ``reason`` is a short
    token for logs; ``detail`` a human sentence for the 403 body."""

    def __init__(self, reason, detail):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class BundleUnavailable(Exception):
    """The trust bundle cannot be read or holds no certificate."""


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def not_before(cert):
    value = getattr(cert, "not_valid_before_utc", None)  # cryptography >= 42
    if value is None:
        value = cert.not_valid_before.replace(tzinfo=datetime.timezone.utc)
    return value


def not_after(cert):
    value = getattr(cert, "not_valid_after_utc", None)  # cryptography >= 42
    if value is None:
        value = cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    return value


def split_pem(data):
    """All PEM certificate blocks of ``data`` (bytes) as parsed certificates.

    Whitespace inside a block is normalised first, so PEM that a proxy folded with
    tabs or spaces parses as well as the canonical form.
    """
    certs = []
    for body in _PEM_RE.findall(data):
        body = _WS_RE.sub(b"", body)
        lines = [body[i:i + 64] for i in range(0, len(body), 64)]
        block = (b"-----BEGIN CERTIFICATE-----\n" + b"\n".join(lines)
                 + b"\n-----END CERTIFICATE-----\n")
        certs.append(x509.load_pem_x509_certificate(block))
    return certs


def decode_forwarded_cert(header_value):
    """The PEM bytes of nginx's ``$ssl_client_escaped_cert`` (URL-escaped PEM)."""
    text = urllib.parse.unquote(header_value.strip())
    return text.encode("utf-8", "replace")


def load_bundle(path):
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise BundleUnavailable(type(exc).__name__) from None
    try:
        certs = split_pem(data)
    except ValueError:
        raise BundleUnavailable("unparseable") from None
    if not certs:
        raise BundleUnavailable("empty")
    return certs


def load_chain_file(path):
    """Certificates of a PEM file (e.g. our own svid.pem); [] when unreadable."""
    try:
        with open(path, "rb") as handle:
            return split_pem(handle.read())
    except (OSError, ValueError):
        return []


def verify_signature(issuer, cert):
    """Raise InvalidSignature unless ``issuer``'s key signed ``cert``."""
    public_key = issuer.public_key()
    signature = cert.signature
    data = cert.tbs_certificate_bytes
    if isinstance(public_key, rsa.RSAPublicKey):
        if cert.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS:
            params = getattr(cert, "signature_algorithm_parameters", None)  # >= 41
            if not isinstance(params, padding.PSS):
                raise InvalidSignature("RSASSA-PSS not verifiable here")
            pad = params
        else:
            pad = padding.PKCS1v15()
        public_key.verify(signature, data, pad, cert.signature_hash_algorithm)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, data, ec.ECDSA(cert.signature_hash_algorithm))
    elif isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        public_key.verify(signature, data)
    else:
        raise InvalidSignature("unsupported issuer key type")


def _basic_constraints(cert):
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _key_usage(cert):
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _check_time(cert, now, what):
    if now < not_before(cert):
        raise SVIDRejected("not_yet_valid", "%s certificate is not valid yet" % what)
    if now > not_after(cert):
        raise SVIDRejected("expired", "%s certificate has expired" % what)


def _signed_by(issuer, cert):
    if cert.issuer != issuer.subject:
        return False
    try:
        verify_signature(issuer, cert)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _usable_ca(cert, below):
    """True when ``cert`` may issue with ``below`` intermediates beneath it."""
    constraints = _basic_constraints(cert)
    if constraints is None or not constraints.ca:
        return False
    if constraints.path_length is not None and below > constraints.path_length:
        return False
    usage = _key_usage(cert)
    if usage is not None and not usage.key_cert_sign:
        return False
    return True


def spiffe_id_of(cert, trust_domain):
    """The single SPIFFE ID of ``cert``; SVIDRejected when there is not exactly one
    valid ``spiffe://<trust_domain>/...`` URI SAN."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise SVIDRejected("no_spiffe_id", "certificate has no URI SAN (not an X.509-SVID)") from None
    except ValueError:
        raise SVIDRejected("bad_san", "certificate SAN extension is malformed") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if not uris:
        raise SVIDRejected("no_spiffe_id", "certificate has no URI SAN (not an X.509-SVID)")
    if len(uris) != 1:
        raise SVIDRejected("multiple_uri_sans", "an X.509-SVID must carry exactly one URI SAN")
    uri = uris[0]
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme != "spiffe":
        raise SVIDRejected("no_spiffe_id", "URI SAN is not a SPIFFE ID")
    if (parts.query or parts.fragment or "@" in parts.netloc or ":" in parts.netloc
            or not parts.path or parts.path == "/" or "//" in parts.path
            or parts.path.endswith("/")):
        raise SVIDRejected("bad_spiffe_id", "URI SAN is not a well-formed SPIFFE ID")
    if parts.netloc != trust_domain:
        raise SVIDRejected("wrong_trust_domain",
                           "SPIFFE ID is not in trust domain %s" % trust_domain)
    return uri


def verify_svid(pem_bytes, bundle, trust_domain, extra_intermediates=(), now=None):
    """Validate a client X.509-SVID (leaf first, then optional intermediates).

    ``bundle``: trust anchors (list of certificates).  ``extra_intermediates``:
    additional candidate intermediates (e.g. those of our own SVID chain, since
    nginx forwards only the leaf); they are only candidates and must chain to the
    bundle like any other.  Returns the SPIFFE ID; raises SVIDRejected.
    """
    now = now or _utcnow()
    if len(pem_bytes) > MAX_PEM_BYTES:
        raise SVIDRejected("cert_too_large", "client certificate is too large")
    try:
        presented = split_pem(pem_bytes)
    except (ValueError, TypeError):
        raise SVIDRejected("cert_unparseable", "client certificate cannot be parsed") from None
    if not presented:
        raise SVIDRejected("cert_unparseable", "client certificate cannot be parsed")
    if len(presented) > MAX_CHAIN_CERTS:
        raise SVIDRejected("chain_too_long", "too many certificates presented")

    leaf = presented[0]
    constraints = _basic_constraints(leaf)
    if constraints is not None and constraints.ca:
        raise SVIDRejected("leaf_is_ca", "client certificate is a CA certificate, not an SVID")
    usage = _key_usage(leaf)
    if usage is not None and not usage.digital_signature:
        raise SVIDRejected("bad_key_usage", "client certificate lacks digitalSignature key usage")
    _check_time(leaf, now, "client")
    spiffe_id = spiffe_id_of(leaf, trust_domain)

    candidates = list(presented[1:]) + [c for c in extra_intermediates]
    time_failure = []

    def build(cert, depth, seen):
        # A trust anchor from the bundle that issued ``cert`` ends the path.
        for anchor in bundle:
            if _signed_by(anchor, cert):
                try:
                    _check_time(anchor, now, "trust bundle CA")
                except SVIDRejected as exc:
                    time_failure.append(exc)
                    continue
                return True
        if depth >= MAX_PATH_DEPTH:
            return False
        for index, inter in enumerate(candidates):
            if index in seen or not _usable_ca(inter, depth):
                continue
            if not _signed_by(inter, cert):
                continue
            try:
                _check_time(inter, now, "intermediate CA")
            except SVIDRejected as exc:
                time_failure.append(exc)
                continue
            if build(inter, depth + 1, seen | {index}):
                return True
        return False

    if not build(leaf, 0, frozenset()):
        if time_failure:
            raise time_failure[0]
        raise SVIDRejected("untrusted_chain",
                           "client certificate does not chain to the SPIRE trust bundle")
    return spiffe_id
