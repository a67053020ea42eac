# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The stack's Redis ACL file (private to this collection): what it must hold, pure logic.

The official redis image has no password handling: the stack's Redis authenticates only
because the operator_stack role mounts ``redis.conf`` with ``aclfile`` and this ACL file.
The file keeps SHA-256 hashes (``#<hex>``), never a password. Redis rewrites it on
``ACL SAVE`` (the rotation's two-password roll-over survives a restart that way), so the
role creates it once and afterwards only checks that it still holds the password of
``.env.operator``: a file that does not is a drift to repair, never to overwrite.
"""

from __future__ import annotations

import hashlib
import re

DEFAULT_USER = 'default'
# Full access for the stack's one user, as the registry had with requirepass.
FULL_ACCESS = ('~*', '&*', '+@all')
_HASH_RE = re.compile(r'^#[0-9a-f]{64}\Z')
_NAME_RE = re.compile(r'^[A-Za-z0-9_.@-]+\Z')


class AclFileError(Exception):
    """The ACL file or the request is unusable; the message never holds a password or a hash."""


def password_hash(password):
    """SHA-256 (hex) of ``password``: how Redis ACLs keep it (``#<hash>``)."""
    return hashlib.sha256(password.encode('utf-8')).hexdigest()


def render(user, hashes):
    """ACL file content with one ``user`` line holding ``hashes``."""
    if not _NAME_RE.match(user or ''):
        raise AclFileError('Redis user name %r is not valid (letters, digits, _ . @ -).' % user)
    if not hashes or not all(_HASH_RE.match('#' + h) for h in hashes):
        raise AclFileError('Internal error: Redis password hashes must be 64 lowercase hex digits.')
    return 'user %s on %s %s\n' % (user, ' '.join('#' + h for h in hashes), ' '.join(FULL_ACCESS))


def parse(content):
    """``{user: [rules]}`` of an ACL file (``user <name> <rule> ...`` lines; comments and blanks skipped)."""
    users = {}
    for number, line in enumerate(content.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith('#'):
            continue
        if words[0] != 'user' or len(words) < 2:
            raise AclFileError('line %d is not a "user <name> <rules>" line (Redis would refuse to start)' % number)
        users[words[1]] = words[2:]
    return users


def _effective(rules):
    """``(enabled, nopass, hashes)`` after applying ``rules`` in order, as Redis does."""
    enabled, nopass, hashes = False, False, []
    for rule in rules:
        if rule in ('on', 'off'):
            enabled = rule == 'on'
        elif rule in ('nopass', 'resetpass', 'reset'):
            nopass, hashes = rule == 'nopass', []
            enabled = False if rule == 'reset' else enabled
        elif _HASH_RE.match(rule) or rule.startswith('>'):
            value = rule[1:] if rule.startswith('#') else password_hash(rule[1:])
            hashes, nopass = hashes + [value] if value not in hashes else hashes, False
        elif rule.startswith('!') or rule.startswith('<'):
            value = rule[1:] if rule.startswith('!') else password_hash(rule[1:])
            hashes = [h for h in hashes if h != value]
    return enabled, nopass, hashes


def user_state(content, user, password):
    """How ``user`` of ACL file ``content`` stands to ``password``.

    Returns ``dict(state, passwords)``: state ``holds`` (enabled, the password's hash among its
    passwords), ``missing_user``, ``disabled`` (``off``), ``nopass`` (any password works),
    ``other_password``; passwords: how many passwords the user has.
    """
    rules = parse(content).get(user)
    if rules is None:
        return dict(state='missing_user', passwords=0)
    enabled, nopass, hashes = _effective(rules)
    if not enabled:
        return dict(state='disabled', passwords=len(hashes))
    if nopass:
        return dict(state='nopass', passwords=len(hashes))
    if password_hash(password) in hashes:
        return dict(state='holds', passwords=len(hashes))
    return dict(state='other_password', passwords=len(hashes))


PROBLEMS = {
    'missing_user': 'has no line for Redis user {user}',
    'disabled': 'has Redis user {user} switched off',
    'nopass': 'lets Redis user {user} in with any password (nopass)',
    'other_password': 'does not hold {key} of {env} for Redis user {user}: the running Redis and the env file '
                      'disagree',
}


def problem(state, path, user, key, env):
    """The operator-facing message for a state other than ``holds``."""
    return ('%s %s. Nothing was changed: find out which password the registry should use, then run '
            'playbooks/rotate_secrets.yml with theprotocol_rotation_action=repair (it makes Redis accept the value '
            'of the env file) or rotate.' % (path, PROBLEMS[state].format(user=user, key=key, env=env)))
