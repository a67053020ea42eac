# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_logs: the one reading of the stack's logs, on real lines (the lab's cert-writer, whose formats are
lab/images/cert-writer/main.go, the lab registry and SPIRE agent v1.13.3), and the checklist and the
incident response reading the same lines the same way."""

from __future__ import annotations

import datetime

from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist as cl
from ansible_collections.theprotocol.operator.plugins.module_utils import _incident as inc
from ansible_collections.theprotocol.operator.plugins.module_utils import _logs
from ansible_collections.theprotocol.operator.plugins.module_utils import _redact
from ansible_collections.theprotocol.operator.tests.unit.plugins.module_utils.test_checklist import (
    AGENT_BANNED as CL_AGENT_BANNED, CW_LINES, CW_NO_IDENTITY, REGISTRY_403, REGISTRY_ERR, REGISTRY_OK, RUNNING, SEC,
    docker_log)
from ansible_collections.theprotocol.operator.tests.unit.plugins.module_utils.test_incident import (
    AGENT_BANNED, AGENT_HEALTHY, CERT_WRITER, CERT_WRITER_NO_IDENTITY, REGISTRY)

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 6, 4, 12, 0, 0, tzinfo=UTC)

# The lines cert-writer writes (main.go: logger.printf, "<RFC 3339 UTC> cert-writer: <message>"), as
# `docker logs --timestamps` shows them. The serial is upper case here: Go's big.Int.Text(16) writes
# lower case, another cert-writer build may not.
CW_ALL_FORMATS = (
    '2026-06-04T11:59:00.000000001Z 2026-06-04T11:59:00Z cert-writer: fetch failed: workload API client: dial unix '
    '/tmp/spire-agent/public/api.sock: connect: no such file or directory\n'
    '2026-06-04T11:59:30.100000000Z 2026-06-04T11:59:30Z cert-writer: fetched SVID '
    'spiffe_id=spiffe://example.com/service/registry-acme serial=5F3A9C0E1B2D4F6A8C7E9B1D3F5A7C9E '
    'not_after=2026-06-04T12:01:17Z bundle_cas=1 dir=/certs\n'
    '2026-06-04T11:59:30.200000000Z 2026-06-04T11:59:30Z cert-writer: warning: removing older sets in /certs: '
    'permission denied\n'
    '2026-06-04T11:59:31.000000000Z 2026-06-04T11:59:31Z cert-writer: check ok: '
    'spiffe_id=spiffe://example.com/service/registry-acme not_after=2026-06-04T12:01:17Z age=1s dir=/certs\n'
    '2026-06-04T11:59:45.000000000Z 2026-06-04T11:59:45Z cert-writer: fetch failed: no answer from '
    'unix:///tmp/spire-agent/public/api.sock within 30s: context deadline exceeded\n'
    '2026-06-04T11:59:50.000000000Z 2026-06-04T11:59:50Z cert-writer: stopping: context canceled\n'
)


# --------------------------------------------------------------------------- splitting (moved from test_checklist)

def test_parse_timestamp_nanoseconds_and_offsets():
    assert cl.parse_timestamp('2026-06-04T12:00:00.123456789Z') == datetime.datetime(
        2026, 6, 4, 12, 0, 0, 123456, tzinfo=datetime.timezone.utc)
    assert cl.parse_timestamp('2026-06-04T14:00:00+02:00') == datetime.datetime(2026, 6, 4, 12, tzinfo=datetime.timezone.utc)
    assert cl.parse_timestamp('nonsense') is None


def test_split_docker_log_bytes_or_text_blank_lines_dropped():
    raw = CERT_WRITER + '\n   \nno timestamp here\n'
    for given in (raw, raw.encode()):
        lines = _logs.split_docker_log(given)
        assert [stamp for stamp, dummy in lines] == [
            datetime.datetime(2026, 11, 25, 20, 53, 31, 697000, tzinfo=UTC),
            datetime.datetime(2026, 11, 25, 20, 54, 11, 739362, tzinfo=UTC), None]
        assert lines[0][1].startswith('2026-11-25T20:53:31Z cert-writer: fetched SVID spiffe_id=')
        assert lines[-1][1] == 'no timestamp here'
    assert _logs.split_docker_log(None) == [] and _logs.split_docker_log(b'') == []


def test_split_log_is_the_same_split_with_millisecond_stamps_and_an_optional_redactor():
    secret = 'Zq8v3nX_kP2mW9tR4yL6bC1dF5gH7jK0'
    raw = CERT_WRITER + '2026-11-25T20:55:00.5Z password is %s\n' % secret
    plain = _logs.split_log(raw)
    assert [e['ts'] for e in plain] == ['2026-11-25T20:53:31.697Z', '2026-11-25T20:54:11.739Z',
                                        '2026-11-25T20:55:00.500Z']
    assert [e['line'] for e in plain] == [line for dummy, line in _logs.split_docker_log(raw)]
    redacted = _logs.split_log(raw.encode(), _redact.Redactor([secret]))
    assert redacted[-1] == {'ts': '2026-11-25T20:55:00.500Z', 'line': 'password is <redacted>'}
    # The incident's interface: redacted by default.
    assert inc.split_log(raw.encode(), _redact.Redactor([secret])) == redacted


# --------------------------------------------------------------------------- cert-writer

def test_cert_writer_events_from_real_lines():
    events = _logs.cert_writer_events(docker_log(CW_LINES + CW_NO_IDENTITY))
    assert [e['kind'] for e in events] == ['fetched', 'fetched', 'failed']
    assert events[1]['serial'] == 'c90c631c07f9ccd79d725ddbbc409c'
    assert events[2]['no_identity'] is True


def test_cert_writer_every_format_of_the_source():
    events = _logs.cert_writer_events(_logs.split_docker_log(CW_ALL_FORMATS))
    # "check ok", "warning: ..." and "stopping: ..." are no fetches.
    assert [e['kind'] for e in events] == ['failed', 'fetched', 'failed']
    fetched = events[1]
    assert fetched['spiffe_id'] == 'spiffe://example.com/service/registry-acme'
    assert fetched['serial'] == '5f3a9c0e1b2d4f6a8c7e9b1d3f5a7c9e'  # upper case accepted, shown as _x509 shows serials
    assert fetched['not_after'] == '2026-06-04T12:01:17Z'
    assert fetched['time'] == datetime.datetime(2026, 6, 4, 11, 59, 30, 100000, tzinfo=UTC)
    assert events[0]['reason'].startswith('workload API client: dial unix') and not events[0]['no_identity']
    assert events[2]['reason'].startswith('no answer from unix:///tmp/spire-agent/public/api.sock within 30s')
    assert _logs.cert_writer_event('cert-writer: fetch failed: rpc error: code = PermissionDenied desc = '
                                   'no identity issued')['no_identity'] is True
    assert _logs.cert_writer_event('cert-writer: check failed: stale: current set in /certs written 1m0s ago') is None


def test_checklist_and_incident_read_an_upper_case_serial_alike():
    """The checklist's pattern took lower case serials only: a fetch logged with an upper case serial was
    'no successful SVID fetch' there and a fetch in the incident evidence."""
    lines = _logs.split_docker_log(CW_ALL_FORMATS.splitlines(True)[1])
    res = cl.check_cert_writer_running(RUNNING, lines, NOW - 15 * SEC, 15, NOW)
    assert res['status'] == 'pass', res
    assert any('serial 5f3a9c0e1b2d4f6a8c7e9b1d3f5a7c9e' in e for e in res['evidence'])
    state = inc.cert_writer_state(inc.split_log(CW_ALL_FORMATS.splitlines(True)[1]))
    assert state['last_fetch_at'] == '2026-06-04T11:59:30.100Z' and state['failures_since_last_fetch'] == 0


def test_incident_state_and_checklist_events_from_the_same_lines():
    state = inc.cert_writer_state(inc.split_log(CERT_WRITER_NO_IDENTITY))
    events = _logs.cert_writer_events(_logs.split_docker_log(CERT_WRITER_NO_IDENTITY))
    assert [e['kind'] for e in events] == ['fetched', 'failed', 'failed']
    assert state['failures_since_last_fetch'] == 2 and state['no_identity'] is True
    assert state['last_failure'] == {'ts': '2026-11-25T20:54:26.000Z', 'line': events[-1]['line']}
    assert events[-1]['line'] == ('2026-11-25T20:54:26Z cert-writer: fetch failed: rpc error: code = PermissionDenied '
                                  'desc = no identity issued')


# --------------------------------------------------------------------------- registry

def test_eventstore_writes_counts_and_window():
    lines = docker_log(REGISTRY_OK + REGISTRY_403 + REGISTRY_ERR)
    stats = _logs.eventstore_writes(lines)
    assert (stats['ok'], stats['auth_failures'], stats['other_failures']) == (2, 1, 1)
    later = _logs.eventstore_writes(lines, since=NOW - 10 * SEC)
    assert (later['ok'], later['auth_failures'], later['other_failures']) == (0, 0, 1)
    assert stats['samples'] == ['eventstore write event=TokensTransferred status=403 forbidden',
                                'eventstore write event=TokensTransferred status=error reason=connection_refused']


def test_auth_failures_the_guides_grep_without_timestamp_digits():
    assert [_logs.is_auth_failure(line) for dummy, line in _logs.split_docker_log(REGISTRY)] == [
        False, True, True, True]
    # The milliseconds of the application's own timestamp are no refusal (the guide's plain grep would say so).
    assert not _logs.is_auth_failure('2026-11-25T20:55:44.401Z GET /health 200')
    assert not _logs.is_auth_failure('eventstore write event=TokensTransferred status=201 id=a4031b')
    for line in ('status=403 forbidden', 'WRONGPASS (401)', '-> 401 unauthorized', 'Unauthorised client',
                 'HTTP/1.1 403'):
        assert _logs.is_auth_failure(line), line
    # Both consumers: the incident's tail and the checklist's count of refused EventStore writes.
    assert len(inc.auth_failures(inc.split_log(REGISTRY))) == 3
    odd = docker_log('2026-06-04T11:59:55.403Z eventstore flush took 12 ms\n'
                     '2026-06-04T11:59:56.000Z eventstore client: 401 Unauthorized\n')
    assert _logs.eventstore_writes(odd)['auth_failures'] == 1


# --------------------------------------------------------------------------- spire-agent

def test_banned_from_the_agents_own_line_and_the_servers_answer():
    agent = [line for dummy, line in _logs.split_docker_log(AGENT_BANNED)]
    assert [_logs.is_banned(line) for line in agent] == [False] * 5 + [True, False, True]
    assert _logs.is_banned(CL_AGENT_BANNED)
    assert not any(_logs.is_banned(line) for dummy, line in _logs.split_docker_log(AGENT_HEALTHY))
    # The incident's signal is the same pattern.
    assert inc.agent_signal(inc.split_log(AGENT_BANNED))['signal'] == 'banned'
    assert dict(inc.AGENT_SIGNALS)['banned'] is _logs.BANNED_RE
