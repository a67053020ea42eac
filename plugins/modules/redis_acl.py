#!/usr/bin/python
# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: redis_acl
short_description: Ensure the stack's Redis ACL file holds the Redis password of C(.env.operator)
version_added: 0.2.0
description:
  - The official C(redis) image has no password handling of its own. The operator stack's Redis gets its password from
    an ACL file that the C(operator_stack) role mounts with C(redis.conf) (C(aclfile)). This module writes that file.
  - When the file is missing, it is created with one line that enables O(user) with full access and the SHA-256 of the
    value of O(key) in O(env_file) as its only password, written atomically with O(owner), O(group) and mode C(0600).
  - When the file exists it is left as Redis wrote it (Redis rewrites it on C(ACL SAVE); a rotation keeps two passwords
    in it for a while). The module checks that O(user) is enabled, has no C(nopass) and holds the password of
    O(env_file); otherwise it fails without changing anything and says how to repair. It fixes owner and mode.
  - Neither the password nor its hash is ever returned, logged or shown in a diff.
author:
  - TheProtocol operator collection contributors (!UNKNOWN)
extends_documentation_fragment:
  - theprotocol.operator._attributes
attributes:
  check_mode:
    support: full
    details:
      - Reports whether the file would be created or its owner or mode fixed; writes nothing.
  diff_mode:
    support: none
    details:
      - The content holds password hashes and is never shown.
  idempotent:
    support: full
options:
  path:
    description:
      - The ACL file, for example C(/opt/theprotocol/acme/redis/users.acl). Its directory must exist.
    type: path
    required: true
  env_file:
    description:
      - The stack's env file that holds the Redis password, for example C(/opt/theprotocol/acme/.env.operator).
    type: path
    required: true
  key:
    description:
      - The key of O(env_file) that holds the Redis password.
    type: str
    default: REDIS_PASSWORD
  user:
    description:
      - The Redis user that the registry authenticates as.
    type: str
    default: default
  owner:
    description:
      - Numeric uid that owns the file. It must be the uid of the C(redis) user in the Redis image (999 in the official
        image), so that Redis can read it and replace it on C(ACL SAVE).
    type: int
    default: 999
  group:
    description:
      - Numeric gid of the file.
    type: int
    default: 999
notes:
  - Redis replaces the file on C(ACL SAVE) by writing a temporary file next to it; the directory must be writable by
    O(owner).
seealso:
  - module: theprotocol.operator.credential_rotate
"""

EXAMPLES = r"""
- name: Redis ACL file from .env.operator
  theprotocol.operator.redis_acl:
    path: /opt/theprotocol/acme-registry/redis/users.acl
    env_file: /opt/theprotocol/acme-registry/.env.operator
    owner: 999
    group: 999
"""

RETURN = r"""
created:
  description: Whether the file was (or, in check mode, would be) created.
  returned: success
  type: bool
  sample: false
passwords:
  description: How many passwords O(user) has in the file (2 during a rotation's roll-over, otherwise 1).
  returned: success
  type: int
  sample: 1
"""

import os
import stat

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
from ansible_collections.theprotocol.operator.plugins.module_utils import _redis_acl

MODE = 0o600


def run(module):
    p = module.params
    env_data, dummy = _envfile.read(p['env_file'])
    if env_data is None:
        if module.check_mode:
            return dict(changed=True, created=True, passwords=1)
        module.fail_json(msg='%s does not exist: write it first (theprotocol.operator.operator_env).' % p['env_file'])
    password = _envfile.EnvFile.from_bytes(env_data, 'env file %s' % p['env_file']).value(p['key'])
    if not password:
        module.fail_json(msg='%s has no value for %s: generate it first (theprotocol.operator.operator_env).'
                         % (p['env_file'], p['key']))
    module.no_log_values.add(password)
    module.no_log_values.add(_redis_acl.password_hash(password))

    data, info = _envfile.read(p['path'])
    if data is None:
        content = _redis_acl.render(p['user'], [_redis_acl.password_hash(password)])
        if not module.check_mode:
            _envfile.atomic_write(p['path'], content.encode('utf-8'), mode=MODE, uid=p['owner'], gid=p['group'])
        return dict(changed=True, created=True, passwords=1)

    try:
        state = _redis_acl.user_state(data.decode('utf-8', 'replace'), p['user'], password)
    except _redis_acl.AclFileError as exc:
        module.fail_json(msg='%s: %s. Nothing was changed.' % (p['path'], exc))
    if state['state'] != 'holds':
        module.fail_json(msg=_redis_acl.problem(state['state'], p['path'], p['user'], p['key'], p['env_file']),
                         acl_state=state['state'])
    changed = False
    if (info.st_uid, info.st_gid) != (p['owner'], p['group']):
        changed = True
        if not module.check_mode:
            os.chown(p['path'], p['owner'], p['group'])
    if stat.S_IMODE(info.st_mode) != MODE:
        changed = True
        if not module.check_mode:
            os.chmod(p['path'], MODE)
    return dict(changed=changed, created=False, passwords=state['passwords'])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            env_file=dict(type='path', required=True),
            key=dict(type='str', default='REDIS_PASSWORD', no_log=False),
            user=dict(type='str', default=_redis_acl.DEFAULT_USER),
            owner=dict(type='int', default=999),
            group=dict(type='int', default=999),
        ),
        supports_check_mode=True,
    )
    directory = os.path.dirname(os.path.abspath(module.params['path']))
    if not os.path.isdir(directory):
        module.fail_json(msg='The directory %s of path does not exist: create it first.' % directory)
    try:
        module.exit_json(**run(module))
    except (_envfile.EnvFileError, _redis_acl.AclFileError, OSError) as exc:
        module.fail_json(msg='%s: %s' % (module.params['path'], exc))


if __name__ == '__main__':
    main()
