# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""redis_acl on real files: create once, keep what Redis saved, refuse a drift, never show a secret."""

from __future__ import annotations

import json
import os
import stat

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.theprotocol.operator.plugins.module_utils import _redis_acl
from ansible_collections.theprotocol.operator.plugins.module_utils import _secrets
from ansible_collections.theprotocol.operator.plugins.modules import redis_acl

PW = _secrets.generate_secret()
UID, GID = os.getuid(), os.getgid()


def run(capsys, args, check_mode=False):
    if check_mode:
        args = dict(args, _ansible_check_mode=True)
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            redis_acl.main()
    out = capsys.readouterr()
    return info.value.code, json.loads(out.out), out.out + out.err


@pytest.fixture
def stack(tmp_path):
    (tmp_path / 'redis').mkdir()
    env = tmp_path / '.env.operator'
    env.write_text('POSTGRES_USER=registry\nREDIS_PASSWORD=%s\n' % PW)
    return dict(path=str(tmp_path / 'redis' / 'users.acl'), env_file=str(env), owner=UID, group=GID)


def test_creates_once_then_idempotent(capsys, stack):
    rc, res, out = run(capsys, stack, check_mode=True)
    assert rc == 0 and res['changed'] and res['created'] and not os.path.exists(stack['path'])
    rc, res, out = run(capsys, stack)
    assert rc == 0 and res['changed'] and res['created'] and res['passwords'] == 1
    content = open(stack['path']).read()
    assert content == _redis_acl.render('default', [_redis_acl.password_hash(PW)])
    assert stat.S_IMODE(os.stat(stack['path']).st_mode) == 0o600
    assert PW not in out and _redis_acl.password_hash(PW) not in out
    rc, res, out = run(capsys, stack)
    assert rc == 0 and not res['changed'] and not res['created']


def test_keeps_what_redis_saved_and_fixes_the_mode(capsys, stack):
    other = _redis_acl.password_hash(_secrets.generate_secret())
    saved = 'user default on sanitize-payload #%s #%s ~* &* +@all\n' % (other, _redis_acl.password_hash(PW))
    with open(stack['path'], 'w') as handle:
        handle.write(saved)
    os.chmod(stack['path'], 0o644)
    rc, res, out = run(capsys, stack)
    assert rc == 0 and res['changed'] and res['passwords'] == 2
    assert open(stack['path']).read() == saved and stat.S_IMODE(os.stat(stack['path']).st_mode) == 0o600


@pytest.mark.parametrize('content, words', [
    ('user default on #%s ~* &* +@all\n' % ('a' * 64), 'does not hold REDIS_PASSWORD'),
    ('user default on nopass ~* &* +@all\n', 'any password (nopass)'),
    ('user default off ~* &* +@all\n', 'switched off'),
])
def test_refuses_a_drift_without_touching_the_file(capsys, stack, content, words):
    with open(stack['path'], 'w') as handle:
        handle.write(content)
    before = os.stat(stack['path'])
    rc, res, out = run(capsys, stack)
    assert rc == 1 and words in res['msg'] and 'Nothing was changed' in res['msg'], res
    assert open(stack['path']).read() == content and os.stat(stack['path']).st_mtime_ns == before.st_mtime_ns
    assert PW not in out


def test_missing_env_or_key(capsys, stack, tmp_path):
    rc, res, out = run(capsys, dict(stack, env_file=str(tmp_path / 'nope')))
    assert rc == 1 and 'does not exist' in res['msg'] and 'operator_env' in res['msg']
    rc, res, out = run(capsys, dict(stack, key='NOT_THERE'))
    assert rc == 1 and 'has no value for NOT_THERE' in res['msg']
    rc, res, out = run(capsys, dict(stack, path=str(tmp_path / 'missing-dir' / 'users.acl')))
    assert rc == 1 and 'does not exist: create it first' in res['msg']
