# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The stack's credentials: one declaration each (private to this collection).

This is the place to add a credential (CONTRIBUTING.md, "Add a credential"). Each
:class:`Credential` says which ``.env.operator`` key holds it, what it is, which compose
services receive it (as the compose secret ``compose_secret``, read through
``<KEY>_FILE=/run/secrets/<compose_secret>``), how a rotation applies it to the running
stack, how it is probed, how a rollback undoes it, and how a value is generated.

Derived from this table, in Python (nothing to edit there):

- the rotation: ``_rotation`` (keys it rotates, the server changed live, rollback plan),
  ``credential_rotate`` (the keys its ``secrets`` option accepts, per-key steps and checks),
  ``_rotation_journal.decide`` (which servers must hold the new value);
- the live password checks: ``_live_auth.KIND_OF_KEY``;
- the checklist's secret set: ``_checklist.SECRET_KEYS``, ``DB_SECRET_KEYS``,
  ``DB_SECRET_SERVICES``;
- the roles, through the lookup ``theprotocol.operator.credentials``: the keys ``operator_stack``
  generates in ``.env.operator`` and the keys ``secret_rotation``'s preflight accepts.

One copy in a file that cannot import Python, compared with this table by
``tests/unit/plugins/module_utils/test_credentials.py`` (a drift fails the unit tests and
names the file): ``roles/operator_stack/templates/docker-compose.operator.yml.j2``, the top-level
``secrets:`` (``<compose_secret>: {environment: <KEY>}``) and, in each consumer,
``secrets: [<compose_secret>]`` with ``<KEY>_FILE``.

Prose that names the keys (READMEs, comments, the molecule ``rotation`` scenario's
``verify.yml``) is not checked.

Pure data and lookups; no Ansible imports.
"""

from __future__ import annotations

import collections

from ansible_collections.theprotocol.operator.plugins.module_utils import _secrets

# What a credential is (kind).
POSTGRES = 'postgres'       # the password of the stack's PostgreSQL role (POSTGRES_USER)
REDIS = 'redis'             # the password of the Redis ACL user the stack uses (default)
API_KEY = 'api_key'         # a shared key between the stack's services, no server-side state
KINDS = (POSTGRES, REDIS, API_KEY)

# How a rotation applies a new value to the running stack (apply), besides rewriting .env.operator and
# recreating the consumers.
ALTER_ROLE = 'alter_role'                    # ALTER ROLE ... PASSWORD '<SCRAM verifier>' in the server
REDIS_ACL_ROLLOVER = 'redis_acl_rollover'    # ACL SETUSER #<new>: old and new valid; verify drops !<old>
RECREATE = 'recreate'                        # nothing live: recreating the consumers is the change
APPLIES = (ALTER_ROLE, REDIS_ACL_ROLLOVER, RECREATE)

# How a rollback undoes it (undo), besides restoring .env.operator byte for byte and recreating the consumers.
UNDO_ALTER_ROLE = 'alter_role_back'          # ALTER ROLE to the backup's value (unless the verifier matches it)
UNDO_REDIS_ACL = 'redis_acl_back'            # re-add the backup's hash, remove every other hash
UNDO_RECREATE = 'recreate_only'              # the restored file and the recreated consumers are the undo
UNDOS = (UNDO_ALTER_ROLE, UNDO_REDIS_ACL, UNDO_RECREATE)

# How it is probed (probe): a new value must be accepted, the old one refused.
#   postgres, redis: _live_auth (login over the stack network / on loopback, each with a control that must be
#                    refused); these are the _live_auth kinds.
#   internal_key:    the registry's GET /internal/status with X-Internal-Key (200 accepted, 401 refused),
#                    _rotation.Live.internal_key_status.
LOGIN_PROBES = (POSTGRES, REDIS)
INTERNAL_KEY_PROBE = 'internal_key'
PROBES = LOGIN_PROBES + (INTERNAL_KEY_PROBE,)

Credential = collections.namedtuple('Credential', (
    'key',              # the .env.operator key
    'kind',             # KINDS
    'title',            # for messages: what the value is
    'server',           # compose service whose live credential it is (None: no server-side state)
    'server_name',      # the server in messages (None with server None)
    'consumers',        # compose services that receive the value (compose secret, <KEY>_FILE)
    'compose_secret',   # the compose secret sourced from the key (top-level secrets: <name>: {environment: KEY})
    'apply',            # APPLIES
    'probe',            # PROBES
    'undo',             # UNDOS
    'alphabet',         # generation: _secrets.ALPHABETS
    'nbytes',           # generation: bytes of entropy of a new value (default; modules take secret_length)
))

# The declarations, in the order the keys are generated, rotated and reported.
CREDENTIALS = (
    Credential(key='POSTGRES_PASSWORD', kind=POSTGRES, title='PostgreSQL password of POSTGRES_USER',
               server='db', server_name='PostgreSQL', consumers=('registry', 'db'), compose_secret='postgres_password',
               apply=ALTER_ROLE, probe=POSTGRES, undo=UNDO_ALTER_ROLE,
               alphabet=_secrets.URLSAFE_BASE64, nbytes=_secrets.DEFAULT_SECRET_BYTES),
    Credential(key='REDIS_PASSWORD', kind=REDIS, title='Redis password of the ACL user default',
               server='redis', server_name='Redis', consumers=('registry',), compose_secret='redis_password',
               apply=REDIS_ACL_ROLLOVER, probe=REDIS, undo=UNDO_REDIS_ACL,
               alphabet=_secrets.URLSAFE_BASE64, nbytes=_secrets.DEFAULT_SECRET_BYTES),
    Credential(key='INTERNAL_API_KEY', kind=API_KEY, title='X-Internal-Key of the registry\'s /internal endpoints',
               server=None, server_name=None, consumers=('registry',), compose_secret='internal_api_key',
               apply=RECREATE, probe=INTERNAL_KEY_PROBE, undo=UNDO_RECREATE,
               alphabet=_secrets.URLSAFE_BASE64, nbytes=_secrets.DEFAULT_SECRET_BYTES),
)

BY_KEY = dict((c.key, c) for c in CREDENTIALS)
KEYS = tuple(c.key for c in CREDENTIALS)
# Every credential is rotated live (credential_rotate, the secret_rotation role).
ROTATABLE = KEYS
# The keys checked by logging in to their server (_live_auth), in order.
LOGIN_KEYS = tuple(c.key for c in CREDENTIALS if c.probe in LOGIN_PROBES)


def get(key):
    """The declaration of ``key``; KeyError for a key that is not a credential."""
    return BY_KEY[key]


def key_of(kind):
    """The key of the credential of ``kind`` (the stack has one of each), or None."""
    for credential in CREDENTIALS:
        if credential.kind == kind:
            return credential.key
    return None


def generate(key, nbytes=None):
    """A new value for credential ``key`` by its generation spec (``nbytes`` overrides its default)."""
    credential = get(key)
    return _secrets.generate_secret(credential.nbytes if nbytes is None else nbytes, credential.alphabet)
