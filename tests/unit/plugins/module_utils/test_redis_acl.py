# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Redis ACL file: rendering, and how a user stands to a password, on files as Redis 7 writes them."""

from __future__ import annotations

import hashlib

import pytest

from ansible_collections.theprotocol.operator.plugins.module_utils import _redis_acl
from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation

PW = 'Xq3vT9pLm2RkZ8wYc4NhJb7sFd1GaE6uVo0iKyHt5Ws'  # fixed: parametrize ids must not vary (xdist)
OTHER = 'Bn8cRk2LwQ5zTy1mVx7pHs4dGf0jKa9eUo3iNt6Cb2M'
H, H2 = _redis_acl.password_hash(PW), _redis_acl.password_hash(OTHER)


def test_hash_is_redis_sha256_and_the_rotation_uses_the_same():
    assert H == hashlib.sha256(PW.encode()).hexdigest()
    assert _rotation.redis_password_hash(PW) == H


def test_render_round_trips():
    content = _redis_acl.render('default', [H])
    assert content == 'user default on #%s ~* &* +@all\n' % H
    assert _redis_acl.user_state(content, 'default', PW) == dict(state='holds', passwords=1)
    with pytest.raises(_redis_acl.AclFileError):
        _redis_acl.render('bad name', [H])
    with pytest.raises(_redis_acl.AclFileError):
        _redis_acl.render('default', ['nothex'])


# What Redis 7.0 writes on ACL SAVE (sanitize-payload added, both passwords during a roll-over).
SAVED_ROLL_OVER = 'user default on sanitize-payload #%s #%s ~* &* +@all\n' % (H2, H)


@pytest.mark.parametrize('content, state, count', [
    (SAVED_ROLL_OVER, 'holds', 2),
    ('user default on sanitize-payload #%s ~* &* +@all\n' % H2, 'other_password', 1),
    ('user default on nopass ~* &* +@all\n', 'nopass', 0),
    ('user default off #%s ~* &* +@all\n' % H, 'disabled', 1),
    ('user default on #%s off ~* &* +@all\n' % H, 'disabled', 1),
    ('user registry on #%s ~* &* +@all\n' % H, 'missing_user', 0),
    ('# comment\n\nuser default on >%s ~* +@all\n' % PW, 'holds', 1),
    ('user default on #%s !%s ~* +@all\n' % (H, H), 'other_password', 0),
    ('user default on nopass #%s ~* +@all\n' % H, 'holds', 1),
    ('user default on #%s nopass ~* +@all\n' % H, 'nopass', 0),
    ('user default on #%s reset ~* +@all\n' % H, 'disabled', 0),
])
def test_user_state(content, state, count):
    assert _redis_acl.user_state(content, 'default', PW) == dict(state=state, passwords=count)


def test_unparsable_line_and_messages_hold_no_secret():
    with pytest.raises(_redis_acl.AclFileError) as info:
        _redis_acl.parse('user default on #%s\ngarbage %s\n' % (H, PW))
    assert 'line 2' in str(info.value) and PW not in str(info.value) and H not in str(info.value)
    for state in _redis_acl.PROBLEMS:
        msg = _redis_acl.problem(state, '/s/redis/users.acl', 'default', 'REDIS_PASSWORD', '/s/.env.operator')
        assert 'theprotocol_rotation_action=repair' in msg and '/s/redis/users.acl' in msg
