# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# PRIVATE to this collection: may change at any time, do not use from elsewhere.

"""The answers a public endpoint must give, judged from the registered results of ansible.builtin.uri probes
(a single result or a loop's), so that a role's verification reports every wrong answer at once."""

from __future__ import annotations

from urllib.parse import urlsplit

# The part of a wrong answer's body that a problem quotes: enough to recognise the server that answered.
BODY_QUOTE = 160


def probe_results(registered):
    """The uri results in a registered value: the results of a loop, the value itself, none when skipped."""
    if not isinstance(registered, dict) or registered.get('skipped'):
        return []
    if isinstance(registered.get('results'), list):
        return [r for r in registered['results'] if isinstance(r, dict) and not r.get('skipped')]
    return [registered]


def _where(result):
    url = result.get('url') or (result.get('item') if isinstance(result.get('item'), str) else '') or '?'
    parts = urlsplit(url)
    return (parts.path or '/') + ('?' + parts.query if parts.query else '') if parts.scheme else url


def _answer(result):
    status = result.get('status', -1)
    if not isinstance(status, int) or status < 0:
        return 'no answer (%s)' % (result.get('msg') or 'connection failed')
    body = ' '.join(str(result.get('content') or '').split())
    quoted = body[:BODY_QUOTE] + ('...' if len(body) > BODY_QUOTE else '')
    return '%s %s' % (status, quoted) if quoted else str(status)


def refusal_problems(registered, status, fault, body=None, contains=None):
    """One line per probe of ``registered`` whose answer is not ``status`` with the exact ``body`` (whitespace at
    the ends ignored) or a body that ``contains`` the marker: '<path>: <fault> (answered <status> <body>; expected
    <status> ...)'. An empty list when every answer is right, or when the probe was skipped."""
    expected = str(status) + (' %s' % body if body is not None else '') + \
        (' with "%s"' % contains if contains is not None else '')
    problems = []
    for result in probe_results(registered):
        content = str(result.get('content') or '')
        right = (result.get('status') == status
                 and (body is None or content.strip() == body)
                 and (contains is None or contains in content))
        if not right:
            problems.append('%s: %s (answered %s; expected %s)' % (_where(result), fault, _answer(result), expected))
    return problems
