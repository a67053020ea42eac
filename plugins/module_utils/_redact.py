# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Redaction of secrets from text that leaves the host (private to this collection).

One secret set for everything that is redacted: the values of the stack's env file *and* of
every backup of it (``<env>.<stamp>.bak``, old passwords stay in logs after a rotation), plus
what any text betrays by its shape: URL user info (``redis://:pw@redis``,
``https://user:token@host``), known header and parameter names (``X-Internal-Key: v``,
``Authorization: Bearer v``, ``password=v``, ``"token": "v"``), the Redis ``AUTH``/``-a``/
``requirepass``/``ACL SETUSER >pw`` forms, and private key blocks.

Which env values are secret and how short a value may be and still be replaced inside text is
the one masking rule of ``_secrets`` (:func:`_secrets.is_secret`, :data:`MIN_SUBSTITUTION_LENGTH`);
this module applies it to the env file, its backups and the pending values of a rotation.

Pure functions and a :class:`Redactor`; no Ansible or Docker imports.
"""

from __future__ import annotations

import re

try:
    from urllib.parse import quote
except ImportError:  # pragma: no cover (Python 2 is not supported by the collection)
    quote = None

from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation_journal
from ansible_collections.theprotocol.operator.plugins.module_utils import _secrets

REDACTED = '<redacted>'
# The masking rule, declared in _secrets.
MIN_SUBSTITUTION_LENGTH = _secrets.MIN_SUBSTITUTION_LENGTH
PUBLIC_ENV_KEYS = _secrets.PUBLIC_ENV_KEYS
secret_values = _secrets.secret_values
MAX_ENV_FILE_BYTES = 1024 * 1024

# Names whose value is a secret, as env keys, parameters, JSON keys or headers (case-insensitive).
SECRET_NAME = (r'[A-Za-z0-9_.-]*(?:PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|API[-_]?KEY|APIKEY|ACCESS[-_]?KEY|'
               r'PRIVATE[-_]?KEY|CREDENTIALS?|LICENSE[-_]?KEY|INTERNAL[-_]?KEY|AUTH|REQUIREPASS|MASTERAUTH)'
               r'[A-Za-z0-9_.-]*')
SECRET_HEADERS = ('Authorization', 'Proxy-Authorization', 'X-Internal-Key', 'X-Federation-License', 'X-Api-Key',
                  'X-Auth-Token')
COOKIE_HEADERS = ('Cookie', 'Set-Cookie')

_ENV_LINE_RE = re.compile(r'^(\s*(?:export\s+)?[A-Z][A-Z0-9_]{2,}\s*=).*$', re.M)
# Headers: a quoted value (repr/JSON of a header dict), or an optional auth scheme and one token
# (the rest of the line, such as a status code, stays readable); cookies: the rest of the line.
_HEADER_RE = re.compile(r'''(\b(?:%s)\b["']?\s*:\s*)("[^"\r\n]*"|'[^'\r\n]*'|(?:(?:Bearer|Basic|Digest|Token|Negotiate)\s+)?[^\s,;]+)'''
                        % '|'.join(re.escape(h) for h in SECRET_HEADERS), re.I)
_COOKIE_RE = re.compile(r'(\b(?:%s)\s*:\s*)([^\r\n]+)' % '|'.join(COOKIE_HEADERS), re.I)
_ASSIGN_RE = re.compile(r'''(\b%s\b["']?\s*(?:=|:)\s*)("[^"]*"|'[^']*'|[^\s,;&'"}\]]+)''' % SECRET_NAME, re.I)
# Query parameters with a short generic name that still carries a credential.
_QUERY_RE = re.compile(r'([?&;](?:key|sig|signature|code|auth)=)([^&\s#"\']+)', re.I)
# scheme://userinfo@ : the whole user info goes (a user name may itself be a token).
_URL_USERINFO_RE = re.compile(r'\b([a-z][a-z0-9+.-]*://)[^\s/@?#]*@', re.I)
# Redis: AUTH [user] password (uppercase, the command; "auth denied" in a log is not one).
_REDIS_AUTH_RE = re.compile(r'''(\bAUTH\b["']?\s+)(?!failed\b|error\b|ok\b)("[^"]*"|'[^']*'|\S+)(?:(\s+)("[^"]*"|'[^']*'|(?!failed\b|error\b)[^\s"']+))?''')
_REDIS_CLI_PASS_RE = re.compile(r'''((?:\bredis-cli\b[^\r\n]*?\s-a|\s--pass|\s--askpass-value)\s+)("[^"]*"|'[^']*'|\S+)''')
_REDIS_CONF_RE = re.compile(r'(\b(?:requirepass|masterauth)\s+)(\S+)', re.I)
_REDIS_ACL_RE = re.compile(r'(\bSETUSER\b[^\r\n]*)')
_REDIS_ACL_PASS_RE = re.compile(r'(\s)([<>])(?!\s)\S+')
_PRIVATE_KEY_RE = re.compile(r'-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)', re.S)


# --------------------------------------------------------------------------- the secret set

def _fallback_values(data):
    """Every value-looking part of every ``KEY=value`` line of text that does not parse as an env file."""
    values = []
    for line in data.decode('utf-8', errors='replace').splitlines():
        key, sep, value = line.partition('=')
        key = key.strip()
        if key.startswith('export '):
            key = key[len('export '):].strip()
        if sep and not key.startswith('#'):
            values.append((key, value.strip().strip('"\'')))
    return values


def env_values(data, public_keys=PUBLIC_ENV_KEYS):
    """The secret values (:func:`_secrets.is_secret`) of env file content ``data`` (bytes)."""
    if not data:
        return []
    try:
        envfile = _envfile.EnvFile.from_bytes(data, 'env file')
        pairs = [(key, envfile.value(key)) for key in envfile.keys()]
    except _envfile.EnvFileError:
        pairs = _fallback_values(data)
    return _secrets.secret_values(pairs, public_keys)


def _read(path):
    try:
        with open(path, 'rb') as handle:
            return handle.read(MAX_ENV_FILE_BYTES)
    except (IOError, OSError):
        return None


def env_file_secrets(path, public_keys=PUBLIC_ENV_KEYS):
    """``(values, files)``: the secret values of the env file ``path``, of every backup of it and of the
    pending values of an unfinished rotation (``<path>.pending``).

    ``files`` is the number of files read (the current one when it exists, each backup, the pending file).
    """
    values, files = [], 0
    for name in [path] + _envfile.list_backups(path) + [_rotation_journal.pending_path(path)]:
        data = _read(name)
        if data is None:
            continue
        files += 1
        values.extend(env_values(data, public_keys))
    unique = []
    for value in values:
        if value not in unique:
            unique.append(value)
    return unique, files


# --------------------------------------------------------------------------- redaction

def _redact_acl(match):
    return _REDIS_ACL_PASS_RE.sub(lambda m: m.group(1) + m.group(2) + REDACTED, match.group(1))


class Redactor:
    """Removes the secret values and every credential-shaped part from text and nested data."""

    def __init__(self, secrets=()):
        values = _secrets.substitutable(secrets)
        if quote is not None:
            values = _secrets.substitutable(values + [quote(value, safe='') for value in values])  # as in a URL
        self._values = values

    @property
    def count(self):
        return len(self._values)

    def text(self, value, env_lines=True):
        """``value`` without secrets; ``env_lines`` also blanks whole ``KEY=value`` lines (log text)."""
        if not isinstance(value, str) or not value:
            return value
        for secret in self._values:
            if secret in value:
                value = value.replace(secret, REDACTED)
        value = _PRIVATE_KEY_RE.sub('<redacted private key>', value)
        if env_lines:
            value = _ENV_LINE_RE.sub(r'\1' + REDACTED, value)
        value = _URL_USERINFO_RE.sub(r'\1' + REDACTED + '@', value)
        value = _HEADER_RE.sub(r'\1' + REDACTED, value)
        value = _COOKIE_RE.sub(r'\1' + REDACTED, value)
        value = _ASSIGN_RE.sub(r'\1' + REDACTED, value)
        value = _QUERY_RE.sub(r'\1' + REDACTED, value)
        value = _REDIS_AUTH_RE.sub(lambda m: m.group(1) + REDACTED + ((m.group(3) + REDACTED) if m.group(4) else ''),
                                   value)
        value = _REDIS_CLI_PASS_RE.sub(r'\1' + REDACTED, value)
        value = _REDIS_CONF_RE.sub(r'\1' + REDACTED, value)
        value = _REDIS_ACL_RE.sub(_redact_acl, value)
        return value

    def data(self, value):
        """Nested ``value`` (dicts, lists, strings) with :meth:`text` applied to every string (not env lines)."""
        if isinstance(value, str):
            return self.text(value, env_lines=False)
        if isinstance(value, dict):
            return dict((self.text(k, env_lines=False) if isinstance(k, str) else k, self.data(v))
                        for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return [self.data(v) for v in value]
        return value

    def leaks(self, text):
        """The number of secret values still found in ``text`` (for self-checks; never the values)."""
        return sum(1 for secret in self._values if secret in (text or ''))
