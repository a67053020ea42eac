# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Live password checks: the verdicts over probe outputs recorded on the lab's official-contract
postgres and redis images (fixtures/live_auth_outputs.json: the right password, a wrong one, a
pg_hba.conf that trusts the network, Redis nopass, Redis down, an unknown role)."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.theprotocol.operator.plugins.module_utils import _live_auth as la

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUTS = json.load(open(os.path.join(HERE, 'fixtures', 'live_auth_outputs.json'), encoding='utf-8'))


@pytest.mark.parametrize('name, kind, ok, state, words', [
    ('postgres_ok', 'postgres', True, 'accepted', None),
    ('postgres_wrong', 'postgres', False, 'refused', 'authentication failed'),
    ('postgres_trust', 'postgres', False, 'accepts_any', 'PostgreSQL accepts any password'),
    ('postgres_trust_unknown_user', 'postgres', False, 'error', 'role "nosuchuser" does not exist'),
    ('redis_ok', 'redis', True, 'accepted', None),
    ('redis_wrong', 'redis', False, 'refused', 'authentication failed'),
    ('redis_nopass', 'redis', False, 'accepts_any', 'Redis accepts any password'),
    ('redis_down', 'redis', False, 'error', 'Connection refused'),
])
def test_verdicts_on_recorded_outputs(name, kind, ok, state, words):
    found = la.verdict(kind, la.parse(OUTPUTS[name]))
    assert (found['ok'], found['state']) == (ok, state), found
    if words:
        assert words in found['reason'], found


def test_parse_keeps_labels_codes_and_text():
    results = la.parse(OUTPUTS['redis_ok'])
    assert list(results) == ['control', 'none', 'secret']
    assert results['none'] == (0, 'NOAUTH Authentication required.')
    assert results['secret'] == (0, 'PONG')
    assert la.parse('') == {} and la.parse('noise\nwithout marks') == {}


def test_redis_without_a_password_but_refusing_wrong_ones_is_still_accepts_any():
    """A server that answers a password-less PING voids the check even if the control was refused."""
    text = OUTPUTS['redis_ok'].replace('@@probe none 0\nNOAUTH Authentication required.', '@@probe none 0\nPONG')
    found = la.verdict('redis', la.parse(text))
    assert found['state'] == 'accepts_any' and 'without any password' in found['reason']


def test_build_keeps_secrets_out_of_argv_and_never_reuses_them_as_control():
    probe = la.build('postgres', {'secret': 's3cret-value'}, 'registry', 'registry')
    assert probe.service == 'db' and 's3cret-value' not in ' '.join(probe.argv)
    assert probe.env['PROBE_PW_secret'] == 's3cret-value' and probe.env['PROBE_HOST'] == la.PG_NETWORK_HOST == 'db'
    assert probe.env['PROBE_PW_control'] not in ('s3cret-value', '') and probe.labels == ['control', 'secret']
    redis = la.build('redis', {'new': 'a', 'old': 'b'})
    assert redis.labels == ['control', 'none', 'new', 'old'] and 'PROBE_PW_none' not in redis.env
    assert redis.env['PROBE_HOST'] == '127.0.0.1'
    with pytest.raises(ValueError):
        la.build('postgres', {'control': 'x'})
    with pytest.raises(ValueError):
        la.build('mysql', {'secret': 'x'})


def test_check_through_an_executor_and_a_container_that_is_not_running():
    seen = []

    def executor(service, argv, env):
        seen.append((service, env['PROBE_LABELS']))
        return 0, OUTPUTS['postgres_ok']
    assert la.check(executor, 'postgres', 'pw', 'registry', 'registry')['ok']
    assert seen == [('db', 'control secret')]
    found = la.check(lambda s, a, e: (None, 'container not running'), 'redis', 'pw')
    assert found['state'] == 'error' and 'cannot run the probe in the redis container' in found['reason']


def test_messages_hold_no_password():
    for name, text in OUTPUTS.items():
        kind = name.split('_')[0]
        found = la.verdict(kind, la.parse(text))
        assert 'PROBE_PW' not in json.dumps(found)


def test_rotation_logins_go_through_the_same_probe_and_refuse_to_decide_on_a_trusting_server():
    from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation
    replies = {'db': OUTPUTS['postgres_ok'], 'redis': OUTPUTS['redis_nopass']}
    calls = []

    def executor(container, argv, env):
        calls.append(container)
        return 0, replies[container.rsplit('-', 1)[1]]
    live = _rotation.Live(executor, {'db': 'acme-db', 'redis': 'acme-redis', 'registry': 'acme-registry'},
                          'registry', 'registry')
    assert live.pg_login_ok('pw') and calls == ['acme-db']
    with pytest.raises(_rotation.RotationError) as info:
        live.redis_login_ok('pw')
    assert 'Redis accepts any password' in str(info.value) and 'fix the server first' in str(info.value)
    replies['db'] = OUTPUTS['postgres_trust']
    with pytest.raises(_rotation.RotationError):
        live.pg_login_ok('pw')
    replies['redis'] = OUTPUTS['redis_down']
    assert live.redis_login_ok('pw') is False  # down: not accepted, no decision voided
