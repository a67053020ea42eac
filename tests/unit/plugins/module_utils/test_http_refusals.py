# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The public proxy's verification from outside: every wrong answer is a line, every right one none. The results
are shaped as ansible.builtin.uri registers them (a loop's results, a single result, a skipped task, a connection
that failed)."""

from __future__ import annotations

from ansible_collections.theprotocol.operator.plugins.module_utils import _http_refusals as hr

BASE = 'https://127.0.0.1:8443'
REFUSED = '{"error":"not served publicly","path":"/internal/status"}'


def uri(path, status, content='', **extra):
    return dict(url=BASE + path, status=status, content=content, changed=False, failed=False, **extra)


def loop(*results):
    return dict(changed=False, msg='All items completed', results=[dict(r, item=r['url'][len(BASE):]) for r in results])


def test_right_answers_make_no_line():
    probe = loop(uri('/internal/', 403, REFUSED), uri('/api/v1/rows', 403, REFUSED))
    assert hr.refusal_problems(probe, 403, 'never proxied', contains='not served publicly') == []
    assert hr.refusal_problems(uri('/health', 200, '{"status": "ok"}\n'), 200, 'tells nothing',
                               body='{"status": "ok"}') == []


# What the guide's public nginx configuration answered on the lab (host6, 2026-11-28), enabled next to the role's
# site for the same name: nginx served it, so every probe reached the registry itself.
GUIDE_SITE_ANSWERS = {
    'health': uri('/health', 200, '{"postgres": "ok", "redis": "ok", "status": "ok"}'),
    'internal': loop(uri('/internal/', 404, '{"error": "not found"}'),
                     uri('/api/v1/rows', 401, '{"error": "unauthorized"}')),
    'federation': loop(uri('/api/v1/federation/', 404, '{"error": "not found"}'),
                       uri('/api/v1/events/', 401, '{"error": "client certificate required (mTLS via SPIRE SVID)"}'),
                       uri('/api/v1/cross-teg/', 404, '{"error": "not found"}'),
                       uri('/internal/federation/query', 401,
                           '{"error": "client certificate required (mTLS via SPIRE SVID)"}')),
}


def test_each_wrong_answer_is_a_line_with_what_answered():
    answers = GUIDE_SITE_ANSWERS
    problems = (hr.refusal_problems(answers['health'], 200, 'tells nothing', body='{"status": "ok"}')
                + hr.refusal_problems(answers['internal'], 403, 'refused by nginx', contains='not served publicly')
                + hr.refusal_problems(answers['federation'], 403, 'allow-list', contains='federation peer not allowed'))
    assert len(problems) == 7
    assert problems[0] == ('/health: tells nothing (answered 200 {"postgres": "ok", "redis": "ok", "status": "ok"}; '
                           'expected 200 {"status": "ok"})')
    assert problems[2] == ('/api/v1/rows: refused by nginx (answered 401 {"error": "unauthorized"}; '
                           'expected 403 with "not served publicly")')
    assert problems[6] == ('/internal/federation/query: allow-list (answered 401 {"error": "client certificate required '
                           '(mTLS via SPIRE SVID)"}; expected 403 with "federation peer not allowed")')


def test_the_right_status_with_another_body_is_wrong():
    detailed = '{"status": "ok", "database": "ok", "redis": "ok"}'
    assert hr.refusal_problems(uri('/health', 200, detailed), 200, 'no database or Redis state',
                               body='{"status": "ok"}') == [
        '/health: no database or Redis state (answered 200 ' + detailed + '; expected 200 {"status": "ok"})']
    # A 403 from something else than the allow-list (the registry's own refusal) does not prove the allow-list.
    assert len(hr.refusal_problems(uri('/api/v1/events/', 403, '{"error": "forbidden"}'), 403, 'allow-list',
                                   contains='federation peer not allowed')) == 1


def test_no_answer_is_wrong_and_says_why():
    failed = dict(url=BASE + '/health', status=-1, failed=True,
                  msg='Status code was -1 and not [200, 403]: Request failed: <urlopen error [Errno 111] Connection refused>')
    [line] = hr.refusal_problems(failed, 200, 'down', body='{"status": "ok"}')
    assert line.startswith('/health: down (answered no answer (Status code was -1')
    assert 'Connection refused' in line


def test_long_bodies_are_quoted_in_part():
    [line] = hr.refusal_problems(uri('/internal/', 200, 'x' * 1000), 403, 'proxied', contains='not served publicly')
    assert 'x' * hr.BODY_QUOTE + '...;' in line and 'x' * (hr.BODY_QUOTE + 1) not in line


def test_skipped_probes_are_not_judged():
    assert hr.refusal_problems(dict(changed=False, skipped=True, skip_reason='Conditional result was False'),
                               200, 'x', body='{"status": "ok"}') == []
    assert hr.refusal_problems(dict(results=[dict(skipped=True, item='/internal/')]), 403, 'x') == []
