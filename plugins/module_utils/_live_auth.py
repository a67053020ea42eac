# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Live password checks against the stack's PostgreSQL and Redis, each with its control.

The one place that decides whether a running server accepts a password (private to this
collection; used by the checklist and by the rotation).

A password check that cannot fail proves nothing. The official ``postgres`` image runs
``initdb`` without auth options, so its ``pg_hba.conf`` trusts the local socket,
``127.0.0.1`` and ``::1``; only the entrypoint's last line (``host all all all
scram-sha-256``) asks for a password. Inside the db container, ``psql -h 127.0.0.1``
logs in with any password. Therefore:

- PostgreSQL is asked over the network the way the registry connects: ``psql -h db``, run
  in the db container. Compose's DNS resolves the service name to the container's own
  address on the stack network, which matches only the password line of ``pg_hba.conf``.
- Redis authenticates by ACL, not by address, so it is asked on ``127.0.0.1``.
- Every probe of a password has a control: a random wrong password that must be refused,
  and for Redis also no password at all (``NOAUTH``). A server that accepts the control
  accepts any password, and the check fails saying so.

Secrets travel in the exec environment only (never on a command line). Probe outputs carry
server messages (user and host names), never a password. The verdict is a pure function of
the outputs (:func:`verdict`), unit-tested with the servers' real replies.
"""

from __future__ import annotations

import re
import secrets

from ansible_collections.theprotocol.operator.plugins.module_utils import _credentials

# How the registry reaches PostgreSQL (POSTGRES_HOST in the compose file): the db service's name.
PG_NETWORK_HOST = 'db'
REDIS_HOST = '127.0.0.1'

# Probe labels, in the order they run.
CONTROL = 'control'     # a random wrong password: must be refused
SECRET = 'secret'       # the password under test
NO_PASSWORD = 'none'    # Redis only: no AUTH at all, must answer NOAUTH

ACCEPTED = 'accepted'
REFUSED = 'refused'
ERROR = 'error'

# The probe kinds (_credentials.LOGIN_PROBES) and the compose service each runs in.
SERVICE_OF = {'postgres': 'db', 'redis': 'redis'}
# Which probe checks each .env.operator password (from the credential registry).
KIND_OF_KEY = dict((key, _credentials.get(key).probe) for key in _credentials.LOGIN_KEYS)
_NAMES = {'postgres': 'PostgreSQL', 'redis': 'Redis'}
_LABEL_RE = re.compile(r'^[a-z][a-z0-9_]*\Z')

# One probe per label; PROBE_PW_<label> holds the password, unset for NO_PASSWORD.
_PG_SCRIPT = (
    'for label in $PROBE_LABELS; do '
    'eval "pw=\\${PROBE_PW_$label-}"; '
    'out=$(PGPASSWORD="$pw" PGCONNECT_TIMEOUT=5 psql -X -w -h "$PROBE_HOST" -U "$PROBE_USER" -d "$PROBE_DB" '
    '-tAc "SELECT 1" 2>&1); rc=$?; '
    'printf "@@probe %s %s\\n%s\\n" "$label" "$rc" "$out"; '
    'done')
_REDIS_SCRIPT = (
    'for label in $PROBE_LABELS; do '
    'if [ "$label" = none ]; then '
    'out=$(redis-cli -h "$PROBE_HOST" --no-auth-warning ping 2>&1); rc=$?; '
    'else eval "pw=\\${PROBE_PW_$label-}"; '
    'out=$(REDISCLI_AUTH="$pw" redis-cli -h "$PROBE_HOST" --no-auth-warning ping 2>&1); rc=$?; fi; '
    'printf "@@probe %s %s\\n%s\\n" "$label" "$rc" "$out"; '
    'done')
_MARK_RE = re.compile(r'^@@probe ([a-z][a-z0-9_]*) (\d+)\Z')


class Probe:
    """What to run in the server's container: ``argv`` with ``env`` (secrets only in ``env``)."""

    def __init__(self, kind, argv, env, labels):
        self.kind = kind
        self.service = SERVICE_OF[kind]
        self.argv = argv
        self.env = env
        self.labels = labels


def control_password(*avoid):
    """A random password that is none of ``avoid`` (a server must refuse it)."""
    while True:
        value = secrets.token_urlsafe(24)
        if value not in avoid:
            return value


def build(kind, passwords, pg_user=None, pg_db=None, control=True):
    """The probe of ``passwords`` (label -> password) on server ``kind`` (postgres | redis).

    With ``control`` the random wrong password (and for Redis no password) are probed first.
    """
    if kind not in SERVICE_OF:
        raise ValueError('unknown server kind %r' % kind)
    labels, env = [], {}
    if control:
        labels.append(CONTROL)
        env['PROBE_PW_' + CONTROL] = control_password(*passwords.values())
        if kind == 'redis':
            labels.append(NO_PASSWORD)
    for label, password in passwords.items():
        if not _LABEL_RE.match(label) or label in (CONTROL, NO_PASSWORD):
            raise ValueError('bad probe label %r' % label)
        labels.append(label)
        env['PROBE_PW_' + label] = password or ''
    env['PROBE_LABELS'] = ' '.join(labels)
    if kind == 'postgres':
        env.update(PROBE_HOST=PG_NETWORK_HOST, PROBE_USER=pg_user or 'postgres', PROBE_DB=pg_db or pg_user or 'postgres')
        script = _PG_SCRIPT
    else:
        env['PROBE_HOST'] = REDIS_HOST
        script = _REDIS_SCRIPT
    return Probe(kind, ['/bin/sh', '-c', script], env, labels)


def parse(output):
    """``{label: (exit code, text)}`` from the probe script's output."""
    found, label, rc, lines = {}, None, None, []
    for line in (output or '').splitlines():
        match = _MARK_RE.match(line)
        if match:
            if label is not None:
                found[label] = (rc, '\n'.join(lines).strip())
            label, rc, lines = match.group(1), int(match.group(2)), []
        elif label is not None:
            lines.append(line)
    if label is not None:
        found[label] = (rc, '\n'.join(lines).strip())
    return found


_PG_REFUSED = ('password authentication failed', 'no password supplied', 'pg_hba.conf rejects')
_REDIS_REFUSED = ('WRONGPASS', 'NOAUTH', 'invalid password', 'invalid username-password')


def outcome(kind, rc, text):
    """ACCEPTED, REFUSED or ERROR for one probe's exit code and output."""
    lines = [line.strip() for line in (text or '').splitlines() if line.strip()]
    last = lines[-1] if lines else ''
    if kind == 'postgres':
        if rc == 0 and last == '1':
            return ACCEPTED
        return REFUSED if any(s in (text or '') for s in _PG_REFUSED) else ERROR
    if last == 'PONG':
        return ACCEPTED
    return REFUSED if any(s in (text or '') for s in _REDIS_REFUSED) else ERROR


def _first_line(text, limit=200):
    line = (text or '').strip().splitlines()[:1]
    return (line[0][:limit] if line else 'no output')


def control_problem(kind, results):
    """Why the controls of ``results`` void every probe (``(state, reason)``), or None when they were refused."""
    name = _NAMES[kind]
    outcomes = dict((lbl, outcome(kind, rc, text)) for lbl, (rc, text) in results.items())
    if outcomes.get(CONTROL) == ACCEPTED:
        how = ('pg_hba.conf trusts connections from the stack network (POSTGRES_HOST_AUTH_METHOD=trust or a trust '
               'line)' if kind == 'postgres' else 'the Redis default user has no password (is the ACL file loaded?)')
        return 'accepts_any', '%s accepts any password: a random wrong one was accepted; %s' % (name, how)
    if outcomes.get(NO_PASSWORD) == ACCEPTED:
        return 'accepts_any', ('Redis answers without any password (the default user is nopass: is the ACL file '
                               'loaded?)')
    for lbl in (CONTROL, NO_PASSWORD):
        if outcomes.get(lbl) == ERROR:
            return ERROR, '%s: the control probe failed: %s' % (name, _first_line(results[lbl][1]))
    return None


def verdict(kind, results, label=SECRET):
    """Judge the probe of ``label`` and its controls.

    ``results``: :func:`parse` output. Returns ``dict(ok, state, reason, outcomes)`` where
    ``state`` is ``accepted`` (the password works and the controls were refused),
    ``refused``, ``accepts_any`` (a control was accepted: the check would prove nothing),
    or ``error`` (a probe could not run).
    """
    name = _NAMES[kind]
    outcomes = dict((lbl, outcome(kind, rc, text)) for lbl, (rc, text) in results.items())
    if label not in results:
        return dict(ok=False, state=ERROR, outcomes=outcomes,
                    reason='%s: the probe gave no answer (is the %s container running?)' % (name, SERVICE_OF[kind]))
    problem = control_problem(kind, results)
    if problem:
        return dict(ok=False, state=problem[0], outcomes=outcomes, reason=problem[1])
    state = outcomes[label]
    if state == ACCEPTED:
        return dict(ok=True, state=ACCEPTED, outcomes=outcomes, reason=None)
    if state == REFUSED:
        return dict(ok=False, state=REFUSED, outcomes=outcomes, reason='authentication failed')
    return dict(ok=False, state=ERROR, outcomes=outcomes,
                reason='%s: cannot ask the server: %s' % (name, _first_line(results[label][1])))


def run(executor, kind, passwords, pg_user=None, pg_db=None):
    """Run the probes of ``passwords`` (label -> password) and their controls in one exec.

    ``executor(service, argv, env) -> (rc, output)``. Returns ``(results, problem)``:
    :func:`parse` output, and a reason when nothing could be read.
    """
    probe = build(kind, passwords, pg_user, pg_db)
    dummy, output = executor(probe.service, probe.argv, probe.env)
    results = parse(output)
    if not results:
        return results, '%s: cannot run the probe in the %s container: %s' % (
            _NAMES[kind], probe.service, _first_line(output))
    return results, None


def check(executor, kind, password, pg_user=None, pg_db=None):
    """Probe ``password`` with its controls; the :func:`verdict`."""
    results, problem = run(executor, kind, {SECRET: password}, pg_user, pg_db)
    if problem:
        return dict(ok=False, state=ERROR, outcomes={}, reason=problem)
    return verdict(kind, results)
