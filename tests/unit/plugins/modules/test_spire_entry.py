# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import uuid

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.theprotocol.operator.plugins.modules import spire_entry

TD = 'example.com'
SERVER = 'spiffe://example.com/spire/server'
ALIAS = 'spiffe://example.com/node/operator-acme'
REGISTRY = 'spiffe://example.com/service/registry-acme'
WORKLOAD_SELECTORS = ['docker:label:com.docker.compose.project:acme', 'docker:label:com.docker.compose.service:cert-writer']


def _sid(value):
    td, path = value[len('spiffe://'):].split('/', 1)
    return {'trust_domain': td, 'path': '/' + path}


class FakeSpireServer:
    """Answers the spire-server entry commands like SPIRE v1.13 does with -output json."""

    def __init__(self):
        self.entries = {}
        self.calls = []
        self.refuse = None  # (code, message) for the next create/update

    def add(self, spiffe_id, parent_id, selectors, ttl=0, dns=(), **extra):
        entry_id = str(uuid.uuid4())
        self.entries[entry_id] = dict(
            id=entry_id, spiffe_id=_sid(spiffe_id), parent_id=_sid(parent_id),
            selectors=[{'type': s.split(':', 1)[0], 'value': s.split(':', 1)[1]} for s in selectors],
            x509_svid_ttl=ttl, federates_with=[], admin=False, downstream=False, expires_at='0', dns_names=list(dns),
            revision_number='0', store_svid=False, jwt_svid_ttl=0, hint='', created_at='1780574400')
        self.entries[entry_id].update(extra)
        return entry_id

    @staticmethod
    def _flags(args):
        flags = {}
        i = 0
        while i < len(args):
            name = args[i].lstrip('-')
            if name in ('node', 'admin', 'downstream', 'storeSVID'):
                flags[name] = True
                i += 1
                continue
            flags.setdefault(name, []).append(args[i + 1])
            i += 2
        return flags

    def __call__(self, argv, **_kwargs):
        self.calls.append(list(argv))
        assert argv[0] == '/opt/spire/bin/spire-server' and argv[1] == 'entry'
        assert argv[-2:] == ['-output', 'json'], 'the module must only ever ask for JSON'
        command, flags = argv[2], self._flags(argv[3:-2])
        if command == 'show':
            found = [e for e in self.entries.values()
                     if ('spiffeID' not in flags or e['spiffe_id'] == _sid(flags['spiffeID'][0]))
                     and ('parentID' not in flags or e['parent_id'] == _sid(flags['parentID'][0]))]
            return 0, json.dumps({'entries': found, 'next_page_token': ''}) + '\n', ''
        if command == 'delete':
            entry_id = flags['entryID'][0]
            code = 0 if self.entries.pop(entry_id, None) else 5
            return 0, json.dumps({'results': [{'status': {'code': code, 'message': 'OK'}, 'id': entry_id}]}), ''
        if self.refuse:
            status = {'code': self.refuse[0], 'message': self.refuse[1]}
            return 0, json.dumps({'results': [{'status': status, 'entry': {}}]}), ''
        parent = SERVER if flags.get('node') else flags['parentID'][0]
        fields = dict(ttl=int(flags.get('x509SVIDTTL', ['0'])[0]), dns=flags.get('dns', []),
                      jwt_svid_ttl=int(flags.get('jwtSVIDTTL', ['0'])[0]), hint=flags.get('hint', [''])[0],
                      admin=bool(flags.get('admin')))
        if command == 'create':
            entry_id = self.add(flags['spiffeID'][0], parent, flags['selector'], **fields)
        else:
            entry_id = flags['entryID'][0]
            revision = int(self.entries[entry_id]['revision_number']) + 1
            self.entries[entry_id] = {}
            self.add(flags['spiffeID'][0], parent, flags['selector'], **fields)
            new_id = list(self.entries)[-1]
            self.entries[entry_id] = dict(self.entries.pop(new_id), id=entry_id, revision_number=str(revision))
        entry = self.entries[entry_id]
        return 0, json.dumps({'results': [{'status': {'code': 0, 'message': 'OK'}, 'entry': entry}]}), ''

    def writes(self):
        return [c for c in self.calls if c[2] != 'show']


@pytest.fixture
def server(monkeypatch):
    fake = FakeSpireServer()
    monkeypatch.setattr(basic.AnsibleModule, 'run_command', lambda self, argv, **kw: fake(argv, **kw))
    return fake


def run(capsys, args, check_mode=False, diff=False):
    args = dict(args)
    if check_mode:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            spire_entry.main()
    return info.value.code, json.loads(capsys.readouterr().out)


ALIAS_ARGS = dict(spiffe_id=ALIAS, node=True, selectors=['x509pop:subject:cn:operator-acme'])
WORKLOAD_ARGS = dict(spiffe_id=REGISTRY, parent_id=ALIAS, selectors=WORKLOAD_SELECTORS, x509_svid_ttl=3600)


def test_create_then_idempotent(server, capsys):
    rc, result = run(capsys, ALIAS_ARGS)
    assert rc == 0 and result['changed'] is True and result['action'] == 'create'
    assert result['entry']['parent_id'] == SERVER and result['entry_id']
    assert ['-node'] == [a for a in server.writes()[0] if a == '-node']
    rc, result = run(capsys, ALIAS_ARGS)
    assert rc == 0 and result['changed'] is False and result['action'] == 'none'
    assert len(server.entries) == 1 and len(server.writes()) == 1


def test_workload_create_update_in_place(server, capsys):
    rc, created = run(capsys, WORKLOAD_ARGS)
    assert created['changed'] and created['entry']['x509_svid_ttl'] == 3600
    assert created['entry']['selectors'] == sorted(WORKLOAD_SELECTORS)
    rc, result = run(capsys, dict(WORKLOAD_ARGS, x509_svid_ttl=600, dns_names=['registry.acme.example']), diff=True)
    assert rc == 0 and result['changed'] and result['action'] == 'update'
    assert result['differences'] == ['x509_svid_ttl', 'dns_names']
    assert result['entry_id'] == created['entry_id'] and len(server.entries) == 1
    assert result['diff']['before']['x509_svid_ttl'] == 3600 and result['diff']['after']['x509_svid_ttl'] == 600
    assert server.writes()[-1][2] == 'update'
    rc, result = run(capsys, dict(WORKLOAD_ARGS, x509_svid_ttl=600, dns_names=['registry.acme.example']))
    assert result['changed'] is False


def test_selector_order_does_not_matter(server, capsys):
    server.add(REGISTRY, ALIAS, list(reversed(WORKLOAD_SELECTORS)), ttl=3600)
    rc, result = run(capsys, WORKLOAD_ARGS)
    assert rc == 0 and result['changed'] is False and not server.writes()


def test_update_keeps_unmanaged_fields(server, capsys):
    entry_id = server.add(REGISTRY, ALIAS, ['unix:uid:0'], ttl=3600, jwt_svid_ttl=300, hint='blue')
    rc, result = run(capsys, WORKLOAD_ARGS)
    assert rc == 0 and result['action'] == 'update'
    assert server.entries[entry_id]['jwt_svid_ttl'] == 300 and server.entries[entry_id]['hint'] == 'blue'


def test_check_mode_changes_nothing(server, capsys):
    rc, result = run(capsys, WORKLOAD_ARGS, check_mode=True)
    assert rc == 0 and result['changed'] is True and result['action'] == 'create' and result['entry_id'] is None
    assert not server.entries and not server.writes()
    entry_id = server.add(REGISTRY, ALIAS, ['unix:uid:0'], ttl=5)
    rc, result = run(capsys, WORKLOAD_ARGS, check_mode=True)
    assert result['changed'] and result['action'] == 'update' and result['entry']['x509_svid_ttl'] == 3600
    assert server.entries[entry_id]['x509_svid_ttl'] == 5 and not server.writes()


def test_other_parent_is_a_different_entry(server, capsys):
    server.add(REGISTRY, 'spiffe://example.com/spire/agent/x509pop/abc', ['unix:uid:0'])
    rc, result = run(capsys, WORKLOAD_ARGS)
    assert result['action'] == 'create' and len(server.entries) == 2


def test_duplicates_fail_without_writing(server, capsys):
    server.add(REGISTRY, ALIAS, ['unix:uid:0'])
    server.add(REGISTRY, ALIAS, ['unix:uid:1'])
    rc, result = run(capsys, WORKLOAD_ARGS)
    assert rc == 1 and 'There are 2 registration entries' in result['msg'] and not server.writes()


def test_server_refusal_fails(server, capsys):
    server.refuse = (3, 'invalid DNS name')
    rc, result = run(capsys, WORKLOAD_ARGS)
    assert rc == 1 and 'InvalidArgument' in result['msg'] and 'invalid DNS name' in result['msg']


def test_absent(server, capsys):
    entry_id = server.add(REGISTRY, ALIAS, WORKLOAD_SELECTORS)
    rc, result = run(capsys, dict(spiffe_id=REGISTRY, parent_id=ALIAS, state='absent'), check_mode=True)
    assert result['changed'] and result['deleted_entry_ids'] == [entry_id] and server.entries
    rc, result = run(capsys, dict(spiffe_id=REGISTRY, parent_id=ALIAS, state='absent'))
    assert result['changed'] and not server.entries
    rc, result = run(capsys, dict(spiffe_id=REGISTRY, parent_id=ALIAS, state='absent'))
    assert rc == 0 and result['changed'] is False


def test_cli_failure_reports_stderr(monkeypatch, capsys):
    monkeypatch.setattr(basic.AnsibleModule, 'run_command', lambda self, argv, **kw: (
        1, '', 'Error: connection error: desc = "transport: Error while dialing: dial unix '
               '/tmp/spire-server/private/api.sock: connect: no such file or directory"\n'))
    rc, result = run(capsys, WORKLOAD_ARGS)
    assert rc == 1 and 'entry show failed (exit 1)' in result['msg'] and 'api.sock' in result['msg']


@pytest.mark.parametrize('args, message', [
    (dict(spiffe_id=REGISTRY, selectors=['unix:uid:0']), 'parent_id'),
    (dict(spiffe_id=REGISTRY, parent_id=ALIAS, node=True, selectors=['unix:uid:0']), 'mutually exclusive'),
    (dict(spiffe_id=REGISTRY, parent_id=ALIAS), 'selectors'),
    (dict(spiffe_id='example.com/x', parent_id=ALIAS, selectors=['unix:uid:0']), 'not a SPIFFE ID'),
    (dict(spiffe_id=REGISTRY, parent_id=ALIAS, selectors=['nocolon']), 'type:value'),
])
def test_bad_arguments(server, capsys, args, message):
    rc, result = run(capsys, args)
    assert rc == 1 and message in result['msg'] and not server.writes()
