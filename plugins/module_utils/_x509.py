# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""X.509 and SPIFFE helpers for SVID files (private to this collection).

Pure functions on PEM data; no Ansible imports.  Every error is raised as
:class:`X509Error` with a message that says what is wrong and what to do.
Nothing here ever returns or formats private key material.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import traceback

CRYPTOGRAPHY_IMP_ERR = None
try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
    from cryptography.x509.oid import ExtensionOID
except ImportError:
    CRYPTOGRAPHY_IMP_ERR = traceback.format_exc()
    HAS_CRYPTOGRAPHY = False
    MODERN_API = False
else:
    HAS_CRYPTOGRAPHY = True
    # cryptography >= 40 verifies an issuer signature and loads PEM bundles itself; older
    # releases (Debian 12 ships 38 on the registry hosts) take the equivalent paths below.
    MODERN_API = hasattr(x509.Certificate, 'verify_directly_issued_by') and hasattr(x509, 'load_pem_x509_certificates')

MINIMAL_CRYPTOGRAPHY_VERSION = '38.0'
_PEM_CERT_RE = re.compile(rb'-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----', re.S)
_SHA256_HEX_RE = re.compile(r'^[0-9a-fA-F]{64}\Z')
CRYPTOGRAPHY_MISSING_MSG = (
    'The Python library cryptography >= %s is required on the target host to read SVIDs. '
    'Install it there (for example the python3-cryptography package) and retry.' % MINIMAL_CRYPTOGRAPHY_VERSION
)

SPIFFE_SCHEME = 'spiffe://'
SPIFFE_ID_MAX_LENGTH = 2048
DEFAULT_TRUST_DOMAIN = 'example.com'
MAX_CHAIN_DEPTH = 10

_TRUST_DOMAIN_RE = re.compile(r'^[a-z0-9._-]+\Z')
_PATH_SEGMENT_RE = re.compile(r'^[A-Za-z0-9._-]+\Z')
_DNS_LABEL_RE = re.compile(r'^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z')


class X509Error(Exception):
    """The one error type of this module; its message is meant for the operator."""


def require_cryptography():
    """Raise X509Error when a usable cryptography library is missing."""
    if not HAS_CRYPTOGRAPHY:
        raise X509Error(CRYPTOGRAPHY_MISSING_MSG)


# --------------------------------------------------------------------------- loading

def _to_bytes(data):
    if isinstance(data, str):
        return data.encode('utf-8')
    return data


def load_pem_chain(data, what='certificate file'):
    """Return the list of certificates in PEM ``data`` (leaf first, as written)."""
    require_cryptography()
    data = _to_bytes(data)
    if not data or b'-----BEGIN CERTIFICATE-----' not in data:
        raise X509Error(
            'The %s contains no PEM certificate (no "BEGIN CERTIFICATE" block). '
            'Check that the path points at the certificate and that cert-writer has written it.' % what)
    try:
        if MODERN_API:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_pem_x509_certificate(block) for block in _PEM_CERT_RE.findall(data)]
    except ValueError as exc:
        raise X509Error(
            'The %s holds a PEM certificate block that cannot be parsed (%s). '
            'The file is damaged or truncated: let cert-writer write it again.' % (what, exc))


def load_der_certificate(data, what='served certificate'):
    """Return the certificate in DER ``data`` (what a TLS server presented)."""
    require_cryptography()
    try:
        return x509.load_der_x509_certificate(_to_bytes(data))
    except (ValueError, TypeError) as exc:
        raise X509Error('The %s cannot be parsed (%s).' % (what, exc))


def der(cert):
    """The DER encoding of ``cert`` (what a TLS server presents)."""
    return cert.public_bytes(serialization.Encoding.DER)


def load_pem_key(data, what='private key file'):
    """Return the private key in PEM ``data`` (unencrypted PKCS#8, PKCS#1 or SEC1)."""
    require_cryptography()
    data = _to_bytes(data)
    if not data or b'PRIVATE KEY-----' not in data:
        raise X509Error(
            'The %s contains no PEM private key. '
            'Check that the path points at the SVID key and that cert-writer has written it.' % what)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise X509Error(
            'The %s is encrypted. SVID keys are written unencrypted by cert-writer; '
            'point at the key written by cert-writer.' % what)
    except (ValueError, UnsupportedAlgorithm):
        # The library's message is not repeated on purpose: it is never about the
        # key's content, but keep the output free of anything derived from it.
        raise X509Error(
            'The %s cannot be parsed as a private key. '
            'The file is damaged or of an unsupported type: let cert-writer write it again.' % what)


def _spki(public_key):
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches_certificate(private_key, cert):
    """True when ``private_key`` is the private half of the public key in ``cert``."""
    try:
        return _spki(private_key.public_key()) == _spki(cert.public_key())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False


# --------------------------------------------------------------------------- SPIFFE IDs

def validate_trust_domain(trust_domain):
    """Return ``trust_domain`` if it is a valid SPIFFE trust domain name."""
    if not isinstance(trust_domain, str) or not trust_domain:
        raise X509Error('The trust domain is empty. Set it to the trust domain of your parent frame, e.g. %s.'
                        % DEFAULT_TRUST_DOMAIN)
    if not _TRUST_DOMAIN_RE.match(trust_domain):
        raise X509Error(
            'The trust domain %r is invalid: only lowercase letters, digits, ".", "-" and "_" are allowed '
            '(SPIFFE ID spec). Use the trust domain exactly as the parent frame issued it.' % trust_domain)
    return trust_domain


def parse_spiffe_id(spiffe_id):
    """Split a SPIFFE ID into ``(trust_domain, path)``; path is '' or starts with '/'."""
    if not isinstance(spiffe_id, str) or not spiffe_id:
        raise X509Error('The SPIFFE ID is empty. Expected spiffe://<trust-domain>/<path>.')
    if len(spiffe_id.encode('utf-8')) > SPIFFE_ID_MAX_LENGTH:
        raise X509Error('The SPIFFE ID is longer than %d bytes, the SPIFFE maximum.' % SPIFFE_ID_MAX_LENGTH)
    if not spiffe_id.startswith(SPIFFE_SCHEME):
        raise X509Error('%r is not a SPIFFE ID: it must start with "spiffe://" (lowercase scheme). '
                        'Expected spiffe://<trust-domain>/<path>.' % spiffe_id)
    rest = spiffe_id[len(SPIFFE_SCHEME):]
    if '?' in rest or '#' in rest:
        raise X509Error('The SPIFFE ID %r has a query or fragment, which SPIFFE IDs must not have.' % spiffe_id)
    trust_domain, sep, path = rest.partition('/')
    if not trust_domain:
        raise X509Error('The SPIFFE ID %r has no trust domain. Expected spiffe://<trust-domain>/<path>.' % spiffe_id)
    if '@' in trust_domain or ':' in trust_domain:
        raise X509Error('The SPIFFE ID %r has user info or a port in its trust domain, which SPIFFE IDs must not have.'
                        % spiffe_id)
    try:
        validate_trust_domain(trust_domain)
    except X509Error:
        raise X509Error(
            'The SPIFFE ID %r has an invalid trust domain %r: only lowercase letters, digits, ".", "-" and "_" '
            'are allowed.' % (spiffe_id, trust_domain))
    if not sep:
        return trust_domain, ''
    for segment in path.split('/'):
        if not segment:
            raise X509Error('The SPIFFE ID %r has an empty path segment or a trailing "/", which SPIFFE IDs must not have.'
                            % spiffe_id)
        if segment in ('.', '..'):
            raise X509Error('The SPIFFE ID %r has a "." or ".." path segment, which SPIFFE IDs must not have.'
                            % spiffe_id)
        if not _PATH_SEGMENT_RE.match(segment):
            raise X509Error(
                'The SPIFFE ID %r has an invalid path segment %r: only letters, digits, ".", "-" and "_" '
                'are allowed.' % (spiffe_id, segment))
    return trust_domain, '/' + path


def uri_sans(cert):
    """Return all URI SANs of ``cert`` (empty list when there is no SAN extension)."""
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value.get_values_for_type(x509.UniformResourceIdentifier))


def spiffe_ids(cert):
    """Return the URI SANs of ``cert`` that look like SPIFFE IDs (not validated)."""
    return [uri for uri in uri_sans(cert) if uri.lower().startswith(SPIFFE_SCHEME)]


def svid_spiffe_id(cert):
    """Return ``(spiffe_id, trust_domain, path)`` of an X.509-SVID leaf.

    The SVID must carry exactly one URI SAN, a valid SPIFFE ID with a non-empty path.
    """
    uris = uri_sans(cert)
    if not uris:
        raise X509Error('The certificate has no URI SAN, so it is not an X.509-SVID. '
                        'Check that the file is the SVID written by cert-writer, not another certificate.')
    if len(uris) > 1:
        raise X509Error('The certificate has %d URI SANs (%s); an X.509-SVID must have exactly one. '
                        'Ask the parent frame to fix the registration entry.' % (len(uris), ', '.join(uris)))
    spiffe_id = uris[0]
    trust_domain, path = parse_spiffe_id(spiffe_id)
    if not path:
        raise X509Error('The SVID carries the trust domain ID %r without a path; a workload SVID needs a path '
                        'such as /service/registry-<operator-name>.' % spiffe_id)
    return spiffe_id, trust_domain, path


# --------------------------------------------------------------------------- names

def validate_operator_name(name):
    """Return ``name`` if it is an RFC 1123 DNS label (lowercase, 1-63 chars)."""
    if not isinstance(name, str) or not _DNS_LABEL_RE.match(name):
        raise X509Error(
            'The operator name %r is invalid: use 1 to 63 lowercase letters, digits or "-", '
            'starting and ending with a letter or digit (RFC 1123 label).' % (name,))
    return name


def registry_spiffe_id(trust_domain, operator_name):
    """SPIFFE ID of the registry workload: spiffe://<td>/service/registry-<operator_name>."""
    validate_trust_domain(trust_domain)
    validate_operator_name(operator_name)
    return '%s%s/service/registry-%s' % (SPIFFE_SCHEME, trust_domain, operator_name)


def sha1_fingerprint(cert):
    """Lowercase hex SHA-1 of the certificate's DER encoding (no separators)."""
    return cert.fingerprint(hashes.SHA1()).hex()  # nosec - SPIRE's x509pop fingerprint is SHA-1


def sha256_fingerprint(cert):
    """Lowercase hex SHA-256 of the certificate's DER encoding (no separators)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def x509pop_agent_spiffe_id(trust_domain, attestation_cert):
    """Agent SPIFFE ID SPIRE's x509pop attestor assigns by default.

    Default agent_path_template ``{{ .PluginName }}/{{ .Fingerprint }}`` under
    ``/spire/agent/``; the fingerprint is the SHA-1 of the leaf's DER, lowercase hex.
    """
    validate_trust_domain(trust_domain)
    return '%s%s/spire/agent/x509pop/%s' % (SPIFFE_SCHEME, trust_domain, sha1_fingerprint(attestation_cert))


# --------------------------------------------------------------------------- time

def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def as_utc(value):
    """``value`` as an aware UTC datetime (a naive one is taken as UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=datetime.timezone.utc)
    return value.astimezone(datetime.timezone.utc)


def not_valid_before(cert):
    """Start of the validity window as an aware UTC datetime."""
    value = getattr(cert, 'not_valid_before_utc', None)
    return as_utc(value if value is not None else cert.not_valid_before)


def not_valid_after(cert):
    """End of the validity window as an aware UTC datetime."""
    value = getattr(cert, 'not_valid_after_utc', None)
    return as_utc(value if value is not None else cert.not_valid_after)


def isoformat(value):
    """ISO-8601 UTC with a 'Z' suffix, second precision."""
    return as_utc(value).strftime('%Y-%m-%dT%H:%M:%SZ')


def remaining_seconds(cert, now=None):
    """Whole seconds until not_after (negative once expired)."""
    now = as_utc(now) if now is not None else _utcnow()
    return int((not_valid_after(cert) - now).total_seconds() // 1)


def is_expired(cert, now=None):
    """True once ``now`` is past not_after."""
    now = as_utc(now) if now is not None else _utcnow()
    return now > not_valid_after(cert)


def is_not_yet_valid(cert, now=None):
    """True while ``now`` is before not_before."""
    now = as_utc(now) if now is not None else _utcnow()
    return now < not_valid_before(cert)


def _check_validity(cert, now, role):
    if is_not_yet_valid(cert, now):
        raise X509Error('The %s %s is not valid before %s. Check the clock of this host (NTP) and of the issuer.'
                        % (role, _name(cert), isoformat(not_valid_before(cert))))
    if is_expired(cert, now):
        if role == 'certificate':
            todo = 'Fetch a fresh SVID: check spire-agent health, restart spire-agent, then cert-writer.'
        else:
            todo = 'Let cert-writer write the current trust bundle and SVID chain, or ask the parent frame for them.'
        raise X509Error('The %s %s expired at %s. %s' % (role, _name(cert), isoformat(not_valid_after(cert)), todo))


# --------------------------------------------------------------------------- extensions

def _extension(cert, oid):
    try:
        return cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def has_digital_signature(cert):
    """True when the certificate has a KeyUsage extension with digitalSignature set."""
    usage = _extension(cert, ExtensionOID.KEY_USAGE)
    return bool(usage is not None and usage.digital_signature)


def is_ca(cert):
    """True when basicConstraints says CA:TRUE."""
    constraints = _extension(cert, ExtensionOID.BASIC_CONSTRAINTS)
    return bool(constraints is not None and constraints.ca)


def _name(cert):
    return '"%s"' % (cert.subject.rfc4514_string() or '(empty subject)')


# --------------------------------------------------------------------------- chain

def _verify_signature(cert, issuer):
    """Raise unless ``issuer``'s key made the signature on ``cert`` (any cryptography release)."""
    if MODERN_API:
        cert.verify_directly_issued_by(issuer)
        return
    public = issuer.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        public.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    elif isinstance(public, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        public.verify(cert.signature, cert.tbs_certificate_bytes)
    else:
        raise UnsupportedAlgorithm('issuer key type %s' % type(public).__name__)


def _directly_issued_by(cert, issuer):
    if cert.issuer != issuer.subject:
        return False
    try:
        _verify_signature(cert, issuer)
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def _check_issuer(issuer, below, now):
    """Validate ``issuer`` as a CA with ``below`` intermediate CAs under it."""
    _check_validity(issuer, now, 'CA certificate')
    constraints = _extension(issuer, ExtensionOID.BASIC_CONSTRAINTS)
    if constraints is None or not constraints.ca:
        raise X509Error('The certificate %s signs the chain but is not a CA (basicConstraints CA:TRUE missing). '
                        'Only CA certificates may issue SVIDs: check the trust bundle and intermediates.'
                        % _name(issuer))
    if constraints.path_length is not None and below > constraints.path_length:
        raise X509Error('The CA %s allows %d intermediate CA(s) below it but the chain has %d.'
                        % (_name(issuer), constraints.path_length, below))
    usage = _extension(issuer, ExtensionOID.KEY_USAGE)
    if usage is not None and not usage.key_cert_sign:
        raise X509Error('The CA %s has a KeyUsage without keyCertSign, so it may not sign certificates.'
                        % _name(issuer))


def verify_chain(leaf, intermediates, bundle, now=None):
    """Verify that ``leaf`` chains through ``intermediates`` to a CA in ``bundle``.

    Checks signatures, validity windows of every certificate and CA constraints of
    every issuer. No hostname or other policy is applied. Returns the path from the
    leaf to the trust anchor (inclusive).
    """
    require_cryptography()
    now = as_utc(now) if now is not None else _utcnow()
    bundle = list(bundle or [])
    if not bundle:
        raise X509Error('The trust bundle holds no CA certificate. Check that the bundle file is the SPIRE bundle '
                        'written by cert-writer.')
    _check_validity(leaf, now, 'certificate')
    pool = list(intermediates or [])
    path = [leaf]
    current = leaf
    for _depth in range(MAX_CHAIN_DEPTH):
        # A trust anchor is preferred over an intermediate with the same name.
        for anchor in bundle:
            if _directly_issued_by(current, anchor):
                _check_issuer(anchor, len(path) - 1, now)
                path.append(anchor)
                return path
        for candidate in pool:
            if _directly_issued_by(current, candidate):
                _check_issuer(candidate, len(path) - 1, now)
                pool.remove(candidate)
                path.append(candidate)
                current = candidate
                break
        else:
            raise X509Error(
                'No certificate in the trust bundle (%d CA(s)) or among the %d intermediate(s) issued %s '
                '(issuer %s), so the chain does not lead to the bundle. Check that the bundle is the current SPIRE '
                'bundle of this trust domain and that the SVID file carries its intermediates.'
                % (len(bundle), len(intermediates or []), _name(current),
                   '"%s"' % current.issuer.rfc4514_string()))
    raise X509Error('The chain is longer than %d certificates without reaching the trust bundle.' % MAX_CHAIN_DEPTH)


# --------------------------------------------------------------------------- describe

def describe_certificate(cert, now=None):
    """Public facts about ``cert`` as a plain dict (never key material)."""
    ids = spiffe_ids(cert)
    return {
        'subject': cert.subject.rfc4514_string(),
        'issuer': cert.issuer.rfc4514_string(),
        'serial': format(cert.serial_number, 'x'),
        'not_before': isoformat(not_valid_before(cert)),
        'not_after': isoformat(not_valid_after(cert)),
        'remaining_seconds': remaining_seconds(cert, now),
        'is_ca': is_ca(cert),
        'spiffe_id': ids[0] if len(ids) == 1 else None,
        'spiffe_ids': ids,
        'sha1_fingerprint': sha1_fingerprint(cert),
        'sha256_fingerprint': sha256_fingerprint(cert),
    }


# --------------------------------------------------------------------------- the SVID verdict

# The one staleness rule (see is_stale): a write of cert-writer is stale after this many fetch intervals.
STALE_AFTER_INTERVALS = 2
SVID_LABELS = ('SVID file', 'SVID key file', 'trust bundle file')


def age_seconds(written_at, now=None):
    """Whole seconds from ``written_at`` to ``now``; None when ``written_at`` is unknown."""
    if written_at is None:
        return None
    now = as_utc(now) if now is not None else _utcnow()
    return int((now - as_utc(written_at)).total_seconds())


def stale_after(interval):
    """Seconds after which a write of cert-writer (files or logged fetch) is stale."""
    return STALE_AFTER_INTERVALS * interval


def is_stale(age, interval):
    """True when a write of cert-writer (the set of SVID files, or the last fetch it logged) ``age``
    seconds old is older than :data:`STALE_AFTER_INTERVALS` fetch ``interval`` s, or its age is unknown.

    cert-writer writes a fresh set every interval (the guide's 300 s). Two intervals, no slack:

    - it is cert-writer's own rule: its Docker healthcheck (``cert-writer -check``) reports unhealthy
      once the current set is 2x the interval old, so the checklist, the incident response and the
      container's health agree on what stale is;
    - one missed cycle passes: a failed fetch is retried before the next one (after 5 s in the lab's
      cert-writer), and any success inside the second interval keeps the set fresh;
    - the guide's recovery (restart spire-agent, wait 60 s, restart cert-writer) needs no slack:
      cert-writer writes a set as soon as it starts, and the recovery waits for that write. The
      extra minute the incident response used to add let a stale SVID pass for 60 s more (with the
      lab's 15 s interval, 90 s instead of 30 s) and disagreed with the checklist on the same stack.
    """
    return age is None or age > stale_after(interval)


def svid_verdict(svid_pem, key_pem=None, bundle_pem=None, expected_spiffe_id=None, written_at=None, interval=None,
                 min_remaining=None, now=None, labels=SVID_LABELS):
    """Everything there is to say about an X.509-SVID and its files, as a plain dict (no key material).

    ``svid_pem``: the SVID file (leaf first, then intermediates), None when missing; ``key_pem`` and
    ``bundle_pem``: its key and the trust bundle, each None when not to be checked; ``written_at``:
    when cert-writer wrote the set (the ``..data`` switch), with ``interval`` its fetch interval;
    ``min_remaining``: seconds the SVID must still be valid; ``labels``: how messages name the three
    files. Findings are values, never raised:

    - ``present``/``error``: whether the SVID file holds a usable certificate, or why not (then
      nothing else is known about it);
    - ``spiffe_id``, ``trust_domain``, ``spiffe_path``: the SVID's valid SPIFFE ID (:func:`svid_spiffe_id`),
      else None and ``spiffe_id_error``; ``spiffe_id_matches``: equal to ``expected_spiffe_id`` (None
      when none is expected);
    - ``serial``, ``sha256_fingerprint``, ``not_before``, ``not_after``, ``remaining_seconds``,
      ``expired``, ``not_yet_valid``, ``digital_signature``, ``is_ca``, ``intermediate_count``,
      ``certificate`` (:func:`describe_certificate`); ``remaining_sufficient`` (None without
      ``min_remaining``);
    - ``chain_ok``/``chain_error``/``bundle_ca_count``: the chain to the bundle (None without a
      bundle; an unusable bundle is ``bundle_error`` and the chain error too);
    - ``key_matches``/``key_error``: the key belongs to the leaf (None without a key);
    - ``age_seconds`` and ``stale`` (None without ``interval``): expired, or not rewritten within
      :data:`STALE_AFTER_INTERVALS` intervals, or the write time is unknown.
    """
    now = as_utc(now) if now is not None else _utcnow()
    age = age_seconds(written_at, now)
    out = dict(present=False, error=None, spiffe_id=None, trust_domain=None, spiffe_path=None, spiffe_id_error=None,
               spiffe_id_matches=None, serial=None, sha256_fingerprint=None, not_before=None, not_after=None,
               remaining_seconds=None, expired=None, not_yet_valid=None, remaining_sufficient=None,
               digital_signature=None, is_ca=None, intermediate_count=None, certificate=None, chain_ok=None,
               chain_error=None, bundle_ca_count=None, bundle_error=None, key_matches=None, key_error=None,
               age_seconds=age, stale=None if interval is None else True)
    if svid_pem is None:
        out['error'] = 'The %s is missing.' % labels[0]
        return out
    try:
        chain = load_pem_chain(svid_pem, labels[0])
    except X509Error as exc:
        out['error'] = str(exc)
        return out
    leaf, intermediates = chain[0], chain[1:]
    facts = describe_certificate(leaf, now)
    out.update(present=True, certificate=facts, serial=facts['serial'], sha256_fingerprint=facts['sha256_fingerprint'],
               not_before=facts['not_before'], not_after=facts['not_after'],
               remaining_seconds=facts['remaining_seconds'], expired=is_expired(leaf, now),
               not_yet_valid=is_not_yet_valid(leaf, now), digital_signature=has_digital_signature(leaf),
               is_ca=facts['is_ca'], intermediate_count=len(intermediates))
    try:
        out['spiffe_id'], out['trust_domain'], out['spiffe_path'] = svid_spiffe_id(leaf)
    except X509Error as exc:
        out['spiffe_id_error'] = str(exc)
    if expected_spiffe_id is not None:
        out['spiffe_id_matches'] = out['spiffe_id'] == expected_spiffe_id
    if min_remaining is not None:
        out['remaining_sufficient'] = bool(out['remaining_seconds'] >= min_remaining and not out['expired']
                                           and not out['not_yet_valid'])
    if key_pem is not None:
        try:
            out['key_matches'] = key_matches_certificate(load_pem_key(key_pem, labels[1]), leaf)
        except X509Error as exc:
            out['key_error'] = str(exc)
    if bundle_pem is not None:
        try:
            bundle = load_pem_chain(bundle_pem, labels[2])
        except X509Error as exc:
            out.update(chain_ok=False, chain_error=str(exc), bundle_error=str(exc))
        else:
            out['bundle_ca_count'] = len(bundle)
            try:
                verify_chain(leaf, intermediates, bundle, now=now)
                out['chain_ok'] = True
            except X509Error as exc:
                out.update(chain_ok=False, chain_error=str(exc))
    if interval is not None:
        out['stale'] = bool(out['expired'] or is_stale(age, interval))
    return out


def _sha256_of(svid):
    """SHA-256 (lowercase hex) of the DER of ``svid``: a certificate, the PEM of an SVID file (its leaf), or
    already a SHA-256 fingerprint in hex (as :func:`svid_verdict` reports it)."""
    if isinstance(svid, str) and _SHA256_HEX_RE.match(svid):
        return svid.lower()
    if HAS_CRYPTOGRAPHY and isinstance(svid, x509.Certificate):
        return sha256_fingerprint(svid)
    return sha256_fingerprint(load_pem_chain(svid, 'SVID file')[0])


def same_certificate(served_der, svid):
    """Whether ``served_der`` (the DER a TLS server presented) is the SVID leaf ``svid`` (see :func:`_sha256_of`).

    The one served-vs-written comparison: SHA-256 of the DER encodings, so a fingerprint kept in
    evidence compares the same way as the certificate itself.
    """
    return hashlib.sha256(_to_bytes(served_der)).hexdigest() == _sha256_of(svid)


def served_verdict(served_der, svid_pem=None, svid_sha256=None, now=None, label='SVID file'):
    """The certificate a TLS server presented (``served_der``) against the SVID written on the volume.

    The written side is ``svid_pem`` (the SVID file) or ``svid_sha256`` (its leaf's fingerprint);
    neither: nothing to compare. Returns a plain dict: ``error`` (the served DER cannot be parsed),
    ``sha256_fingerprint``, ``serial``, ``not_after``, ``expired`` of the served certificate;
    ``svid_error``, ``svid_serial``, ``svid_not_after`` of the written one; ``matches_svid``
    (:func:`same_certificate`; False when the served DER is no certificate, None when there is
    nothing to compare with).
    """
    out = dict(error=None, sha256_fingerprint=None, serial=None, not_after=None, expired=None, svid_error=None,
               svid_serial=None, svid_not_after=None, matches_svid=None)
    written = svid_sha256
    if svid_pem is not None:
        try:
            written = load_pem_chain(svid_pem, label)[0]
        except X509Error as exc:
            out['svid_error'] = str(exc)
            written = None
        else:
            out.update(svid_serial=format(written.serial_number, 'x'), svid_not_after=isoformat(not_valid_after(written)))
    try:
        served = load_der_certificate(served_der)
    except X509Error as exc:
        out.update(error=str(exc), matches_svid=False)
        return out
    out.update(sha256_fingerprint=sha256_fingerprint(served), serial=format(served.serial_number, 'x'),
               not_after=isoformat(not_valid_after(served)), expired=is_expired(served, now))
    if written is not None:
        out['matches_svid'] = same_certificate(served_der, written)
    return out


def x509pop_verdict(cert_pem, trust_domain=None, now=None, label='x509pop certificate spire/x509pop.crt'):
    """The x509pop attestation certificate of a stack (``spire/x509pop.crt``, public half only), read once
    for the checklist's ``x509pop_cert_expiry`` and the incident's classification.

    Returns a plain dict: ``present`` and ``error`` (missing, or not a certificate); then ``subject``,
    ``not_before``, ``not_after``, ``remaining_seconds``, ``expired``, ``not_yet_valid`` and the SPIFFE ID
    the agent gets when it attests with it (``agent_spiffe_id``; None without ``trust_domain``).
    """
    if not cert_pem:
        return dict(present=False, error='spire/x509pop.crt is missing from the stack directory')
    try:
        cert = load_pem_chain(cert_pem, label)[0]
    except X509Error as exc:
        return dict(present=False, error=str(exc))
    return dict(present=True, error=None, subject=cert.subject.rfc4514_string(),
                not_before=isoformat(not_valid_before(cert)), not_after=isoformat(not_valid_after(cert)),
                remaining_seconds=remaining_seconds(cert, now), expired=is_expired(cert, now),
                not_yet_valid=is_not_yet_valid(cert, now),
                agent_spiffe_id=x509pop_agent_spiffe_id(trust_domain, cert) if trust_domain else None)
