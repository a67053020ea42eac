#!/usr/bin/python
# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: operator_env
short_description: Manage the operator stack's C(.env.operator) without ever showing a secret
version_added: 0.1.0
description:
  - Ensures settings and generated secrets in the dotenv file that docker compose reads for the operator stack,
    typically C(/opt/theprotocol/<registry_name>/.env.operator).
  - Reads and writes the file as docker compose does (C(KEY=value), C(export KEY=value), comments, blank lines, single
    and double quotes). Comments, the order of lines and keys it does not manage are kept as they are.
  - A secret is generated (Python C(secrets), URL-safe base64 without padding, so compose reads it back verbatim without
    quoting) only where its key is missing or empty. An existing value is never overwritten, except for keys listed in
    O(rotate).
  - Before any change of the content, the current file is copied to C(<path>.<YYYYmmddTHHMMSSZ>.bak) with mode C(0600).
    The new content is written to a temporary file in the same directory, created with mode C(0600), synced, and renamed
    over the file, so the file is never partly written nor readable by others.
  - The module never returns, logs or prints a secret value, neither in results, warnings, errors nor diffs. Secret keys
    can be told apart only through RV(fingerprints).
  - Fails before changing anything when the file has a line it cannot parse (the message names the line number, never
    its content), when a key is both a setting and a secret, when a key name is invalid, or when a setting value holds a
    line break.
author:
  - TheProtocol operator collection contributors (!UNKNOWN)
extends_documentation_fragment:
  - theprotocol.operator._attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports which keys would be added, generated, rotated or updated; writes nothing, not even a backup.
  diff_mode:
    support: full
    details:
      - Every value except those of O(settings) is shown as C(<redacted>), with C((generated)) or C((rotated)) after the
        secrets that change.
  idempotent:
    support: partial
    details:
      - Idempotent unless O(rotate) is set; every run with O(rotate) generates new values for those keys.
options:
  path:
    description:
      - The env file, for example C(/opt/theprotocol/acme/.env.operator). Its directory must exist.
      - Created when missing. A symbolic link is followed; the file it points to is written.
    type: path
    required: true
  settings:
    description:
      - Non-secret keys that must be present with exactly this value, for example V(MINTING_AUTHORITY=disabled) and
        V(EVENTSTORE_MTLS_REQUIRED=true).
      - Booleans are written as V(true)/V(false), numbers as text. Values must not contain line breaks.
      - Values are shown in diffs and messages; do not put secrets here, list them in O(secrets).
    type: dict
    default: {}
  secrets:
    description:
      - Keys that must hold a secret, for example V(POSTGRES_PASSWORD), V(REDIS_PASSWORD), V(INTERNAL_API_KEY).
      - A new random value is generated for a key that is missing or empty; an existing value is kept as it is (and
        reported in RV(weak_keys) when it is weak).
    type: list
    elements: str
    default: []
  secret_length:
    description:
      - Bytes of entropy of each generated secret (the value is about 4/3 as many characters long).
    type: int
    default: 32
  rotate:
    description:
      - Secret keys to give a new random value now, whether they have one or not. They count as O(secrets).
      - This changes only the file. Changing the live credentials that use these values is up to the caller (see the
        C(secret_rotation) role).
    type: list
    elements: str
    default: []
  backup:
    description:
      - Copy the current file to C(<path>.<YYYYmmddTHHMMSSZ>.bak) (mode C(0600)) before changing its content.
    type: bool
    default: true
  backup_keep:
    description:
      - After a backup, remove all but this many newest backups of O(path). V(0) keeps all of them.
    type: int
    default: 10
  mode:
    description:
      - Permissions of the file, octal, for example V('0600'). Modes that give other users any access are refused.
    type: raw
    default: '0600'
  owner:
    description:
      - Name or UID of the user that should own the file. Default is to keep the owner of an existing file, or the
        remote user for a new one.
    type: str
  group:
    description:
      - Name or GID of the group of the file. Default is to keep the group of an existing file.
    type: str
notes:
  - Values are written unquoted when they consist of letters, digits and C(_./:@%+,=^~-), and in single quotes
    otherwise, so that compose neither cuts them at C(#) nor expands C($).
  - RV(fingerprints) of weak values can be recognized by anyone with a list of common passwords; fix RV(weak_keys) by
    rotating them.
seealso:
  - module: theprotocol.operator.operator_preflight
"""

EXAMPLES = r"""
- name: Ensure the stack settings and secrets
  theprotocol.operator.operator_env:
    path: /opt/theprotocol/acme/.env.operator
    settings:
      OPERATOR_NAME: acme
      MINTING_AUTHORITY: disabled
      EVENTSTORE_MTLS_REQUIRED: "true"
    secrets:
      - POSTGRES_PASSWORD
      - REDIS_PASSWORD
      - INTERNAL_API_KEY
  register: env

- name: Warn about weak secrets that were there before
  ansible.builtin.debug:
    msg: "Weak: {{ env.weak_keys | join(', ') }}"
  when: env.weak_keys | length > 0

- name: Give the Redis password a new value (the live change is the caller's job)
  theprotocol.operator.operator_env:
    path: /opt/theprotocol/acme/.env.operator
    secrets: [POSTGRES_PASSWORD, REDIS_PASSWORD, INTERNAL_API_KEY]
    rotate: [REDIS_PASSWORD]
    backup_keep: 5
  register: rotated
"""

RETURN = r"""
changed:
  description: Whether the content, mode, owner or group of the file changed (or would change in check mode).
  returned: always
  type: bool
  sample: true
added_keys:
  description: Keys that were not in the file and were appended (settings and generated secrets).
  returned: success
  type: list
  elements: str
  sample: [POSTGRES_PASSWORD]
generated_keys:
  description: Secret keys that were missing or empty and got a generated value. Names only, never values.
  returned: success
  type: list
  elements: str
  sample: [POSTGRES_PASSWORD]
rotated_keys:
  description: Keys of O(rotate) whose existing value was replaced by a new generated one. Names only, never values.
  returned: success
  type: list
  elements: str
  sample: []
updated_keys:
  description: Settings whose value in the file differed and was set to the value in O(settings).
  returned: success
  type: list
  elements: str
  sample: [MINTING_AUTHORITY]
weak_keys:
  description:
    - Secret keys kept with their existing value although it is weak (see RV(weak_reasons)).
    - A warning names them too. Rotate them to fix this.
  returned: success
  type: list
  elements: str
  sample: [POSTGRES_PASSWORD]
weak_reasons:
  description: For each key of RV(weak_keys), why its value is weak, without the value.
  returned: success
  type: dict
  sample: {POSTGRES_PASSWORD: is a well-known default value}
fingerprints:
  description:
    - For every secret key (O(secrets) and O(rotate)), the first 12 hexadecimal digits of the SHA-256 of its value, so
      that later tasks can see that a value changed without seeing it.
    - V(null) for a key without value, and in check mode for a key that would get a new value.
    - B(No secret value is ever returned) by this module, in any field.
  returned: success
  type: dict
  sample: {POSTGRES_PASSWORD: 3f1c0a9e42b7, REDIS_PASSWORD: 9b0d41e6c2aa}
backup_file:
  description: The backup made before the change; V(null) when no backup was made.
  returned: success
  type: str
  sample: /opt/theprotocol/acme/.env.operator.20260604T120000Z.bak
removed_backups:
  description: Old backups removed because of O(backup_keep).
  returned: success
  type: list
  elements: str
  sample: []
duplicate_keys:
  description: Managed keys that appear on more than one line of the file (compose uses the last one).
  returned: success
  type: list
  elements: str
  sample: []
path:
  description: The file that was managed (after following a symbolic link).
  returned: success
  type: str
  sample: /opt/theprotocol/acme/.env.operator
"""

import datetime
import grp
import os
import pwd

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation_journal
from ansible_collections.theprotocol.operator.plugins.module_utils import _secrets


def _resolve_id(name, kind):
    """UID/GID for a user/group name or number; raises EnvFileError."""
    if name is None:
        return None
    if name.isdigit():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid if kind == 'owner' else grp.getgrnam(name).gr_gid
    except KeyError:
        raise _envfile.EnvFileError('The %s %r does not exist on this host. Create it first or give a numeric id.'
                                    % ('user' if kind == 'owner' else 'group', name)) from None


def run(params, check_mode=False, diff_mode=False, now=None, generate=_secrets.generate_secret, secret_values=None):
    """Do the work of the module; returns ``(result, warnings)``; raises EnvFileError before changing anything.

    ``secret_values`` (a set), when given, receives every secret value seen or made, so
    the caller can keep them out of its output.
    """
    path = os.path.realpath(params['path'])
    settings, secret_keys, rotate_keys = _envfile.validate_request(
        params['settings'], params['secrets'], params['rotate'])
    mode = _envfile.parse_mode(params['mode'])
    if not _secrets.MIN_SECRET_BYTES <= params['secret_length'] <= _secrets.MAX_SECRET_BYTES:
        raise _envfile.EnvFileError('secret_length must be between %d and %d bytes, got %d.'
                                    % (_secrets.MIN_SECRET_BYTES, _secrets.MAX_SECRET_BYTES, params['secret_length']))
    if params['backup_keep'] < 0:
        raise _envfile.EnvFileError('backup_keep must be 0 (keep all) or more, got %d.' % params['backup_keep'])
    uid = _resolve_id(params['owner'], 'owner')
    gid = _resolve_id(params['group'], 'group')
    directory = os.path.dirname(path)
    if not os.path.isdir(directory) and not check_mode:
        raise _envfile.EnvFileError('The directory %s does not exist. Create the stack directory before the env file.'
                                    % directory)

    old_bytes, info = _envfile.read(path)
    envfile = _envfile.EnvFile.from_bytes(old_bytes, 'env file %s' % path) if old_bytes is not None else None
    if secret_values is not None and envfile is not None:
        secret_values.update(v for v in (envfile.value(k) for k in secret_keys) if v)
    new_file = envfile is None
    if new_file:
        envfile = _envfile.EnvFile.parse(_envfile.MANAGED_HEADER)
    before = envfile.render_redacted(settings) if diff_mode else None

    plan = _envfile.plan(envfile, settings, secret_keys, rotate_keys, params['secret_length'], generate=generate)
    if secret_values is not None:
        secret_values.update(v for v in (envfile.value(k) for k in secret_keys) if v)
    new_bytes = envfile.render().encode('utf-8')
    content_changed = new_file or new_bytes != old_bytes

    if uid is None and info is not None:
        uid = info.st_uid
    if gid is None and info is not None:
        gid = info.st_gid
    meta_changed = info is not None and (
        (info.st_mode & 0o7777) != mode or (uid is not None and info.st_uid != uid)
        or (gid is not None and info.st_gid != gid))

    result = dict(changed=content_changed or meta_changed, path=path, backup_file=None, removed_backups=[])
    result.update((k, plan[k]) for k in ('added_keys', 'generated_keys', 'rotated_keys', 'updated_keys',
                                         'weak_keys', 'weak_reasons', 'duplicate_keys'))
    new_values = set(plan['generated_keys']) | set(plan['rotated_keys'])
    result['fingerprints'] = _envfile.fingerprints(envfile, secret_keys, unknown=new_values if check_mode else ())
    if diff_mode:
        notes = dict((k, 'generated') for k in plan['generated_keys'])
        notes.update((k, 'rotated') for k in plan['rotated_keys'])
        result['diff'] = dict(before_header=path, after_header=path,
                              before='' if new_file else before,
                              after=envfile.render_redacted(settings, notes))

    warnings = []
    if plan['weak_keys']:
        warnings.append('Weak secrets kept in %s (never overwritten): %s. Rotate them.' % (path, '; '.join(
            '%s %s' % (k, plan['weak_reasons'][k]) for k in plan['weak_keys'])))
    if plan['duplicate_keys']:
        warnings.append('%s sets %s on more than one line; compose uses the last one. Remove the others.'
                        % (path, ', '.join(plan['duplicate_keys'])))

    if check_mode:
        return result, warnings
    if content_changed:
        if old_bytes is not None and params['backup']:
            result['backup_file'] = _envfile.backup(path, old_bytes, now=now)
        _envfile.atomic_write(path, new_bytes, mode=mode, uid=uid, gid=gid)
        if new_values:
            # The secret's age starts now (the checklist's secrets_age reads it; no value is written).
            try:
                journal = _rotation_journal.load(path)
                _rotation_journal.write(path, _rotation_journal.record_secrets(
                    journal, dict((k, result['fingerprints'].get(k)) for k in new_values), now=now), uid=uid, gid=gid)
            except _rotation_journal.JournalError as exc:
                warnings.append('%s was written, but the age of its new secrets could not be recorded: %s' % (path, exc))
        if result['backup_file']:
            result['removed_backups'] = _envfile.prune_backups(path, params['backup_keep'])
    elif meta_changed:
        try:
            if (uid is not None and info.st_uid != uid) or (gid is not None and info.st_gid != gid):
                os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
            os.chmod(path, mode)
        except OSError as exc:
            raise _envfile.EnvFileError('Cannot set mode/owner of %s: %s. Run the task with become.'
                                        % (path, exc.strerror or exc)) from None
    return result, warnings


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            settings=dict(type='dict', default={}),
            secrets=dict(type='list', elements='str', default=[], no_log=False),
            secret_length=dict(type='int', default=_secrets.DEFAULT_SECRET_BYTES, no_log=False),
            rotate=dict(type='list', elements='str', default=[]),
            backup=dict(type='bool', default=True),
            backup_keep=dict(type='int', default=10),
            mode=dict(type='raw', default='0600'),
            owner=dict(type='str'),
            group=dict(type='str'),
        ),
        supports_check_mode=True,
    )
    secret_values = set()
    try:
        result, warnings = run(module.params, check_mode=module.check_mode, diff_mode=module._diff,
                               now=datetime.datetime.now(datetime.timezone.utc), secret_values=secret_values)
    except _envfile.EnvFileError as exc:
        _protect(module, secret_values)
        module.fail_json(msg=str(exc))
    _protect(module, secret_values)
    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)


def _protect(module, values):
    """Let Ansible mask the secret values should one ever reach the output (defence in depth;
    which values: ``_secrets.no_log_values``)."""
    module.no_log_values.update(_secrets.no_log_values(values))


if __name__ == '__main__':
    main()
