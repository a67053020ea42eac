# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The on-host rotation journal (private to this collection): a write-ahead record of a
secret rotation, next to ``.env.operator``, and the decision a later run takes from it.

AWS Secrets Manager rotates in idempotent steps with staged labels (AWSPENDING, AWSCURRENT,
AWSPREVIOUS); Vault writes a write-ahead log entry before it changes a database. Here:

- ``<env>.<stamp>.bak`` (made by :mod:`_envfile`) is the PREVIOUS set of values;
- ``<env>.pending`` (0600, same owner as the env file) holds the PENDING values between the
  steps, so that a run interrupted after a live change can finish it;
- ``<env>.rotation.json`` (0600, atomic writes) is the journal: which keys, the fingerprints of
  the values before and after (never a value), the backup it belongs to, the step reached and
  when, and, per secret, since when the current value is in force (the secret's age).

A step is recorded *before* the live change it names is made (``<step>`` is written as the
intent, ``done`` lists the steps that finished), so a crash between the two is seen as "maybe
done", and the decision is taken from live probes, not from the journal alone.
"""

from __future__ import annotations

import datetime
import json
import os

from ansible_collections.theprotocol.operator.plugins.module_utils import _credentials
from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile

VERSION = 1
JOURNAL_SUFFIX = '.rotation.json'
PENDING_SUFFIX = '.pending'
TIME_FORMAT = '%Y-%m-%dT%H:%M:%SZ'

# The steps of a rotation, in order. Each is written as the intent before it is carried out.
STEPS = ('staged', 'redis_added', 'env_written', 'postgres_altered', 'recreated', 'verified')
BACK_STEPS = ('rolled_back_live',)
IN_PROGRESS, COMPLETED, ROLLED_BACK, REPAIRED = 'in_progress', 'completed', 'rolled_back', 'repaired'
STATES = (IN_PROGRESS, COMPLETED, ROLLED_BACK, REPAIRED)

# What a run does with an unfinished rotation.
FORWARD, BACK, REFUSE, NONE = 'forward', 'back', 'refuse', 'none'

DEFAULT_MAX_AGE_DAYS = 90


class JournalError(Exception):
    """The journal cannot be read or written; the message says what to do, never holds a value."""


def journal_path(env_path):
    return env_path + JOURNAL_SUFFIX


def pending_path(env_path):
    return env_path + PENDING_SUFFIX


def _now(now=None):
    return (now or datetime.datetime.now(datetime.timezone.utc)).astimezone(datetime.timezone.utc)


def stamp(now=None):
    return _now(now).strftime(TIME_FORMAT)


def parse_time(text):
    try:
        return datetime.datetime.strptime(text, TIME_FORMAT).replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return None


def empty():
    return {'version': VERSION, 'secrets': {}, 'rotation': None}


def validate(doc, path='the rotation journal'):
    """``doc`` as a journal, or JournalError saying what is wrong with it."""
    problem = None
    if not isinstance(doc, dict) or doc.get('version') != VERSION:
        problem = 'not a version %d journal' % VERSION
    elif not isinstance(doc.get('secrets'), dict):
        problem = '"secrets" is not a mapping'
    else:
        rotation = doc.get('rotation')
        if rotation is not None:
            if not isinstance(rotation, dict) or rotation.get('state') not in STATES:
                problem = '"rotation.state" is not one of %s' % ', '.join(STATES)
            elif rotation.get('step') not in STEPS + BACK_STEPS:
                problem = '"rotation.step" is not a known step'
            elif not isinstance(rotation.get('keys'), list) or not rotation['keys']:
                problem = '"rotation.keys" is empty'
            elif not all(isinstance(rotation.get('fingerprints', {}).get(side), dict) for side in ('before', 'after')):
                problem = '"rotation.fingerprints" lacks before/after'
    if problem:
        raise JournalError('%s is unreadable (%s). It holds no secret: move it aside (the backups '
                           '<env>.<stamp>.bak hold the values) and run the repair '
                           '(theprotocol_rotation_action=repair) to make the live credentials match .env.operator.'
                           % (path, problem))
    return doc


def parse(data, path='the rotation journal'):
    try:
        doc = json.loads(data.decode('utf-8') if isinstance(data, bytes) else data)
    except (ValueError, UnicodeDecodeError):
        doc = None
    return validate(doc, path)


def load(env_path):
    """The journal next to ``env_path`` (an empty one when there is none)."""
    path = journal_path(env_path)
    try:
        data, dummy = _envfile.read(path)
    except _envfile.EnvFileError as exc:
        raise JournalError(str(exc)) from None
    return empty() if data is None else parse(data, path)


def render(doc):
    return (json.dumps(doc, indent=2, sort_keys=True) + '\n').encode('utf-8')


def write(env_path, doc, uid=None, gid=None):
    """Atomic write, mode 0600, owner and group those of the env file."""
    try:
        _envfile.atomic_write(journal_path(env_path), render(validate(doc)), mode=0o600, uid=uid, gid=gid)
    except _envfile.EnvFileError as exc:
        raise JournalError(str(exc)) from None


# --------------------------------------------------------------------------- transitions (pure)

def unfinished(doc):
    rotation = (doc or {}).get('rotation')
    return rotation if rotation and rotation.get('state') == IN_PROGRESS else None


def begin(doc, keys, before, after, backup_file, now=None):
    """A new rotation of ``keys`` (fingerprints ``before`` -> ``after``), step ``staged``."""
    if unfinished(doc):
        raise JournalError('An unfinished rotation is recorded; finish or roll it back first.')
    at = stamp(now)
    out = dict(doc, rotation={
        'id': at.replace('-', '').replace(':', ''), 'state': IN_PROGRESS, 'step': 'staged', 'done': [],
        'keys': list(keys), 'fingerprints': {'before': dict(before), 'after': dict(after)},
        'backup_file': backup_file, 'started': at, 'updated': at, 'history': [['staged', at]]})
    return out


def advance(doc, step, now=None, done=None):
    """Record ``step`` as the intent (and ``done`` as finished) in the unfinished rotation."""
    rotation = unfinished(doc)
    if rotation is None:
        raise JournalError('No unfinished rotation is recorded: nothing to advance to %s.' % step)
    if step not in STEPS + BACK_STEPS:
        raise JournalError('Unknown rotation step %r.' % step)
    at = stamp(now)
    rotation = dict(rotation, step=step, updated=at, history=rotation['history'] + [[step, at]])
    if done and done not in rotation['done']:
        rotation['done'] = rotation['done'] + [done]
    return dict(doc, rotation=rotation)


def finish(doc, state, now=None):
    """Close the unfinished rotation as ``completed`` (the new values' age starts now),
    ``rolled_back`` or ``repaired``."""
    rotation = unfinished(doc)
    if rotation is None:
        raise JournalError('No unfinished rotation is recorded: nothing to finish.')
    if state not in (COMPLETED, ROLLED_BACK, REPAIRED):
        raise JournalError('Unknown outcome %r.' % state)
    at = stamp(now)
    secrets = dict(doc.get('secrets') or {})
    if state == COMPLETED:
        for key in rotation['keys']:
            secrets[key] = {'since': at, 'fingerprint': rotation['fingerprints']['after'][key]}
    rotation = dict(rotation, state=state, updated=at, finished=at,
                    history=rotation['history'] + [[state, at]])
    return dict(doc, secrets=secrets, rotation=rotation)


def record_secrets(doc, fingerprints, now=None):
    """The values of ``fingerprints`` (key -> fingerprint) are new from now on (generated, or made
    live by a repair). Keys whose recorded fingerprint is the same keep their date."""
    at = stamp(now)
    secrets = dict(doc.get('secrets') or {})
    for key, fp in sorted(fingerprints.items()):
        if fp and (secrets.get(key) or {}).get('fingerprint') != fp:
            secrets[key] = {'since': at, 'fingerprint': fp}
    return dict(doc, secrets=secrets)


# --------------------------------------------------------------------------- decisions (pure)

def _matches(fps, wanted, keys):
    return fps is not None and all(fps.get(k) is not None and fps.get(k) == wanted.get(k) for k in keys)


def _live_new(credential, facts):
    """Whether the server of ``credential`` holds the new value (always, for one with nothing live)."""
    if credential.apply == _credentials.ALTER_ROLE:
        return facts.get(credential.kind) == 'new'
    if credential.apply == _credentials.REDIS_ACL_ROLLOVER:
        return bool((facts.get(credential.kind) or {}).get('new'))
    return True


def decide(doc, facts):
    """What to do with an unfinished rotation: ``(FORWARD|BACK|REFUSE|NONE, one line why)``.

    ``facts``: ``env`` (fingerprints of the env file's values), ``backup`` (of the backup's, None
    when it is gone), ``postgres`` (``new``/``old``/``other``/None: which value PostgreSQL's verifier
    was made from), ``redis`` (``{'new': bool, 'old': bool}`` or None when no known password is
    accepted); ``postgres`` and ``redis`` are the kinds of the credentials changed live
    (``_credentials``). Roll forward when the new values are in the file and live on every server whose
    credential is rotated; roll back when they are not; refuse when the file holds values from
    neither side (changed by hand during the rotation).
    """
    rotation = unfinished(doc)
    if rotation is None:
        return NONE, 'no unfinished rotation'
    keys, fps = rotation['keys'], rotation['fingerprints']
    where = 'the rotation of %s started %s stopped at step %s' % (', '.join(keys), rotation['started'],
                                                                  rotation['step'])
    backup_ok = _matches(facts.get('backup'), fps['before'], keys)
    if _matches(facts.get('env'), fps['after'], keys):
        not_live = [c.server_name for c in _credentials.CREDENTIALS if c.key in keys and not _live_new(c, facts)]
        if not not_live:
            return FORWARD, '%s; the new values are in .env.operator and live: rolling forward.' % where
        if backup_ok:
            return BACK, ('%s; the new values are in .env.operator but not live in %s: rolling back to %s.'
                          % (where, ' and '.join(not_live), os.path.basename(rotation['backup_file'])))
        return REFUSE, ('%s; the new values are not live in %s and the backup %s is gone or changed: restore it, '
                        'or run the repair (theprotocol_rotation_action=repair) to make the file\'s values live.'
                        % (where, ' and '.join(not_live), rotation['backup_file']))
    if _matches(facts.get('env'), fps['before'], keys):
        if backup_ok:
            return BACK, ('%s; .env.operator still holds the old values: rolling back (undoing any live change).'
                          % where)
        return REFUSE, ('%s; the backup %s is gone or changed: run the repair (theprotocol_rotation_action=repair) '
                        'to make the file\'s (old) values live.' % (where, rotation['backup_file']))
    return REFUSE, ('%s; .env.operator holds values from neither side of the rotation (changed by hand?): restore '
                    'the backup %s or run the repair (theprotocol_rotation_action=repair).'
                    % (where, rotation['backup_file']))


def secret_ages(doc, env_fingerprints, now=None):
    """Per key of ``env_fingerprints``: ``{'since': str|None, 'days': int|None, 'note': str|None}``.

    The age is known when the journal records the env file's current value (by fingerprint);
    otherwise it is unknown: written before the journal existed, or changed outside the rotation.
    """
    now = _now(now)
    out = {}
    for key, fp in sorted(env_fingerprints.items()):
        if fp is None:
            continue
        record = (doc.get('secrets') or {}).get(key) or {}
        since = parse_time(record.get('since'))
        if record.get('fingerprint') == fp and since is not None:
            out[key] = {'since': record['since'], 'days': max(0, (now - since).days), 'note': None}
        elif record:
            out[key] = {'since': None, 'days': None, 'note': 'changed outside the rotation (not the recorded value)'}
        else:
            out[key] = {'since': None, 'days': None, 'note': 'no record of when it was set'}
    return out


def oldest(ages):
    """``(key, days)`` of the oldest secret of known age, or ``(None, None)``."""
    known = [(info['days'], key) for key, info in ages.items() if info.get('days') is not None]
    if not known:
        return None, None
    days, key = max(known)
    return key, days
