# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the stack's logs say (private to this collection): the one place for the log formats.

``docker logs --timestamps`` output split into timestamped lines, and the patterns of the lines
the checklist and the incident response read: cert-writer's fetches (``<RFC 3339> cert-writer:
fetched SVID spiffe_id=... serial=<hex> not_after=... bundle_cas=N dir=...`` and ``... cert-writer:
fetch failed: <reason>``, lab/images/cert-writer/main.go), an agent without an identity for the
workload, the registry's EventStore writes and 401/403 refusals, and the SPIRE agent's ban.
Pure functions; no Ansible imports, no I/O.
"""

from __future__ import annotations

import re

from ansible_collections.theprotocol.operator.plugins.module_utils._docker_time import DOCKER_TS_RE, isoformat_ms, parse_timestamp

# cert-writer (serials in hex, either case: Go's big.Int.Text(16) writes lowercase, other writers may not).
CW_FETCHED_RE = re.compile(r'fetched SVID spiffe_id=(\S+) serial=([0-9a-fA-F]+) not_after=(\S+)')
CW_FAILED_RE = re.compile(r'fetch failed: (.*)$')
# The agent serves the Workload API but issues no SVID to the workload (no registration entry, or
# the frame refuses it): `spire-agent healthcheck` still says healthy.
NO_IDENTITY_RE = re.compile(r'no identity issued|PermissionDenied|permission denied', re.I)
# The guide's `grep -i "401\|403\|unauthorized"`, with word boundaries around the codes so that the
# milliseconds of a timestamp (``.403Z``) or a digest are not taken for a refusal.
AUTH_FAILURE_RE = re.compile(r'\b(401|403)\b|unauthori[sz]ed', re.I)
# SPIRE agent v1.13: "Agent is banned: removing SVID and shutting down", and the server's answers.
BANNED_RE = re.compile(r'agent is banned|banned agent|has been banned', re.I)
# The registry's EventStore client, one line per write.
ES_WRITE_RE = re.compile(r'eventstore write event=(\S+) status=(\d{3}|error)(?: (\S+))?(?: reason=(\S+))?')


def _text(raw):
    if isinstance(raw, bytes):
        return raw.decode('utf-8', errors='replace')
    return raw or ''


def split_docker_log(raw):
    """``[(time or None, line)]`` from ``docker logs --timestamps`` output (bytes or text), blank lines dropped;
    the time is an aware UTC datetime."""
    out = []
    for text in _text(raw).splitlines():
        if not text.strip():
            continue
        match = DOCKER_TS_RE.match(text)
        if match:
            out.append((parse_timestamp(text.split(' ', 1)[0]), match.group(4)))
        else:
            out.append((None, text))
    return out


def split_log(raw, redactor=None):
    """:func:`split_docker_log` as ``[{'ts', 'line'}]`` (``ts`` by :func:`isoformat_ms`), each line passed
    through ``redactor.text()`` when a redactor is given (the incident evidence's shape)."""
    return [{'ts': isoformat_ms(stamp), 'line': redactor.text(line) if redactor is not None else line}
            for stamp, line in split_docker_log(raw)]


def cert_writer_event(line):
    """One cert-writer log line as ``dict(kind='fetched', spiffe_id, serial, not_after)`` or
    ``dict(kind='failed', reason, no_identity)``; None for any other line."""
    fetched = CW_FETCHED_RE.search(line)
    if fetched:
        return dict(kind='fetched', spiffe_id=fetched.group(1), serial=fetched.group(2).lower(),
                    not_after=fetched.group(3))
    failed = CW_FAILED_RE.search(line)
    if failed:
        return dict(kind='failed', reason=failed.group(1)[:300], no_identity=bool(NO_IDENTITY_RE.search(failed.group(1))))
    return None


def cert_writer_events(lines):
    """cert-writer log lines ``[(time, line)]`` -> ``[dict(time, line, kind, ...)]`` (:func:`cert_writer_event`),
    oldest first."""
    events = []
    for stamp, line in lines:
        event = cert_writer_event(line)
        if event is not None:
            event.update(time=stamp, line=line)
            events.append(event)
    return events


def is_auth_failure(line):
    """The line reports a 401/403 or an unauthorised request."""
    return bool(AUTH_FAILURE_RE.search(line))


def is_banned(line):
    """The line says the SPIRE agent is banned."""
    return bool(BANNED_RE.search(line))


def eventstore_writes(lines, since=None):
    """Registry log lines ``[(time, line)]`` -> dict(ok, auth_failures, other_failures, last_ok, last_auth_failure,
    samples); lines before ``since`` are not counted."""
    out = dict(ok=0, auth_failures=0, other_failures=0, last_ok=None, last_auth_failure=None, samples=[])
    for stamp, line in lines:
        if since is not None and stamp is not None and stamp < since:
            continue
        match = ES_WRITE_RE.search(line)
        if match:
            status = match.group(2)
            if status.isdigit() and 200 <= int(status) < 300:
                out['ok'] += 1
                out['last_ok'] = stamp
            elif status in ('401', '403'):
                out['auth_failures'] += 1
                out['last_auth_failure'] = stamp
                if len(out['samples']) < 3:
                    out['samples'].append(match.group(0))
            else:
                out['other_failures'] += 1
                if len(out['samples']) < 3:
                    out['samples'].append(match.group(0))
        elif is_auth_failure(line) and 'eventstore' in line.lower():
            out['auth_failures'] += 1
            out['last_auth_failure'] = stamp
    return out
