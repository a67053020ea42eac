# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The rotation journal: transitions, the forward/back decision from live facts, secret ages."""

from __future__ import annotations

import datetime
import json
import os
import stat

import pytest

from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation_journal as J
from ansible_collections.theprotocol.operator.plugins.module_utils import _secrets

T0 = datetime.datetime(2026, 11, 27, 18, 0, 0, tzinfo=datetime.timezone.utc)
KEYS = ['POSTGRES_PASSWORD', 'REDIS_PASSWORD']
BEFORE = dict((k, _secrets.fingerprint('old-' + k)) for k in KEYS)
AFTER = dict((k, _secrets.fingerprint('new-' + k)) for k in KEYS)


def started():
    return J.begin(J.empty(), KEYS, BEFORE, AFTER, '/opt/x/.env.operator.20261127T180000Z.bak', now=T0)


def facts(env='after', backup=True, postgres='new', redis_new=True):
    return {'env': {'after': AFTER, 'before': BEFORE, 'other': dict(AFTER, POSTGRES_PASSWORD='0' * 12)}[env],
            'backup': BEFORE if backup else None, 'postgres': postgres,
            'redis': None if redis_new is None else {'new': redis_new, 'old': True}}


@pytest.mark.parametrize('name,kw,decision,words', [
    ('new live everywhere', {}, J.FORWARD, 'rolling forward'),
    ('postgres not altered', {'postgres': 'old'}, J.BACK, 'not live in PostgreSQL: rolling back to'),
    ('redis lacks the new password', {'redis_new': False}, J.BACK, 'not live in Redis'),
    ('redis down', {'redis_new': None}, J.BACK, 'not live in Redis'),
    ('file still old', {'env': 'before', 'postgres': 'old'}, J.BACK, 'still holds the old values'),
    ('file changed by hand', {'env': 'other'}, J.REFUSE, 'neither side'),
    ('not live and backup gone', {'postgres': 'old', 'backup': False}, J.REFUSE, 'is gone or changed'),
    ('file old and backup gone', {'env': 'before', 'backup': False}, J.REFUSE, 'is gone or changed'),
], ids=lambda v: v if isinstance(v, str) else None)
def test_decide(name, kw, decision, words):
    got, reason = J.decide(started(), facts(**kw))
    assert got == decision and words in reason, reason
    assert 'POSTGRES_PASSWORD, REDIS_PASSWORD started 2026-11-27T18:00:00Z stopped at step staged' in reason


def test_decide_without_an_unfinished_rotation():
    assert J.decide(J.empty(), facts())[0] == J.NONE
    closed = J.finish(started(), J.COMPLETED, now=T0)
    assert J.decide(closed, facts())[0] == J.NONE


def test_steps_history_and_completion_start_the_ages():
    doc = J.advance(started(), 'redis_added', now=T0)
    doc = J.advance(doc, 'redis_added', now=T0, done='redis_added')
    assert doc['rotation']['step'] == 'redis_added' and doc['rotation']['done'] == ['redis_added']
    assert [h[0] for h in doc['rotation']['history']] == ['staged', 'redis_added', 'redis_added']
    with pytest.raises(J.JournalError, match='unfinished'):
        J.begin(doc, KEYS, BEFORE, AFTER, 'b')
    later = T0 + datetime.timedelta(days=3)
    done = J.finish(doc, J.COMPLETED, now=later)
    assert done['secrets']['POSTGRES_PASSWORD'] == {'since': '2026-11-30T18:00:00Z', 'fingerprint': AFTER['POSTGRES_PASSWORD']}
    with pytest.raises(J.JournalError, match='nothing to advance'):
        J.advance(done, 'verified')
    back = J.finish(J.advance(started(), 'rolled_back_live'), J.ROLLED_BACK, now=later)
    assert back['secrets'] == {} and back['rotation']['state'] == 'rolled_back'


def test_secret_ages_and_oldest():
    doc = J.record_secrets(J.empty(), {'POSTGRES_PASSWORD': AFTER['POSTGRES_PASSWORD']}, now=T0)
    doc = J.record_secrets(doc, {'REDIS_PASSWORD': AFTER['REDIS_PASSWORD']}, now=T0 + datetime.timedelta(days=50))
    # The same value recorded again keeps its date.
    doc = J.record_secrets(doc, {'POSTGRES_PASSWORD': AFTER['POSTGRES_PASSWORD']}, now=T0 + datetime.timedelta(days=60))
    env = dict(AFTER, INTERNAL_API_KEY=_secrets.fingerprint('k'))
    ages = J.secret_ages(doc, env, now=T0 + datetime.timedelta(days=120))
    assert ages['POSTGRES_PASSWORD']['days'] == 120 and ages['REDIS_PASSWORD']['days'] == 70
    assert ages['INTERNAL_API_KEY'] == {'since': None, 'days': None, 'note': 'no record of when it was set'}
    assert J.oldest(ages) == ('POSTGRES_PASSWORD', 120)
    changed = J.secret_ages(doc, dict(env, REDIS_PASSWORD=BEFORE['REDIS_PASSWORD']), now=T0)
    assert changed['REDIS_PASSWORD']['note'].startswith('changed outside the rotation')
    assert J.oldest({}) == (None, None)


@pytest.mark.parametrize('text,words', [
    ('not json', 'not a version 1 journal'),
    (json.dumps({'version': 1, 'secrets': []}), '"secrets" is not a mapping'),
    (json.dumps({'version': 1, 'secrets': {}, 'rotation': {'state': 'odd'}}), 'rotation.state'),
    (json.dumps(dict(J.empty(), rotation=dict(started()['rotation'], step='nowhere'))), 'rotation.step'),
], ids=['garbage', 'secrets', 'state', 'step'])
def test_unreadable_journal_says_what_to_do(text, words):
    with pytest.raises(J.JournalError) as info:
        J.parse(text, '/opt/x/.env.operator.rotation.json')
    assert words in str(info.value) and 'theprotocol_rotation_action=repair' in str(info.value)


def test_write_is_0600_and_round_trips(tmp_path):
    env = str(tmp_path / '.env.operator')
    assert J.load(env) == J.empty()
    J.write(env, started())
    path = J.journal_path(env)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert J.load(env) == started()
