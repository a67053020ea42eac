# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Checklist reports rendered from real check results (_checklist's own judgements on real env-file
permissions and minting values), parsed back as JSON and JUnit XML, written atomically."""

from __future__ import annotations

import json
import os
import stat
import datetime
import xml.etree.ElementTree as ET

from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist as cl
from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist_report as report
from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation
from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation_journal as journal


def module_result(tmp_path, name, env_mode, minting, secret_days=None):
    """What the security_checklist module returns, from real judgements on a real env file (and, with
    ``secret_days``, a journal recording its POSTGRES_PASSWORD that many days ago)."""
    env = tmp_path / ('%s.env' % name)
    env.write_text('MINTING_AUTHORITY=%s\nPOSTGRES_PASSWORD=pg-%s-0123456789abcdef\n' % (minting, name))
    os.chmod(env, env_mode)
    info = os.stat(env)
    results = [
        cl.check_env_file_permissions(str(env), dict(mode=stat.S_IMODE(info.st_mode), uid=0, gid=0, exists=True,
                                                     is_file=True, is_symlink=False)),
        cl.check_minting_disabled(minting, minting),
    ]
    if secret_days is not None:
        fps = _rotation.fingerprints(_rotation.env_values(env.read_bytes(), ['POSTGRES_PASSWORD']))
        now = datetime.datetime(2026, 11, 25, 10, 0, tzinfo=datetime.timezone.utc)
        doc = journal.record_secrets(journal.empty(), fps, now=now - datetime.timedelta(days=secret_days))
        results.append(cl.check_secrets_age(journal.secret_ages(doc, fps, now=now), 90))
    return dict(registry_name='registry-%s' % name, checked_at='2026-11-25T10:00:00Z', duration_seconds=0.12,
                results=results, summary=cl.summarize(results))


def fleet(tmp_path):
    return {
        'host1': module_result(tmp_path, 'h1', 0o600, 'disabled', secret_days=12),
        'host2': module_result(tmp_path, 'h2', 0o644, 'disabled'),
        'host3': None,  # unreachable: no result registered
        'host4': dict(failed=True, msg='Docker is not reachable at unix:///var/run/docker.sock'),
    }


def test_rows_put_failing_hosts_first_and_keep_errors(tmp_path):
    rows = report.rows(fleet(tmp_path), {'host3': 'registry3'})
    assert [r['host'] for r in rows] == ['host3', 'host4', 'host2', 'host1']
    assert rows[0]['status'] == 'error' and rows[0]['registry_name'] == 'registry3'
    assert rows[0]['error'] == report.NO_RESULT
    assert rows[1]['error'].startswith('Docker is not reachable')
    assert rows[2]['status'] == cl.FAIL and rows[3]['status'] == cl.PASS


def test_fleet_json_and_table(tmp_path):
    rows = report.rows(fleet(tmp_path))
    doc = json.loads(report.fleet_json(rows))
    assert doc['totals'] == dict(hosts=4, failing_hosts=['host3', 'host4', 'host2'], warning_hosts=[], pending_hosts=[],
                                 oldest_secret={'host1': 'POSTGRES_PASSWORD, 12 d', 'host2': '-', 'host3': '-',
                                                'host4': '-'})
    table = report.fleet_table(rows)
    assert table[0].split(' | ')[3:5] == ['spire_agent_healthy', 'cert_writer_running']
    assert len(table) == 2 + 4
    host2 = [line for line in table if line.startswith('| host2 ')][0]
    cells = [c.strip() for c in host2.strip('|').split('|')]
    ids = list(cl.CHECKS)
    assert cells[2] == 'FAIL'
    assert cells[3 + ids.index('env_file_permissions')] == 'FAIL'
    assert cells[3 + ids.index('minting_disabled')] == 'ok'
    assert cells[3 + ids.index('svid_valid')] == '-'
    assert table[0].endswith('| oldest secret |') and cells[-1] == '-'
    host1 = [line for line in table if line.startswith('| host1 ')][0]
    assert host1.endswith('| POSTGRES_PASSWORD, 12 d |')


def test_junit_parses_with_one_case_per_host_and_check(tmp_path):
    rows = report.rows(fleet(tmp_path))
    suites = ET.fromstring(report.junit(rows))
    assert suites.attrib == dict(name='theprotocol security checklist', tests='7', failures='1', errors='2',
                                 skipped='0')
    cases = suites.findall('./testsuite/testcase')
    assert len(cases) == 7
    failed = [c for c in cases if c.find('failure') is not None]
    assert [(c.get('classname'), c.get('name')) for c in failed] == [
        ('security_checklist.host2', 'env_file_permissions')]
    assert failed[0].find('failure').text == cl.CHECKS['env_file_permissions'][1]
    errors = [c.find('error').get('message') for c in cases if c.find('error') is not None]
    assert errors[0] == report.NO_RESULT


def test_junit_escapes_markup_in_evidence():
    res = cl.result('minting_disabled', cl.FAIL, ['value "<true>" & more'])
    one = report.row('h<1>', dict(registry_name='r', checked_at='t', results=[res], summary=cl.summarize([res])))
    case = ET.fromstring(report.junit([one])).find('./testsuite/testcase')
    assert case.get('classname') == 'security_checklist.h<1>'
    assert case.find('failure').get('message') == 'value "<true>" & more'


def test_host_markdown_lists_remediation_of_failures_only(tmp_path):
    rows = dict((r['host'], r) for r in report.rows(fleet(tmp_path)))
    text = report.host_markdown(rows['host2'])
    assert text.startswith('# Security checklist: host2 (registry-h2)')
    assert '| env_file_permissions | FAIL |' in text
    assert '## What to do' in text and '**env_file_permissions** (fail)' in text
    assert '**minting_disabled**' not in text
    assert '## What to do' not in report.host_markdown(rows['host1'])
    assert report.host_markdown(rows['host3']).endswith('**ERROR**: %s\n' % report.NO_RESULT)


def test_markdown_cells_escape_pipes_and_newlines():
    res = cl.result('minting_disabled', cl.WARN, ['a|b\nc'])
    one = report.row('h', dict(registry_name='r', checked_at='t', results=[res], summary=cl.summarize([res])))
    assert '| minting_disabled | WARN | a\\|b c |' in report.host_markdown(one)


def test_write_reports_atomic_and_only_on_change(tmp_path):
    rows = report.rows(fleet(tmp_path))
    docs = report.documents(rows)
    assert sorted(docs) == sorted(['fleet.json', 'fleet.md', 'fleet.xml'] + [
        '%s.%s' % (h, e) for h in ('host1', 'host2', 'host3', 'host4') for e in ('json', 'md', 'xml')])
    dest = tmp_path / 'reports' / 'nested'
    assert report.write_reports(str(dest), docs) == sorted(docs)
    assert stat.S_IMODE(os.stat(dest / 'fleet.json').st_mode) == 0o644
    assert report.write_reports(str(dest), docs) == []
    docs['host1.md'] = 'changed\n'
    assert report.write_reports(str(dest), docs) == ['host1.md']
    assert sorted(os.listdir(dest)) == sorted(docs)  # no temporary file left behind
    assert json.loads((dest / 'host2.json').read_text())['status'] == cl.FAIL


def test_documents_respect_the_switches(tmp_path):
    rows = report.rows(fleet(tmp_path))
    assert sorted(report.documents(rows, host_reports=False)) == ['fleet.json', 'fleet.md', 'fleet.xml']
    assert all(not n.startswith('fleet') for n in report.documents(rows, fleet_report=False))


def test_hosts_of_later_serial_batches_are_pending_not_errors(tmp_path):
    results = fleet(tmp_path)
    results['host5'] = None  # a later batch: no result yet
    rows = report.rows(results, pending={'host1', 'host5'})  # host1 ran in an earlier batch: has its result
    by_host = dict((r['host'], r) for r in rows)
    assert by_host['host5']['status'] == report.PENDING and by_host['host5']['note'] == report.NOT_YET
    assert by_host['host1']['status'] == cl.PASS and by_host['host3']['status'] == 'error'
    assert rows[-1]['host'] == 'host5'
    assert json.loads(report.fleet_json(rows))['totals']['pending_hosts'] == ['host5']
    assert '| host5 | None | PENDING |' in '\n'.join(report.fleet_table(rows))
    suites = ET.fromstring(report.junit(rows))
    assert 'host5' not in [s.get('name') for s in suites.findall('./testsuite')]
    assert not [n for n in report.documents(rows) if n.startswith('host5.')]
