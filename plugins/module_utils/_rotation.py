# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Live rotation of the stack's credentials (private to this collection).

What the guide's rotation (new ``.env``, ``down``, ``up -d``) misses: PostgreSQL applies
``POSTGRES_PASSWORD`` only to an empty data directory, Redis takes its password from the ACL
file that the operator_stack role wrote once (``redis/users.acl``), and compose copies
``secrets:`` into a container when it creates it. So a rotation has to

1. change the live credentials: PostgreSQL ``ALTER ROLE ... PASSWORD '<SCRAM verifier>'``
   (computed here, so the plaintext never reaches the server, its log or
   ``pg_stat_activity``); Redis ``ACL SETUSER default #<sha256>`` (old and new valid
   during the roll-over), later ``!<old sha256>`` and ``ACL SAVE``;
2. rewrite ``.env.operator`` (backup first, atomic write);
3. recreate only the services that *read* a changed value at run time (the clients);
   the servers whose credential was changed live keep running;
4. verify: new credentials accepted, old ones refused, through :mod:`_live_auth` (PostgreSQL
   over the network, every login with a control that must be refused);
5. on failure, put the old live credentials and the old file back.

Everything that talks to a container goes through an ``executor(container, argv, env)``
returning ``(rc, output)``. Secret values travel only in the exec environment and stdin
of a shell builtin (``printf``), never in a command line (``docker events`` and ``ps``
show those). No message of this module contains a secret value.

What is rotated and how (the key, its server, how it is applied, probed and undone) is declared
in :mod:`_credentials`; this module is the engine for the kinds declared there.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import unicodedata

from ansible_collections.theprotocol.operator.plugins.module_utils import _credentials
from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
from ansible_collections.theprotocol.operator.plugins.module_utils import _live_auth
from ansible_collections.theprotocol.operator.plugins.module_utils import _redis_acl
from ansible_collections.theprotocol.operator.plugins.module_utils import _secrets

SCRAM_ITERATIONS = 4096
SCRAM_SALT_BYTES = 16

# The secrets rotated live: declared in _credentials (add one there, not here).
SUPPORTED_SECRETS = _credentials.ROTATABLE
# The keys whose live credential this engine changes (ALTER ROLE, the Redis ACL roll-over).
PG_KEY = _credentials.key_of(_credentials.POSTGRES)
REDIS_KEY = _credentials.key_of(_credentials.REDIS)

REDIS_USER = _redis_acl.DEFAULT_USER
_HASH_RE = re.compile(r'^[0-9a-f]{64}\Z')
_SCRAM_RE = re.compile(r'^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)\Z')
_VAR_REF_RE = r'\$(?:\{%s(?:[:?\-+}][^}]*)?\}?|%s(?![A-Za-z0-9_]))'


class RotationError(Exception):
    """A rotation step failed; the message names the step, never a value."""

    def __init__(self, msg, step=None):
        super().__init__(msg)
        self.step = step


# --------------------------------------------------------------------------- SCRAM

_NON_ASCII_SPACES = frozenset('\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a'
                              '\u200b\u202f\u205f\u3000')
_MAPPED_TO_NOTHING = frozenset('\u00ad\u034f\u1806\u180b\u180c\u180d\u200b\u200c\u200d\u2060\ufe00\ufe01\ufe02'
                               '\ufe03\ufe04\ufe05\ufe06\ufe07\ufe08\ufe09\ufe0a\ufe0b\ufe0c\ufe0d\ufe0e\ufe0f\ufeff')


def saslprep(password):
    """The password bytes PostgreSQL hashes: SASLprep (RFC 4013) as PostgreSQL applies it.

    ASCII passwords (all generated ones) are used as they are. For others the mapping and
    NFKC normalization of RFC 4013 are applied; like PostgreSQL, a string that SASLprep
    would reject (control or unassigned characters) is used as raw UTF-8.
    """
    if all(0x20 <= ord(c) < 0x7f for c in password):
        return password.encode('utf-8')
    mapped = ''.join(' ' if c in _NON_ASCII_SPACES else c for c in password if c not in _MAPPED_TO_NOTHING)
    normalized = unicodedata.normalize('NFKC', mapped)
    if not normalized or any(unicodedata.category(c) in ('Cc', 'Cn', 'Co', 'Cs') for c in normalized):
        return password.encode('utf-8')
    return normalized.encode('utf-8')


def _scram_keys(password, salt, iterations):
    salted = hashlib.pbkdf2_hmac('sha256', saslprep(password), salt, iterations)
    client_key = hmac.new(salted, b'Client Key', hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b'Server Key', hashlib.sha256).digest()
    return stored_key, server_key


def scram_sha256_verifier(password, salt=None, iterations=SCRAM_ITERATIONS):
    """PostgreSQL's ``SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`` for ``password``.

    ``ALTER ROLE ... PASSWORD '<verifier>'`` stores it as it is: the server never sees the
    plaintext (PostgreSQL's own ``\\password`` does the same).
    """
    if salt is None:
        salt = os.urandom(SCRAM_SALT_BYTES)
    stored_key, server_key = _scram_keys(password, salt, iterations)

    def b64(data):
        return base64.b64encode(data).decode('ascii')

    return 'SCRAM-SHA-256$%d:%s$%s:%s' % (iterations, b64(salt), b64(stored_key), b64(server_key))


def scram_verifier_matches(password, verifier):
    """Whether ``verifier`` (as stored in pg_authid) was made from ``password``."""
    match = _SCRAM_RE.match(verifier or '')
    if not match:
        return False
    try:
        salt = base64.b64decode(match.group(2), validate=True)
        stored = base64.b64decode(match.group(3), validate=True)
        server = base64.b64decode(match.group(4), validate=True)
    except ValueError:
        return False
    stored_key, server_key = _scram_keys(password, salt, int(match.group(1)))
    return hmac.compare_digest(stored_key, stored) and hmac.compare_digest(server_key, server)


# --------------------------------------------------------------------------- Redis

def redis_password_hash(password):
    """The SHA-256 (hex) under which Redis ACLs keep a password (``#<hash>`` in ACL SETUSER)."""
    return _redis_acl.password_hash(password)


def parse_redis_json_replies(output):
    """Replies of ``redis-cli --json`` (one per line); errors become RotationError-free dicts.

    Returns a list with the decoded reply for each line, or ``{'error': text}`` for an error
    reply. The error text comes from the server and never holds a password (Redis does not
    echo them), but hashes may appear; callers report only fixed words.
    """
    replies = []
    for line in output.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith('error:') or line.startswith('(error)') or line.startswith('AUTH failed'):
            replies.append({'error': line.split(':', 1)[-1].strip().strip('"')})
            continue
        try:
            replies.append(json.loads(line))
        except ValueError:
            replies.append({'error': 'unreadable reply'})
    return replies


def redis_setuser_commands(add=(), remove=(), save=True):
    """The redis-cli input that adds and removes password hashes of the default user.

    Plaintext passwords are never sent: ``#<hash>`` adds, ``!<hash>`` removes.
    """
    for value in list(add) + list(remove):
        if not _HASH_RE.match(value):
            raise RotationError('Internal error: a Redis password hash is not 64 lowercase hex digits.')
    modifiers = ['#' + h for h in add] + ['!' + h for h in remove]
    lines = []
    if modifiers:
        lines.append('ACL SETUSER %s %s' % (REDIS_USER, ' '.join(modifiers)))
    if save:
        lines.append('ACL SAVE')
    return '\n'.join(lines) + '\n'


# --------------------------------------------------------------------------- PostgreSQL

def pg_quote_ident(name):
    return '"%s"' % name.replace('"', '""')


def pg_alter_role_sql(user, verifier):
    """``ALTER ROLE`` that stores a SCRAM verifier (never a plaintext password)."""
    if not _SCRAM_RE.match(verifier):
        raise RotationError('Internal error: refusing to send something that is not a SCRAM verifier.')
    return 'ALTER ROLE %s PASSWORD \'%s\';\n' % (pg_quote_ident(user), verifier)


def pg_verifier_query(user):
    return "SELECT rolpassword FROM pg_authid WHERE rolname = '%s';\n" % user.replace("'", "''")


# --------------------------------------------------------------------------- planning

def validate_selection(selection):
    """The secret keys to rotate, in a fixed order; RotationError for unknown names."""
    selection = list(selection or SUPPORTED_SECRETS)
    unknown = [k for k in selection if k not in SUPPORTED_SECRETS]
    if unknown:
        raise RotationError('Cannot rotate %s: only %s are rotated live. Nothing was changed.'
                            % (', '.join(sorted(unknown)), ', '.join(SUPPORTED_SECRETS)))
    return [k for k in SUPPORTED_SECRETS if k in selection]


def _references(text, key):
    return re.search(_VAR_REF_RE % (re.escape(key), re.escape(key)), text) is not None


def consumers(config, key):
    """Services of a compose configuration (``docker compose config --no-interpolate --format json``)
    that receive the value of env variable ``key``: through a ``secrets:`` entry sourced from it,
    or through an ``environment:`` (or any other string) that references ``${key}``."""
    secret_names = set(name for name, spec in (config.get('secrets') or {}).items()
                       if isinstance(spec, dict) and spec.get('environment') == key)
    found = []
    for service, spec in sorted((config.get('services') or {}).items()):
        uses = False
        for entry in spec.get('secrets') or []:
            source = entry.get('source') if isinstance(entry, dict) else entry
            if source in secret_names:
                uses = True
        if not uses:
            uses = _references(json.dumps({k: v for k, v in spec.items() if k != 'secrets'}), key)
        if uses:
            found.append(service)
    return found


def plan_services(config, keys):
    """Which services to recreate after rotating ``keys``, and which keep running.

    Returns ``{'recreate': [...], 'live': {service: [keys]}, 'consumers': {key: [services]}}``.
    A service whose credential is changed live (``db`` for POSTGRES_PASSWORD, ``redis`` for
    REDIS_PASSWORD) reads the value only to initialize an empty data directory: recreating
    it would restart the server for nothing, so it is listed under ``live`` and kept.
    Every other service that gets a changed value is recreated (compose copies secrets into a
    container when it creates it, and does not see a changed secret value as a change).
    """
    services = config.get('services') or {}
    recreate = set()
    live = {}
    users = {}
    for key in keys:
        users[key] = consumers(config, key)
        server = _credentials.get(key).server
        # The server's credential is changed live, whether or not it reads the value (the official redis
        # image reads none: its password is in redis/users.acl).
        if server in services:
            live.setdefault(server, []).append(key)
        recreate.update(service for service in users[key] if service != server)
    return {'recreate': [s for s in sorted(services) if s in recreate], 'live': live, 'consumers': users}


def plan_rollback(old_values, current_values, live_state):
    """What a rollback must undo, from the backup's values, the file's values and the live state.

    ``live_state``: ``{'postgres_verifier': str or None, 'redis_hashes': [..] or None}``
    (None: could not be read). Returns ``{'env': [keys that differ], 'postgres': bool,
    'redis_add': [hash], 'redis_remove': [hashes]}``.
    """
    differ = [k for k in SUPPORTED_SECRETS if old_values.get(k) != current_values.get(k)]
    plan = {'env': differ, 'postgres': False, 'redis_add': [], 'redis_remove': []}
    old_pg = old_values.get(PG_KEY)
    if old_pg:
        verifier = live_state.get('postgres_verifier')
        plan['postgres'] = verifier is None or not scram_verifier_matches(old_pg, verifier)
    old_redis = old_values.get(REDIS_KEY)
    hashes = live_state.get('redis_hashes')
    if old_redis and hashes is not None:
        old_hash = redis_password_hash(old_redis)
        if old_hash not in hashes:
            plan['redis_add'] = [old_hash]
        plan['redis_remove'] = [h for h in hashes if h != old_hash]
    return plan


def env_values(data, keys=SUPPORTED_SECRETS):
    """The values of ``keys`` in env file content ``data`` (bytes); None for a missing key."""
    envfile = _envfile.EnvFile.from_bytes(data)
    return dict((k, envfile.value(k)) for k in keys)


def fingerprints(values):
    return dict((k, _secrets.fingerprint(v) if v else None) for k, v in sorted(values.items()))


# --------------------------------------------------------------------------- live operations

PSQL_LOCAL = ('psql -X -q -A -t -v ON_ERROR_STOP=1 -h /run/postgresql '
              '-U "$ROTATION_PG_USER" -d "$ROTATION_PG_DB"')
REDIS_CLI = 'redis-cli -h 127.0.0.1 --no-auth-warning --json'
# The internal key goes in a header read from the environment, never on a command line.
KEY_PROBE = ('import http.client, os\n'
             'c = http.client.HTTPConnection("127.0.0.1", %d, timeout=5)\n'
             'c.request("GET", "/internal/status", headers={"X-Internal-Key": os.environ["ROTATION_KEY"]})\n'
             'print(c.getresponse().status)\n')


def _stdin_shell(command):
    """``sh -c`` that feeds $ROTATION_INPUT to ``command`` through printf (a shell builtin)."""
    return ['/bin/sh', '-c', 'printf "%%s" "$ROTATION_INPUT" | %s' % command]


class Live:
    """Live credential operations on the stack's containers through ``executor``."""

    def __init__(self, executor, containers, pg_user, pg_db, registry_port=8080):
        self.run = executor
        self.containers = containers      # service -> container name
        self.pg_user = pg_user
        self.pg_db = pg_db
        self.registry_port = registry_port

    def _pg_env(self, **extra):
        env = {'ROTATION_PG_USER': self.pg_user, 'ROTATION_PG_DB': self.pg_db}
        env.update(extra)
        return env

    # PostgreSQL ---------------------------------------------------------------
    def pg_verifier(self):
        rc, out = self.run(self.containers['db'], _stdin_shell(PSQL_LOCAL),
                           self._pg_env(ROTATION_INPUT=pg_verifier_query(self.pg_user)))
        if rc != 0:
            raise RotationError('PostgreSQL: cannot read the role of %s (psql exited %d).' % (self.pg_user, rc),
                                'postgres')
        return out.strip() or None

    def pg_set_password(self, password):
        sql = pg_alter_role_sql(self.pg_user, scram_sha256_verifier(password))
        rc, out = self.run(self.containers['db'], _stdin_shell(PSQL_LOCAL), self._pg_env(ROTATION_INPUT=sql))
        if rc != 0:
            reason = 'read-only' if 'read-only' in out else 'psql exited %d' % rc
            raise RotationError('PostgreSQL refused ALTER ROLE %s (%s).' % (self.pg_user, reason), 'postgres')

    # Logins (through _live_auth: over the network for PostgreSQL, always with a control) ---------
    def login(self, kind, passwords):
        """``{label: accepted|refused|error}`` for ``passwords`` (label -> value) on ``kind``.

        ``error`` for every label when the probe or its control could not run (server down).
        RotationError when the server accepts a random wrong password (or Redis no password):
        then no login proves anything, and nothing may be decided from one.
        """
        results, problem = _live_auth.run(lambda service, argv, env: self.run(self.containers[service], argv, env),
                                          kind, passwords, self.pg_user, self.pg_db)
        voided = None if problem else _live_auth.control_problem(kind, results)
        if voided and voided[0] == 'accepts_any':
            raise RotationError('%s Nothing can be verified against it: fix the server first.' % voided[1], kind)
        if problem or voided:
            return dict((label, _live_auth.ERROR) for label in passwords)
        return dict((label, _live_auth.outcome(kind, *results[label]) if label in results else _live_auth.ERROR)
                    for label in passwords)

    def pg_login_ok(self, password):
        return self.login('postgres', {'secret': password})['secret'] == _live_auth.ACCEPTED

    # Redis --------------------------------------------------------------------
    def _redis(self, password, commands):
        rc, out = self.run(self.containers['redis'], _stdin_shell(REDIS_CLI),
                           {'REDISCLI_AUTH': password, 'ROTATION_INPUT': commands})
        if rc != 0:
            raise RotationError('Redis: redis-cli exited %d (is the redis container running?).' % rc, 'redis')
        return parse_redis_json_replies(out)

    def redis_hashes(self, password):
        """Password hashes of the default user, authenticating with ``password``."""
        replies = self._redis(password, 'ACL GETUSER %s\n' % REDIS_USER)
        reply = replies[-1] if replies else {'error': 'no reply'}
        if not isinstance(reply, dict) or 'error' in reply:
            raise RotationError('Redis: cannot read the ACL of user %s (authentication refused or Redis down).'
                                % REDIS_USER, 'redis')
        return list(reply.get('passwords') or [])

    def redis_change(self, password, add=(), remove=()):
        """Add/remove password hashes of the default user and ``ACL SAVE`` (authenticating with ``password``)."""
        replies = self._redis(password, redis_setuser_commands(add, remove))
        steps = (['ACL SETUSER'] if (add or remove) else []) + ['ACL SAVE']
        for index, step in enumerate(steps):
            reply = replies[index] if index < len(replies) else {'error': 'no reply'}
            if reply != 'OK':
                raise RotationError('Redis refused %s for user %s (authentication refused, or the ACL file cannot '
                                    'be written).' % (step, REDIS_USER), 'redis')

    def redis_login_ok(self, password):
        return self.login('redis', {'secret': password})['secret'] == _live_auth.ACCEPTED

    # internal key ----------------------------------------------------------------
    def internal_key_status(self, key):
        rc, out = self.run(self.containers['registry'], ['python3', '-c', KEY_PROBE % self.registry_port],
                           {'ROTATION_KEY': key})
        text = out.strip().splitlines()[-1:] if out.strip() else []
        return int(text[0]) if rc == 0 and text and text[0].isdigit() else None


def first_usable(candidates, check):
    """The first value of ``candidates`` (non-empty, de-duplicated) for which ``check`` is true."""
    seen = set()
    for value in candidates:
        if value and value not in seen:
            seen.add(value)
            if check(value):
                return value
    return None
