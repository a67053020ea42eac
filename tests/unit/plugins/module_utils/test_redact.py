# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_redact: one secret set (env file and every backup) and the credential shapes (issue 12, item 5)."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
from ansible_collections.theprotocol.operator.plugins.module_utils import _redact

PUBLIC = frozenset(('OPERATOR_NAME', 'REGISTRY_DID'))
CURRENT = b'OPERATOR_NAME=acme\nPOSTGRES_PASSWORD=cur-pg-0123456789\nREDIS_PASSWORD="cur-redis-0123456789"\n'
OLD_1 = b'OPERATOR_NAME=acme\nPOSTGRES_PASSWORD=old1-pg-0123456789\nREDIS_PASSWORD=old1-redis-0123456789\n'
OLD_2 = b'OPERATOR_NAME=acme\nPOSTGRES_PASSWORD=old2-pg-0123456789\nINTERNAL_API_KEY=old2-iak-0123456789\n'


def _stack(tmp_path):
    env = tmp_path / '.env.operator'
    env.write_bytes(CURRENT)
    stamp = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    _envfile.backup(str(env), OLD_1, now=stamp)
    _envfile.backup(str(env), OLD_2, now=stamp + datetime.timedelta(days=1))
    # Not a backup of this file: its values are not collected.
    (tmp_path / '.env.other.20260101T000000Z.bak').write_bytes(b'X=not-mine-0123456789\n')
    return str(env)


def test_secret_set_is_the_env_file_and_every_backup(tmp_path):
    values, files = _redact.env_file_secrets(_stack(tmp_path), PUBLIC)
    assert files == 3
    assert sorted(values) == sorted(['cur-pg-0123456789', 'cur-redis-0123456789', 'old1-pg-0123456789',
                                     'old1-redis-0123456789', 'old2-pg-0123456789', 'old2-iak-0123456789'])


def test_secret_set_includes_the_pending_values_of_an_unfinished_rotation(tmp_path):
    env = _stack(tmp_path)
    with open(env + '.pending', 'wb') as handle:
        handle.write(b'# Pending values of an unfinished secret rotation\nPOSTGRES_PASSWORD=pending-pg-0123456789\n')
    values, files = _redact.env_file_secrets(env, PUBLIC)
    assert files == 4 and 'pending-pg-0123456789' in values


def test_secret_set_without_an_env_file_and_from_an_unparsable_backup(tmp_path):
    env = tmp_path / '.env.operator'
    assert _redact.env_file_secrets(str(env), PUBLIC) == ([], 0)
    (tmp_path / '.env.operator.20260101T000000Z.bak').write_bytes(b'POSTGRES_PASSWORD="unterminated-0123456789\n')
    values, files = _redact.env_file_secrets(str(env), PUBLIC)
    assert files == 1 and values == ['unterminated-0123456789']


@pytest.mark.parametrize('text, gone, kept', [
    ('connecting to redis://:hunter2-redis@redis:6379/0', ['hunter2-redis'], ['@redis:6379/0']),
    ('GET https://ops:tok-123456@hooks.example.com/x', ['ops:tok-123456', 'tok-123456'], ['hooks.example.com/x']),
    ('POST https://ghp_0123456789abcdef@api.example.com/', ['ghp_0123456789abcdef'], ['api.example.com']),
    ('postgres://registry:pgpw-0123@db:5432/registry', ['pgpw-0123'], ['db:5432']),
    ('X-Internal-Key: iak-live-0123456789', ['iak-live-0123456789'], ['X-Internal-Key: <redacted>']),
    ("headers={'X-Internal-Key': 'iak-live-0123456789', 'Host': 'x'}", ['iak-live-0123456789'], ["'Host': 'x'"]),
    ('x-internal-key=iak-live-0123456789&a=1', ['iak-live-0123456789'], ['a=1']),
    ('Authorization: Bearer eyJhbGciOi.xyz', ['eyJhbGciOi.xyz'], ['Authorization: <redacted>']),
    ('FATAL: password=pw-0123456789 for user registry', ['pw-0123456789'], ['for user registry']),
    ('{"password": "pw-0123456789", "user": "registry"}', ['pw-0123456789'], ['"user": "registry"']),
    ('url=https://h/x?access_token=tk-0123456789&page=2', ['tk-0123456789'], ['page=2']),
    ('https://h/hook?key=k-0123456789', ['k-0123456789'], ['https://h/hook?key=<redacted>']),
    ('cmd: AUTH redis-pw-0123456789', ['redis-pw-0123456789'], ['AUTH <redacted>']),
    ('cmd: AUTH default redis-pw-0123456789', ['redis-pw-0123456789', 'default'], ['AUTH <redacted> <redacted>']),
    ('"AUTH" "redis-pw-0123456789"', ['redis-pw-0123456789'], ['"AUTH" <redacted>']),
    ('redis-cli -h redis -a redis-pw-0123456789 ping', ['redis-pw-0123456789'], ['ping']),
    ('requirepass redis-pw-0123456789', ['redis-pw-0123456789'], ['requirepass <redacted>']),
    ('ACL SETUSER default on >new-pw-0123456789 <old-pw-0123456789 ~* +@all',
     ['new-pw-0123456789', 'old-pw-0123456789'], ['~* +@all']),
    ('-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI\n-----END EC PRIVATE KEY-----', ['MHcCAQEEI'], ['<redacted private key>']),
])
def test_credential_shapes_are_redacted(text, gone, kept):
    out = _redact.Redactor().text(text, env_lines=False)
    for value in gone:
        assert value not in out, out
    for value in kept:
        assert value in out, out


@pytest.mark.parametrize('text', [
    '2026-06-04T12:00:00.000Z 172.18.0.5 federation auth denied status=403 reason=expired path=/api/v1/events/',
    '2026-06-04T12:00:00.000Z 172.18.0.5 internal auth denied status=401 reason=missing_key path=/internal/status',
    'eventstore write event=TokensTransferred status=201',
    'AUTH failed: WRONGPASS invalid username-password pair or user is disabled.',
    'fetched SVID spiffe_id=spiffe://example.com/service/registry-acme serial=1f not_after=2026-06-04T12:00:00Z',
])
def test_evidence_lines_without_secrets_stay_readable(text):
    assert _redact.Redactor(['0123456789abcdef']).text(text) == text


def test_secret_values_are_redacted_wherever_they_appear_also_url_encoded(tmp_path):
    values, dummy = _redact.env_file_secrets(_stack(tmp_path), PUBLIC)
    red = _redact.Redactor(values + ['a/b+c=d-0123'])
    text = ('old password old1-pg-0123456789 refused; old key old2-iak-0123456789 sent; '
            'dsn user=registry pw=cur-pg-0123456789; form=a%2Fb%2Bc%3Dd-0123')
    out = red.text(text)
    assert red.leaks(out) == 0
    for value in values + ['a%2Fb%2Bc%3Dd-0123']:
        assert value not in out
    assert 'user=registry' in out


def test_short_values_are_not_substituted():
    assert _redact.Redactor(['abc']).text('abcdef') == 'abcdef'
