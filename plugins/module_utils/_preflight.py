# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Preflight of the operator stack inputs (private to this collection).

Pure functions on the values an operator gives the ``operator_stack`` role; the
certificate work is done by ``_x509``. :func:`preflight` collects every problem
instead of stopping at the first, so the operator can fix all of them at once. Each
problem says what is wrong and what to do. No message ever holds key material.
"""

from __future__ import annotations

import datetime
import ipaddress
import re

from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
from ansible_collections.theprotocol.operator.plugins.module_utils import _x509 as x509u

DEFAULT_SPIRE_SERVER_PORT = 8081
DAY_SECONDS = 86400

# The two settings the guide makes mandatory for a federated registry, compared exactly.
REQUIRED_SETTINGS = (
    ('MINTING_AUTHORITY', 'disabled',
     'a federated registry must not mint: the EventStore rejects TokensIssued from federated registries'),
    ('EVENTSTORE_MTLS_REQUIRED', 'true',
     'mTLS with the SPIRE SVID is the only accepted external authentication; the legacy license header is refused'),
)

# W3C DID Core: did:<method-name>:<method-specific-id>; method-name is lowercase letters
# and digits, the id is idchars (ALPHA DIGIT . - _ or %XX) in ":"-separated parts, the last non-empty.
_IDCHAR = r'(?:[A-Za-z0-9._-]|%[0-9A-Fa-f]{2})'
DID_RE = re.compile(r'^did:[a-z0-9]+:(?:%s*:)*%s+\Z' % (_IDCHAR, _IDCHAR))


# RFC 1123 host name: dot-separated labels of letters, digits and "-" (not at either end), at
# most 253 characters. Nothing else may reach agent.conf (HCL) as the SPIRE server address.
_HOST_LABEL = r'[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?'
HOSTNAME_RE = re.compile(r'^(?=.{1,253}\Z)%s(?:\.%s)*\Z' % (_HOST_LABEL, _HOST_LABEL))

# Image references: the grammar of the OCI distribution / docker reference
# (github.com/distribution/reference regexp.go): [domain[:port]/]path[:tag][@digest].
_DOMAIN_COMPONENT = r'(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])'
_DOMAIN = r'(?:%s(?:\.%s)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?' % (_DOMAIN_COMPONENT, _DOMAIN_COMPONENT)
_PATH_COMPONENT = r'[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*'
_NAME = r'(?:%s/)?%s(?:/%s)*' % (_DOMAIN, _PATH_COMPONENT, _PATH_COMPONENT)
_TAG = r'[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}'
_DIGEST = r'[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}'
IMAGE_REFERENCE_RE = re.compile(r'^(%s)(?::(%s))?(?:@(%s))?\Z' % (_NAME, _TAG, _DIGEST))
IMAGE_NAME_MAX_LENGTH = 255
IMAGE_KEYS = ('spire_agent', 'cert_writer', 'nginx', 'registry', 'postgres', 'redis')


class PreflightError(Exception):
    """Unusable call of :func:`preflight` (not a finding about the inputs)."""


def _empty(value):
    return value is None or (isinstance(value, str) and not value.strip())


def _looks_like_path(data):
    text = data.strip() if isinstance(data, str) else data.decode('utf-8', 'replace').strip()
    return '-----BEGIN' not in text and '\n' not in text and text.startswith(('/', '~', './', '../'))


def _pem_problem(data, option, what):
    """The problem with PEM certificate text ``data`` that did not parse."""
    if _looks_like_path(data):
        return ('%s looks like a file path, not PEM content. Pass the content of the %s, for example '
                "\"{{ lookup('ansible.builtin.file', '/path/to/file.pem') }}\"." % (option, what))
    raw = data.encode('utf-8') if isinstance(data, str) else data
    if b'-----BEGIN CERTIFICATE-----' not in raw:
        return ('%s holds no PEM certificate (no "BEGIN CERTIFICATE" block). Pass the %s as PEM text.'
                % (option, what))
    return ('%s holds a PEM certificate block that cannot be parsed: the text is damaged or truncated. '
            'Copy the %s again from the onboarding material.' % (option, what))


def _load_certs(data, option, what, problems):
    try:
        return x509u.load_pem_chain(data, what)
    except x509u.X509Error:
        problems.append(_pem_problem(data, option, what))
        return None


def _load_key(data, option, problems):
    try:
        return x509u.load_pem_key(data, 'x509pop private key')
    except x509u.X509Error:
        raw = data.encode('utf-8') if isinstance(data, str) else data
        if _looks_like_path(data):
            problems.append("%s looks like a file path, not PEM content. Pass the content of the key file, for "
                            "example \"{{ lookup('ansible.builtin.file', '/path/to/key.pem') }}\" (keep it in "
                            'Ansible Vault).' % option)
        elif b'PRIVATE KEY-----' not in raw:
            problems.append('%s holds no PEM private key. Pass the private key of the x509pop attestation '
                            'certificate as PEM text.' % option)
        elif b'ENCRYPTED' in raw:
            problems.append('%s is an encrypted private key; the SPIRE agent reads the x509pop key unencrypted. '
                            'Decrypt it (openssl pkey) and protect it with Ansible Vault instead.' % option)
        else:
            problems.append('%s cannot be parsed as a private key: the text is damaged or of an unsupported type. '
                            'Copy the key again from the onboarding material.' % option)
        return None


def _cert_label(cert):
    return '"%s"' % (cert.subject.rfc4514_string() or '(empty subject)')


def check_names(operator_name, registry_name, problems):
    if _empty(operator_name):
        problems.append('operator_name is not set. Set it to the operator name the parent frame onboarded you with '
                        '(a DNS label such as acme).')
    else:
        try:
            x509u.validate_operator_name(operator_name)
        except x509u.X509Error as exc:
            problems.append('%s It is part of your SPIFFE ID spiffe://<trust-domain>/service/registry-<operator-name>.'
                            % exc)
    if _empty(registry_name):
        problems.append('registry_name is not set. Set it to the name of your registry stack (a DNS label such as '
                        'acme-registry); it prefixes the container names.')
    else:
        try:
            x509u.validate_operator_name(registry_name)
        except x509u.X509Error:
            problems.append('The registry name %r is invalid: use 1 to 63 lowercase letters, digits or "-", starting '
                            'and ending with a letter or digit (RFC 1123 label). It prefixes the container names '
                            '(<registry_name>-spire-agent, ...).' % (registry_name,))


def check_trust_domain(trust_domain, problems):
    """Problems with the trust domain; returns it when valid, else None."""
    if _empty(trust_domain):
        problems.append('trust_domain is not set. Set it to the trust domain of your parent frame, for example %s.'
                        % x509u.DEFAULT_TRUST_DOMAIN)
        return None
    try:
        return x509u.validate_trust_domain(trust_domain)
    except x509u.X509Error as exc:
        problems.append(str(exc))
        return None


def check_did(registry_did, problems):
    if _empty(registry_did):
        problems.append('registry_did is not set. Set it to the DID of your registry, for example '
                        'did:web:registry.example.com.')
    elif not isinstance(registry_did, str) or not DID_RE.match(registry_did):
        problems.append('The registry DID %r is not a DID. Expected did:<method>:<method-specific-id> (W3C DID syntax: '
                        'lowercase method, no spaces, no path, query or fragment), for example '
                        'did:web:registry.example.com.' % (registry_did,))


def host_problem(value, option):
    """Why ``value`` is not a bare host name or IP address (the message names ``option`` and the value), or None."""
    if not isinstance(value, str):
        return '%s %r must be a host name or IP address (a string).' % (option, value)
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        if '%' not in value:
            return None
    if HOSTNAME_RE.match(value) and not value.rsplit('.', 1)[-1].isdigit():
        return None
    return ('%s %r is not a bare host name or IP address: use letters, digits, "-" and "." only (RFC 1123 host name, '
            'for example spire.frame.example.com) or an IPv4/IPv6 address, with no scheme, port, path, quotes, '
            'braces, "#", spaces or line breaks.' % (option, value))


def check_spire_server(address, port, problems):
    if _empty(address):
        problems.append('spire_server_address is not set. Set it to the host name or IP address of the parent '
                        "frame's SPIRE server, as given at onboarding.")
    else:
        problem = host_problem(address, 'spire_server_address')
        if problem:
            problems.append(problem + ' It is written into the SPIRE agent configuration (agent.conf); the port '
                            'goes in spire_server_port.')
    if port is None:
        problems.append('spire_server_port is not set. Use the port of the SPIRE server (%d by default).'
                        % DEFAULT_SPIRE_SERVER_PORT)
    elif isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        problems.append('spire_server_port %r is not a TCP port (1 to 65535). Use the port of the SPIRE server '
                        '(%d by default).' % (port, DEFAULT_SPIRE_SERVER_PORT))


def image_problem(reference, option):
    """Why ``reference`` is not an image reference name[:tag][@digest], or None."""
    if not isinstance(reference, str) or not reference:
        return '%s is not set. Give the image as name[:tag][@digest], for example registry.example.com/spire-agent:1.13.3.' % option
    match = IMAGE_REFERENCE_RE.match(reference)
    if not match:
        return ('%s %r is not an image reference: expected [registry[:port]/]name[:tag][@digest] (OCI/docker reference '
                'grammar: lowercase path components, a tag of letters, digits, "_", "." and "-", a digest such as '
                'sha256:<64 hex>), with no spaces, quotes or line breaks.' % (option, reference))
    if len(match.group(1)) > IMAGE_NAME_MAX_LENGTH:
        return '%s %r: the repository name is longer than %d characters.' % (option, reference, IMAGE_NAME_MAX_LENGTH)
    return None


def check_images(images, problems):
    """Every image of the stack is set and is an image reference (they go into the compose file)."""
    if images is None:
        return
    if not isinstance(images, dict):
        problems.append('images must be a dictionary with the keys %s.' % ', '.join(IMAGE_KEYS))
        return
    missing = [k for k in IMAGE_KEYS if k not in images]
    unknown = sorted(str(k) for k in images if k not in IMAGE_KEYS)
    if missing or unknown:
        problems.append('images must have exactly the keys %s%s%s.' % (
            ', '.join(IMAGE_KEYS), '; missing: %s' % ', '.join(missing) if missing else '',
            '; unknown: %s' % ', '.join(repr(k) for k in unknown) if unknown else ''))
    for key in IMAGE_KEYS:
        if key in images:
            problem = image_problem(images[key], 'images.%s' % key)
            if problem:
                problems.append(problem)


def check_bind_address(address, problems, option='federation_bind_address'):
    """An IP address to publish a port on (goes into the compose file's ports)."""
    if address is None:
        return
    try:
        ipaddress.ip_address(address if isinstance(address, str) else '')
        ok = '%' not in address
    except ValueError:
        ok = False
    if not ok:
        problems.append('%s %r is not an IP address. Use an IPv4 or IPv6 address of this host to publish the port '
                        'on, for example 0.0.0.0 (all IPv4 addresses) or 127.0.0.1.' % (option, address))


def check_extra_hosts(extra_hosts, problems):
    """Entries ``name:ip`` for the containers' /etc/hosts."""
    for entry in extra_hosts or []:
        name, sep, address = entry.partition(':') if isinstance(entry, str) else ('', '', '')
        ok = bool(sep) and host_problem(name, 'name') is None
        if ok:
            try:
                ipaddress.ip_address(address)
                ok = '%' not in address
            except ValueError:
                ok = False
        if not ok:
            problems.append('extra_hosts entry %r is not <host name>:<IP address>, for example '
                            '"eventstore.example.com:192.0.2.10".' % (entry,))


_URL_RE = re.compile(r'^(https?)://(?:\[([0-9A-Fa-f:.]+)\]|([^/?#@\[\]:]+))(?::([0-9]{1,5}))?(/[A-Za-z0-9._~%/-]*)?\Z')


def shown_url(url):
    """``url`` for a message: user info, query and fragment replaced, so that no token is shown."""
    if not isinstance(url, str):
        return url
    url = re.sub(r'^([^/]*//)[^/?#]*@', r'\1<credentials>@', url)
    return re.sub(r'[?#].*', '?<query>', url, flags=re.S)


def url_secrets(url):
    """The parts of ``url`` that may hold a credential (user info, password, query, fragment), for no_log."""
    if not isinstance(url, str):
        return []
    parts = []
    match = re.match(r'^[^/]*//([^/?#]*)@', url)
    if match:
        parts += [match.group(1), match.group(1).partition(':')[2]]
    match = re.search(r'[?#](.*)', url, re.S)
    if match:
        parts.append(match.group(1))
    return [part for part in parts if len(part) >= 4]


def check_eventstore_url(url, problems):
    """EVENTSTORE_URL: https, no credentials (mTLS is the only authentication), no query or fragment."""
    if _empty(url) or (isinstance(url, str) and any(c in url for c in '\r\n\x00')):
        return  # a line break is reported by check_settings
    match = _URL_RE.match(url) if isinstance(url, str) else None
    port = int(match.group(4)) if match and match.group(4) else 443
    bad_host = match and ((match.group(2) is not None and host_problem(match.group(2), 'host'))
                          or (match.group(3) is not None and host_problem(match.group(3), 'host')))
    if not match or bad_host or not 1 <= port <= 65535:
        problems.append('eventstore_url %r is not a plain https:// URL: a host name or IP address and an optional port, '
                        'a path of letters, digits, "/", ".", "_", "~", "%%" and "-", and no user name, password or '
                        'token (mTLS with the SVID is the only accepted authentication), no query string or fragment, '
                        'no spaces or line breaks; for example https://eventstore.frame.example.com/api/v1/events/.'
                        % (shown_url(url),))
    elif match.group(1) != 'https':
        problems.append('eventstore_url %r must use https:// (the registry writes events over mTLS).' % (shown_url(url),))


def check_settings(settings, problems):
    normalized, setting_problems = _envfile.settings_problems(settings or {})
    problems.extend(setting_problems)
    for key, wanted, why in REQUIRED_SETTINGS:
        if key not in normalized:
            if not any(key in p for p in setting_problems):
                problems.append('settings lack %s. Set %s: "%s" (%s).' % (key, key, wanted, why))
        elif normalized[key] != wanted:
            problems.append('settings have %s=%r; it must be exactly "%s" (lowercase) because %s. Set %s: "%s".'
                            % (key, normalized[key], wanted, why, key, wanted))


def check_x509pop(cert_pem, key_pem, intermediates_pem, min_remaining_days, trust_domain, now, problems, facts):
    """Checks of the x509pop attestation certificate, its key and intermediates; fills ``facts``."""
    leaf = intermediates = key = None
    if _empty(cert_pem):
        problems.append('x509pop_cert is not set. Pass the x509pop attestation certificate (PEM) from the '
                        'onboarding material.')
    else:
        chain = _load_certs(cert_pem, 'x509pop_cert', 'x509pop attestation certificate', problems)
        if chain:
            leaf, intermediates = chain[0], chain[1:]
    if not _empty(intermediates_pem):
        extra = _load_certs(intermediates_pem, 'x509pop_intermediates', 'x509pop intermediate CA certificates',
                            problems)
        if extra is not None and intermediates is not None:
            intermediates.extend(extra)
    if _empty(key_pem):
        problems.append('x509pop_key is not set. Pass the private key (PEM) of the x509pop attestation certificate '
                        'from the onboarding material, kept in Ansible Vault.')
    else:
        key = _load_key(key_pem, 'x509pop_key', problems)
    if leaf is None:
        return

    facts['x509pop_not_after'] = x509u.isoformat(x509u.not_valid_after(leaf))
    remaining = x509u.remaining_seconds(leaf, now)
    facts['x509pop_remaining_days'] = remaining // DAY_SECONDS
    if trust_domain:
        facts['x509pop_agent_spiffe_id'] = x509u.x509pop_agent_spiffe_id(trust_domain, leaf)
    facts['x509pop_sha1_fingerprint'] = x509u.sha1_fingerprint(leaf)
    name = _cert_label(leaf)

    if key is not None and not x509u.key_matches_certificate(key, leaf):
        problems.append('x509pop_key does not belong to the x509pop certificate %s: the pair was mixed up. Pass '
                        'the key that was issued with this certificate (or both files of a renewed pair).' % name)
    if not x509u.has_digital_signature(leaf):
        problems.append('The x509pop certificate %s has no digitalSignature key usage, which x509pop attestation '
                        'needs (the agent signs the server\'s challenge). Ask the parent frame to issue it with '
                        'key usage digitalSignature.' % name)
    if x509u.is_ca(leaf):
        problems.append('The x509pop certificate %s is a CA certificate (basicConstraints CA:TRUE). Pass the '
                        'attestation certificate issued to your host, not the CA.' % name)
    time_ok = False
    if x509u.is_not_yet_valid(leaf, now):
        problems.append('The x509pop certificate %s is not valid before %s. Check the clock of the controller (NTP) '
                        'or wait until then.' % (name, x509u.isoformat(x509u.not_valid_before(leaf))))
    elif x509u.is_expired(leaf, now):
        problems.append('The x509pop certificate %s expired at %s; the SPIRE agent cannot attest with it. Ask the '
                        'parent frame for a renewed attestation certificate.'
                        % (name, x509u.isoformat(x509u.not_valid_after(leaf))))
    else:
        time_ok = True
        if min_remaining_days and remaining < min_remaining_days * DAY_SECONDS:
            problems.append('The x509pop certificate %s expires at %s, in less than the required %d day(s). Ask the '
                            'parent frame for a renewed attestation certificate before deploying.'
                            % (name, facts['x509pop_not_after'], min_remaining_days))

    if intermediates and time_ok:
        issuers = [c for c in intermediates if c.subject == leaf.issuer]
        if not issuers:
            problems.append('None of the %d x509pop intermediate certificate(s) issued the x509pop certificate %s '
                            '(its issuer is "%s"). Pass the intermediates the parent frame gave you with this '
                            'certificate, or none.' % (len(intermediates), name, leaf.issuer.rfc4514_string()))
        else:
            try:
                # The frame CA is not known here: check only that an intermediate issues the leaf.
                x509u.verify_chain(leaf, [], issuers, now=now)
            except x509u.X509Error:
                problems.append(_issuer_problem(issuers[0], name, now))


def _issuer_problem(issuer, name, now):
    label = _cert_label(issuer)
    if not x509u.is_ca(issuer):
        return ('The x509pop intermediate %s is not a CA certificate (basicConstraints CA:TRUE missing), so it cannot '
                'issue the x509pop certificate %s. Pass the intermediate CA certificates of the parent frame.'
                % (label, name))
    if x509u.is_expired(issuer, now):
        return ('The x509pop intermediate %s expired at %s. Ask the parent frame for its current intermediate CA '
                'certificate(s).' % (label, x509u.isoformat(x509u.not_valid_after(issuer))))
    if x509u.is_not_yet_valid(issuer, now):
        return ('The x509pop intermediate %s is not valid before %s. Check the clock of the controller (NTP).'
                % (label, x509u.isoformat(x509u.not_valid_before(issuer))))
    return ('The x509pop intermediate %s has the name of the issuer of the x509pop certificate %s but did not sign it '
            '(or its key usage or path length forbids it). Pass the intermediates the parent frame gave you with '
            'this certificate, or none.' % (label, name))


def check_bundle(bundle_pem, trust_domain, now, problems, facts):
    if _empty(bundle_pem):
        problems.append('trust_bundle is not set. Pass the SPIRE trust bundle (PEM) from the onboarding material.')
        return
    bundle = _load_certs(bundle_pem, 'trust_bundle', 'SPIRE trust bundle', problems)
    if bundle is None:
        return
    cas = [c for c in bundle if x509u.is_ca(c)]
    facts['trust_bundle_ca_count'] = len(cas)
    if not cas:
        problems.append('trust_bundle holds %d certificate(s) but no CA certificate (basicConstraints CA:TRUE). '
                        'Pass the SPIRE trust bundle of the parent frame, not a leaf certificate.' % len(bundle))
        return
    if all(x509u.is_expired(c, now) for c in cas):
        problems.append('Every CA certificate in trust_bundle has expired. Fetch the current bundle from the '
                        'parent frame (spire-server bundle show).')
    domains = []
    for ca in cas:
        for uri in x509u.spiffe_ids(ca):
            try:
                ca_domain, dummy = x509u.parse_spiffe_id(uri)
            except x509u.X509Error as exc:
                problems.append('The CA %s in trust_bundle carries an invalid SPIFFE ID: %s' % (_cert_label(ca), exc))
                continue
            domains.append(ca_domain)
            if trust_domain and ca_domain != trust_domain:
                problems.append('Trust domain mismatch: the CA %s in trust_bundle belongs to trust domain %s, but '
                                'trust_domain is %s. Use the bundle of your parent frame and its trust domain.'
                                % (_cert_label(ca), ca_domain, trust_domain))
    facts['trust_bundle_trust_domains'] = sorted(set(domains))


# The frame's workload entry selects the compose project (operator_onboarding's default selectors).
COMPOSE_PROJECT_SELECTOR = 'docker:label:com.docker.compose.project:'


def _text(value):
    return value.strip() if isinstance(value, str) and value.strip() else None


def registration(onboarding):
    """What the parent frame registered, from its onboarding.yml (parsed): a dict of the fields it names.

    Keys: operator_name, registry_name, trust_domain (``agent.trust_domain``, or a top-level
    ``trust_domain``), registry_spiffe_id, x509pop_sha1_fingerprint, workload_selectors (the registry
    workload entry's selectors, a list of strings) and compose_project (the value of its
    ``docker:label:com.docker.compose.project:`` selector); None where the file has none.
    """
    agent = onboarding.get('agent') if isinstance(onboarding.get('agent'), dict) else {}
    fingerprint = _text(onboarding.get('x509pop_certificate_sha1_fingerprint'))
    selectors = onboarding.get('registry_workload_selectors')
    selectors = [s for s in selectors if isinstance(s, str)] if isinstance(selectors, list) else None
    projects = [s[len(COMPOSE_PROJECT_SELECTOR):] for s in selectors or () if s.startswith(COMPOSE_PROJECT_SELECTOR)]
    return dict(
        operator_name=_text(onboarding.get('operator_name')),
        registry_name=_text(onboarding.get('registry_name')),
        trust_domain=_text(agent.get('trust_domain')) or _text(onboarding.get('trust_domain')),
        registry_spiffe_id=_text(onboarding.get('registry_spiffe_id')),
        x509pop_sha1_fingerprint=fingerprint.replace(':', '').lower() if fingerprint else None,
        workload_selectors=selectors,
        compose_project=projects[0] if len(projects) == 1 else None,
    )


def check_onboarding(onboarding, operator_name, registry_name, trust_domain, problems, x509pop_sha1=None):
    """Refuse inputs that differ from what the parent frame registered (its onboarding.yml).

    The frame's workload entry selects the compose project ``<registry_name>`` and issues
    ``spiffe://<trust_domain>/service/registry-<operator_name>``: a stack deployed under another
    registry name runs a cert-writer that gets no SVID, and nothing says why. ``onboarding`` is the
    parsed onboarding.yml of the operator's material; None or empty: nothing to compare. Returns the
    registration (see :func:`registration`) or None.
    """
    if onboarding is None or onboarding == {}:
        return None
    if not isinstance(onboarding, dict):
        problems.append('onboarding must be the content of onboarding.yml from the onboarding material (a mapping with '
                        'operator_name, registry_name, agent.trust_domain, registry_spiffe_id), not a %s.'
                        % type(onboarding).__name__)
        return None
    reg = registration(onboarding)
    if not reg['operator_name'] or not reg['registry_name']:
        problems.append('onboarding (onboarding.yml of the onboarding material) names no %s: it is not the file the '
                        "parent frame's onboarding wrote. Copy onboarding.yml again with the rest of the material, "
                        'or leave it out.' % ' and no '.join(
                            k for k in ('operator_name', 'registry_name') if not reg[k]))
        return reg
    names_ok = True
    if reg['operator_name'] != operator_name:
        names_ok = False
        problems.append(
            'The onboarding material was issued to operator %r (onboarding.yml: operator_name: %s, registry SPIFFE ID '
            '%s), but operator_name is %r. Set operator_name (theprotocol_operator_name in the inventory, '
            'operator_stack_operator_name for the role) to %r, or use the onboarding material of operator %r '
            '(<onboarding_dir>/%s/).' % (reg['operator_name'], reg['operator_name'], reg['registry_spiffe_id'] or '?',
                                         operator_name, reg['operator_name'], operator_name, operator_name))
    if reg['registry_name'] != registry_name:
        names_ok = False
        problems.append(
            'The parent frame registered the registry workload of operator %r for the compose project %r '
            '(onboarding.yml: registry_name: %s; its workload entry selects %s%s), but registry_name is %r: the '
            "stack's cert-writer would get no SVID. Set registry_name (theprotocol_registry_name in the inventory, "
            'operator_stack_registry_name for the role) to %r, or ask the parent frame to onboard operator %r again '
            'with registry name %r.' % (reg['operator_name'], reg['registry_name'], reg['registry_name'],
                                        COMPOSE_PROJECT_SELECTOR, reg['registry_name'], registry_name,
                                        reg['registry_name'], reg['operator_name'], registry_name))
    elif reg['compose_project'] and reg['compose_project'] != registry_name:
        # The frame recorded registry_name, but its workload entry selects another compose project.
        names_ok = False
        problems.append(
            "The parent frame's workload entry for operator %r selects the compose project %r (onboarding.yml: "
            'registry_workload_selectors: %s), not %r: the stack\'s cert-writer would get no SVID. Ask the parent '
            'frame to onboard operator %r again with registry name %r (its default selectors), or deploy with '
            'registry_name %r.' % (reg['operator_name'], reg['compose_project'], ', '.join(reg['workload_selectors']),
                                   registry_name, reg['operator_name'], registry_name, reg['compose_project']))
    if reg['trust_domain'] and trust_domain and reg['trust_domain'] != trust_domain:
        names_ok = False
        problems.append(
            'The parent frame registered operator %r in trust domain %r (onboarding.yml: agent.trust_domain: %s), but '
            'trust_domain is %r. Set trust_domain (theprotocol_trust_domain in the inventory, operator_stack_trust_domain '
            'for the role) to %r.' % (reg['operator_name'], reg['trust_domain'], reg['trust_domain'], trust_domain,
                                      reg['trust_domain']))
    if names_ok and reg['registry_spiffe_id'] and trust_domain and operator_name:
        try:
            expected = x509u.registry_spiffe_id(trust_domain, operator_name)
        except x509u.X509Error:
            expected = None  # the name or trust domain problem is already listed
        if expected and expected != reg['registry_spiffe_id']:
            problems.append(
                'The parent frame registered the registry workload as %s (onboarding.yml: registry_spiffe_id), but '
                'this stack expects %s (spiffe://<trust_domain>/service/registry-<operator_name>). Ask the parent '
                'frame to register %s, or check trust_domain and operator_name against its onboarding.yml.'
                % (reg['registry_spiffe_id'], expected, expected))
    if x509pop_sha1 and reg['x509pop_sha1_fingerprint'] and reg['x509pop_sha1_fingerprint'] != x509pop_sha1:
        problems.append(
            'The x509pop certificate (SHA-1 %s) is not the one the parent frame issued with this onboarding.yml '
            '(x509pop_certificate_sha1_fingerprint: %s). Copy x509pop.crt, x509pop.key, bundle.pem and onboarding.yml '
            'of the same issue together.' % (x509pop_sha1, reg['x509pop_sha1_fingerprint']))
    return reg


def preflight(operator_name=None, registry_name=None, trust_domain=x509u.DEFAULT_TRUST_DOMAIN, x509pop_cert=None,
              x509pop_key=None, x509pop_intermediates=None, trust_bundle=None, settings=None,
              x509pop_min_remaining_days=0, spire_server_address=None, spire_server_port=DEFAULT_SPIRE_SERVER_PORT,
              registry_did=None, images=None, federation_bind_address=None, extra_hosts=None, onboarding=None,
              check_onboarding_material=True, now=None):
    """Check all inputs; returns a dict with ``problems`` (list of str) and derived facts.

    ``onboarding`` is the parsed onboarding.yml of the material (what the parent frame registered);
    with ``check_onboarding_material`` false the material (x509pop certificate, key, intermediates,
    trust bundle, onboarding.yml) is not checked: the frame issues it later in the same run.
    """
    x509u.require_cryptography()
    if x509pop_min_remaining_days is None or x509pop_min_remaining_days < 0:
        raise PreflightError('x509pop_min_remaining_days must be 0 or more.')
    now = now or datetime.datetime.now(datetime.timezone.utc)
    problems = []
    facts = dict(x509pop_agent_spiffe_id=None, registry_spiffe_id=None, x509pop_not_after=None,
                 x509pop_remaining_days=None, x509pop_sha1_fingerprint=None, trust_bundle_ca_count=None,
                 trust_bundle_trust_domains=[], onboarding_registration=None)
    check_names(operator_name, registry_name, problems)
    valid_domain = check_trust_domain(trust_domain, problems)
    if valid_domain and not _empty(operator_name):
        try:
            facts['registry_spiffe_id'] = x509u.registry_spiffe_id(valid_domain, operator_name)
        except x509u.X509Error:
            pass  # the operator name problem is already listed
    check_did(registry_did, problems)
    check_spire_server(spire_server_address, spire_server_port, problems)
    check_settings(settings, problems)
    check_eventstore_url((settings or {}).get('EVENTSTORE_URL') if isinstance(settings, dict) else None, problems)
    check_images(images, problems)
    check_bind_address(federation_bind_address, problems)
    check_extra_hosts(extra_hosts, problems)
    if check_onboarding_material:
        check_x509pop(x509pop_cert, x509pop_key, x509pop_intermediates, x509pop_min_remaining_days, valid_domain, now,
                      problems, facts)
        check_bundle(trust_bundle, valid_domain, now, problems, facts)
        facts['onboarding_registration'] = check_onboarding(onboarding, operator_name, registry_name, trust_domain,
                                                            problems, facts['x509pop_sha1_fingerprint'])
    result = dict(problems=problems, valid=not problems)
    result.update(facts)
    return result


def format_problems(problems):
    """One message with every problem, numbered."""
    return 'Preflight found %d problem(s) in the operator stack inputs; nothing was changed:\n%s' % (
        len(problems), '\n'.join('%d. %s' % (i, p) for i, p in enumerate(problems, 1)))
