# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Generate, fingerprint, judge and mask stack secrets (private to this collection).

Pure functions; no Ansible imports.  A secret value is never part of any message this
module formats, nor of anything it returns other than :func:`generate_secret` and the
masking helpers, whose job is to hand the values to mask to a redactor.  Judgements come
back as reason strings that describe the value without quoting it, so modules and the
security checklist can show them.

The one masking rule (:func:`is_secret`): every non-empty value of ``.env.operator`` is
secret unless its key is declared public in :data:`PUBLIC_ENV_KEYS` (the settings the
operator_stack role writes, ``_operator_stack_base_settings`` in its ``vars/main.yml``;
a unit test keeps the two equal).  Inside text, a value is replaced only when it has at
least :data:`MIN_SUBSTITUTION_LENGTH` characters (:func:`substitutable`).
"""

from __future__ import annotations

import collections
import hashlib
import math
import re
import secrets

DEFAULT_SECRET_BYTES = 32
MIN_SECRET_BYTES = 16
MAX_SECRET_BYTES = 512
FINGERPRINT_LENGTH = 12
# How generated values are spelled (a credential's generation spec names one, see _credentials).
URLSAFE_BASE64 = 'urlsafe-base64'
ALPHABETS = (URLSAFE_BASE64,)

# Keys of .env.operator whose values are public facts of the stack (the operator guide's identity and
# settings; exactly the keys of _operator_stack_base_settings in roles/operator_stack/vars/main.yml).
# Every other value is a secret.
PUBLIC_ENV_KEYS = frozenset((
    'OPERATOR_NAME', 'REGISTRY_NAME', 'REGISTRY_DID', 'TRUST_DOMAIN', 'POSTGRES_USER', 'POSTGRES_DB',
    'EVENTSTORE_URL', 'EVENT_INTERVAL', 'CERT_WRITER_INTERVAL', 'FEDERATION_PORT', 'MINTING_AUTHORITY',
    'EVENTSTORE_MTLS_REQUIRED',
))
# A secret shorter than this is not replaced inside text (it would shred the evidence: "db", "true");
# it is still never collected or shown on its own.
MIN_SUBSTITUTION_LENGTH = 4
# Ansible's no_log_values mask a value in *every* string of a module's output (paths, messages): a
# value is handed to it only from this length on, and never a well-known default ("redis").
MIN_NO_LOG_LENGTH = 8

# Below these a value is judged weak.
MIN_LENGTH = 16
MIN_ENTROPY_BITS = 40

# Values that ship as defaults in images, tutorials and example files. Compared in
# lower case, and also after removing digits/symbols at both ends and undoing common
# letter substitutions (P@ssw0rd1! -> password).
WELL_KNOWN_DEFAULTS = frozenset((
    '123456', '1234567', '12345678', '123456789', '1234567890', '000000', '111111', '654321',
    'admin', 'administrator', 'changeit', 'changeme', 'default', 'demo', 'example', 'foobar', 'guest',
    'insecure', 'letmein', 'master', 'mysecret', 'operator', 'pass', 'passwd', 'password', 'postgres',
    'postgresql', 'qwerty', 'redis', 'registry', 'root', 'sample', 'secret', 'supersecret', 'test', 'testing',
    'theprotocol', 'toor', 'user', 'welcome',
))

_LEET = str.maketrans({'0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '@': 'a', '$': 's', '!': 'i'})
_EDGES_RE = re.compile(r'^[^a-z]+|[^a-z]+$')
_NON_LETTERS_RE = re.compile(r'[^a-z]')
GENERATED_SECRET_RE = re.compile(r'^[A-Za-z0-9_-]+\Z')


class SecretError(Exception):
    """Invalid request to this module; the message never holds a secret value."""


def generate_secret(nbytes=DEFAULT_SECRET_BYTES, alphabet=URLSAFE_BASE64):
    """A new random secret: ``nbytes`` of entropy as URL-safe base64 without padding.

    The alphabet (A-Z a-z 0-9 - _) needs no quoting in a dotenv file, a shell, a URL
    or a PostgreSQL/Redis connection string.
    """
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or not MIN_SECRET_BYTES <= nbytes <= MAX_SECRET_BYTES:
        raise SecretError('The secret length must be a whole number of bytes between %d and %d, got %r.'
                          % (MIN_SECRET_BYTES, MAX_SECRET_BYTES, nbytes))
    if alphabet not in ALPHABETS:
        raise SecretError('Unknown secret alphabet %r (known: %s).' % (alphabet, ', '.join(ALPHABETS)))
    return secrets.token_urlsafe(nbytes)


def fingerprint(value):
    """First 12 hex digits of the SHA-256 of ``value``: shows that a value changed, not what it is.

    Returns None for a missing value.  Do not publish fingerprints of weak values:
    a dictionary of common passwords finds them.
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = value.encode('utf-8')
    return hashlib.sha256(value).hexdigest()[:FINGERPRINT_LENGTH]


def _pool_size(value):
    size = 0
    if any(c.islower() for c in value):
        size += 26
    if any(c.isupper() for c in value):
        size += 26
    if any(c.isdigit() for c in value):
        size += 10
    if any(not c.isalnum() for c in value):
        size += 33
    return max(size, 1)


def estimate_entropy_bits(value):
    """A simple per-character entropy estimate of ``value``, in bits.

    Length times the smaller of the Shannon entropy of the character frequencies in
    the value and log2 of the size of the character classes it uses. It does not know
    about words, so it is an upper bound for anything a person typed.
    """
    if not value:
        return 0.0
    length = len(value)
    counts = collections.Counter(value)
    shannon = -sum(n / length * math.log2(n / length) for n in counts.values())
    return length * min(shannon, math.log2(_pool_size(value)))


def _is_repeated_pattern(value):
    length = len(value)
    for period in range(1, length // 2 + 1):
        if length % period == 0 and value[:period] * (length // period) == value:
            return True
    return False


def _is_repeated_default(word):
    return any(len(word) % len(default) == 0 and word == default * (len(word) // len(default))
               for default in WELL_KNOWN_DEFAULTS)


def _is_sequence(value):
    if len(value) < 4:
        return False
    steps = 0
    for a, b in zip(value, value[1:]):
        diff = ord(b) - ord(a)
        if diff in (-1, 1) or (a, b) in (('9', '0'), ('0', '9'), ('z', 'a'), ('a', 'z'), ('Z', 'A'), ('A', 'Z')):
            steps += 1
    return steps >= 0.75 * (len(value) - 1)


def weakness(value, key=None):
    """Why ``value`` is a weak secret, or None when it is not.

    The reason describes the value without quoting it, e.g. ``is a well-known default
    value``; prefix it with the key name to show it. ``key`` (optional) is the name the
    value is stored under: a value equal to its own name is weak too.
    """
    if value is None or value == '':
        return 'is empty'
    if not isinstance(value, str):
        raise SecretError('A secret value must be a string.')
    lowered = value.strip().lower()
    if lowered in WELL_KNOWN_DEFAULTS:
        return 'is a well-known default value'
    stripped = _EDGES_RE.sub('', lowered)
    for candidate in (stripped, _EDGES_RE.sub('', stripped.translate(_LEET)), _NON_LETTERS_RE.sub('', stripped)):
        if candidate and (candidate in WELL_KNOWN_DEFAULTS or _is_repeated_default(candidate)):
            return 'is a well-known default value with only digits, symbols, repeats or letter substitutions added'
    if key and lowered in (key.lower(), key.lower().replace('_', ''), key.lower().replace('_', '-')):
        return 'equals its own key name'
    if len(value) < MIN_LENGTH:
        return 'is shorter than %d characters' % MIN_LENGTH
    if _is_repeated_pattern(value):
        return 'is a short pattern repeated'
    if _is_sequence(value):
        return 'is a keyboard or alphabet sequence'
    if estimate_entropy_bits(value) < MIN_ENTROPY_BITS:
        return 'has low entropy (estimated below %d bits)' % MIN_ENTROPY_BITS
    return None


def is_weak(value, key=None):
    """True when :func:`weakness` finds a reason."""
    return weakness(value, key) is not None


# --------------------------------------------------------------------------- the masking rule

def is_secret(key, value, public_keys=PUBLIC_ENV_KEYS):
    """Whether the value of env key ``key`` is a secret: any non-empty value of a key not declared public."""
    return bool(value) and key not in public_keys


def _pairs(env):
    if hasattr(env, 'value') and hasattr(env, 'keys'):     # an _envfile.EnvFile
        return [(key, env.value(key)) for key in env.keys()]
    if hasattr(env, 'items'):
        return list(env.items())
    return list(env)


def secret_values(env, public_keys=PUBLIC_ENV_KEYS):
    """The secret values of ``env`` by :func:`is_secret`, in the order of its keys.

    ``env``: a parsed env file (``_envfile.EnvFile``), a mapping, or ``(key, value)`` pairs.
    """
    return [value for key, value in _pairs(env) if is_secret(key, value, public_keys)]


def substitutable(values):
    """The values that are replaced inside text (at least :data:`MIN_SUBSTITUTION_LENGTH` characters),
    without repeats, longest first (so that a secret containing another is removed whole)."""
    unique = set(v for v in values if isinstance(v, str) and len(v) >= MIN_SUBSTITUTION_LENGTH)
    return sorted(unique, key=lambda v: (-len(v), v))


def no_log_values(values):
    """The values to hand to Ansible's ``no_log_values`` (defence in depth for a module's own output).

    Short and well-known values are left out: masking "redis" would mangle every path and
    message that contains the word, and such values are public anyway.
    """
    return set(v for v in values
               if isinstance(v, str) and len(v) >= MIN_NO_LOG_LENGTH and v.lower() not in WELL_KNOWN_DEFAULTS)
