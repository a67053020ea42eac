# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Security checklist reports (private to this collection): per-host and fleet JSON, JUnit XML, Markdown.

Pure rendering from the ``security_checklist`` module's results; ``write_reports`` is the only
function that touches the file system (atomic writes, unchanged files left alone). The
``checklist_report`` action plugin calls it once per run on the controller.
"""

from __future__ import annotations

import json
import os
import tempfile
from xml.sax.saxutils import escape, quoteattr

from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist as cl

PENDING = 'pending'
RANK = {'error': -1, cl.FAIL: 0, cl.WARN: 1, cl.SKIP: 2, cl.PASS: 3, PENDING: 4}
CELL = {cl.PASS: 'ok', cl.FAIL: 'FAIL', cl.WARN: 'WARN', cl.SKIP: 'SKIP'}
NO_RESULT = 'no checklist result: the host failed or was unreachable before the check'
NOT_YET = 'not checked: its batch of the serial rollout had not run when this report was written'


def row(host, result, registry_name=None, pending=False):
    """One report row from a module result; without one: ``pending`` (a later serial batch) or ``error``."""
    result = result or {}
    if pending and not result:
        return dict(host=host, rank=RANK[PENDING], status=PENDING, registry_name=registry_name, checked_at=None,
                    duration_seconds=None, summary={}, results=[], error=None, note=NOT_YET)
    if 'results' in result:
        return dict(host=host, rank=RANK[result['summary']['status']], status=result['summary']['status'],
                    registry_name=result.get('registry_name'), checked_at=result.get('checked_at'),
                    duration_seconds=result.get('duration_seconds'), summary=result['summary'],
                    results=result['results'], error=None)
    return dict(host=host, rank=RANK['error'], status='error', registry_name=registry_name, checked_at=None,
                duration_seconds=None, summary={}, results=[], error=result.get('msg') or NO_RESULT)


def rows(results_by_host, registry_names=None, pending=()):
    """Rows of every host, failing hosts first, then by host name; ``pending``: hosts of later batches."""
    registry_names = registry_names or {}
    out = [row(h, r, registry_names.get(h), h in pending) for h, r in results_by_host.items()]
    return sorted(out, key=lambda r: (r['rank'], r['host']))


def to_json(value):
    return json.dumps(value, indent=2, sort_keys=True) + '\n'


def fleet_json(all_rows):
    return to_json(dict(
        generated_by='theprotocol.operator.security_checklist', hosts=all_rows,
        totals=dict(hosts=len(all_rows),
                    failing_hosts=[r['host'] for r in all_rows if r['status'] in (cl.FAIL, 'error')],
                    warning_hosts=[r['host'] for r in all_rows if r['status'] == cl.WARN],
                    oldest_secret=dict((r['host'], oldest_secret(r)) for r in all_rows),
                    pending_hosts=[r['host'] for r in all_rows if r['status'] == PENDING])))


def _md_cell(text):
    return str(text).replace('|', '\\|').replace('\n', ' ')


def host_markdown(one):
    head = '# Security checklist: %s (%s)\n\n' % (one['host'], one['registry_name'])
    if one['error']:
        return head + '**ERROR**: %s\n' % one['error']
    counts = one['summary']['counts']
    lines = [head + 'Checked at %s; overall **%s** (%d fail, %d warn, %d skip, %d pass).\n' % (
        one['checked_at'], one['status'].upper(), counts[cl.FAIL], counts[cl.WARN], counts[cl.SKIP],
        counts[cl.PASS]), '| check | status | evidence |', '|---|---|---|']
    for res in one['results']:
        lines.append('| %s | %s | %s |' % (res['id'], res['status'].upper(), _md_cell('<br>'.join(res['evidence']))))
    todo = [res for res in one['results'] if res['status'] in (cl.FAIL, cl.WARN)]
    if todo:
        lines += ['', '## What to do', '']
        lines += ['- **%s** (%s): %s' % (r['id'], r['status'], r['remediation'].replace('\n', ' ')) for r in todo]
    return '\n'.join(lines) + '\n'


def fleet_table(all_rows):
    """The hosts x checks Markdown table, failing hosts first (one list item per line)."""
    ids = list(cl.CHECKS)
    lines = ['| host | registry | overall | %s | oldest secret |' % ' | '.join(ids),
             '|---|---|---|%s---|' % ('---|' * len(ids))]
    for one in all_rows:
        status = dict((r['id'], r['status']) for r in one['results'])
        cells = ''.join(' %s |' % CELL.get(status.get(i), '-') for i in ids)
        lines.append('| %s | %s | %s |%s %s |'
                     % (one['host'], one['registry_name'], one['status'].upper(), cells, oldest_secret(one)))
    return lines


def oldest_secret(one):
    """``KEY, N d`` from the host's secrets_age result; ``unknown`` or ``-`` (not checked)."""
    for res in one['results']:
        if res['id'] == 'secrets_age':
            oldest = (res.get('details') or {}).get('oldest')
            return '%s, %d d' % (oldest['key'], oldest['days']) if oldest else 'unknown'
    return '-'


def fleet_markdown(all_rows):
    return ('# Security checklist: fleet of %d host(s)\n\nFailing hosts first. FAIL / WARN / SKIP / ok per check; '
            'details in `<host>.md`.\n\n' % len(all_rows)) + '\n'.join(fleet_table(all_rows)) + '\n'


def junit(all_rows):
    """JUnit XML: one testsuite per host, one testcase per check (an ``error`` case for a host without result)."""
    all_rows = [one for one in all_rows if one['status'] != PENDING]
    checks = [res for one in all_rows for res in one['results']]
    errors = [one for one in all_rows if one['error']]

    def count(items, status):
        return sum(1 for res in items if res['status'] == status)

    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<testsuites name="theprotocol security checklist" tests="%d" failures="%d" errors="%d" skipped="%d">' % (
               len(checks) + len(errors), count(checks, cl.FAIL), len(errors), count(checks, cl.SKIP))]
    for one in all_rows:
        cls = quoteattr('security_checklist.%s' % one['host'])
        stamp = ' timestamp=%s' % quoteattr(one['checked_at']) if one['checked_at'] else ''
        out.append('  <testsuite name=%s tests="%d" failures="%d" errors="%d" skipped="%d"%s>' % (
            quoteattr(one['host']), len(one['results']) if not one['error'] else 1, count(one['results'], cl.FAIL),
            1 if one['error'] else 0, count(one['results'], cl.SKIP), stamp))
        if one['error']:
            out.append('    <testcase classname=%s name="checklist">' % cls)
            out.append('      <error message=%s/>' % quoteattr(one['error']))
            out.append('    </testcase>')
        for res in one['results']:
            evidence = '; '.join(res['evidence'])
            out.append('    <testcase classname=%s name=%s>' % (cls, quoteattr(res['id'])))
            if res['status'] == cl.FAIL:
                out.append('      <failure type="fail" message=%s>%s</failure>' % (
                    quoteattr(evidence), escape(res['remediation'])))
            elif res['status'] == cl.SKIP:
                out.append('      <skipped message=%s/>' % quoteattr(evidence))
            text = '%s: %s\n%s' % (res['status'].upper(), res['title'], '\n'.join(res['evidence']))
            if res['status'] == cl.WARN:
                text += '\nRemediation: %s' % res['remediation']
            out.append('      <system-out>%s</system-out>' % escape(text))
            out.append('    </testcase>')
        out.append('  </testsuite>')
    out.append('</testsuites>')
    return '\n'.join(out) + '\n'


def documents(all_rows, host_reports=True, fleet_report=True):
    """File name -> content of every report of a run."""
    docs = {}
    if host_reports:
        for one in (r for r in all_rows if r['status'] != PENDING):
            docs['%s.json' % one['host']] = to_json(one)
            docs['%s.xml' % one['host']] = junit([one])
            docs['%s.md' % one['host']] = host_markdown(one)
    if fleet_report:
        docs['fleet.json'] = fleet_json(all_rows)
        docs['fleet.xml'] = junit(all_rows)
        docs['fleet.md'] = fleet_markdown(all_rows)
    return docs


def write_reports(directory, docs, mode=0o644):
    """Write ``docs`` into ``directory`` (created 0755 if missing), each atomically; the names written."""
    os.makedirs(directory, mode=0o755, exist_ok=True)
    written = []
    for name, content in sorted(docs.items()):
        path = os.path.join(directory, name)
        try:
            with open(path, encoding='utf-8') as handle:
                if handle.read() == content:
                    continue
        except OSError:
            pass
        fd, tmp = tempfile.mkstemp(dir=directory, prefix='.%s.' % name)
        try:
            with os.fdopen(fd, 'w', encoding='utf-8') as handle:
                handle.write(content)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        written.append(name)
    return written
