# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json

import pytest

from ansible_collections.theprotocol.operator.plugins.module_utils import _spire_cli as spire

REGISTRY = 'spiffe://example.com/service/registry-acme'
ALIAS = 'spiffe://example.com/node/operator-acme'
SELECTORS = ('docker:label:com.docker.compose.service:cert-writer', 'docker:label:com.docker.compose.project:acme')


def raw_entry(entry_id='e1', spiffe_id=REGISTRY, parent_id=ALIAS, selectors=SELECTORS, ttl=3600, dns=(), **extra):
    """An entry as SPIRE v1.13 prints it with -output json (protojson, proto names, unpopulated fields)."""
    def sid(value):
        td, path = value[len('spiffe://'):].split('/', 1)
        return {'trust_domain': td, 'path': '/' + path}
    entry = {
        'id': entry_id, 'spiffe_id': sid(spiffe_id), 'parent_id': sid(parent_id),
        'selectors': [{'type': s.split(':', 1)[0], 'value': s.split(':', 1)[1]} for s in selectors],
        'x509_svid_ttl': ttl, 'federates_with': [], 'admin': False, 'downstream': False, 'expires_at': '0',
        'dns_names': list(dns), 'revision_number': '0', 'store_svid': False, 'jwt_svid_ttl': 0, 'hint': '',
        'created_at': '1780574400',
    }
    entry.update(extra)
    return entry


def desired(**kw):
    args = dict(spiffe_id=REGISTRY, parent_id=ALIAS, selectors=SELECTORS, x509_svid_ttl=3600, dns_names=[])
    args.update(kw)
    return spire.desired_entry(**args)


# ----------------------------------------------------------------------------- values

def test_server_id_and_trust_domain():
    assert spire.server_id('example.com') == 'spiffe://example.com/spire/server'
    assert spire.trust_domain_of(REGISTRY) == 'example.com'
    for bad in ('', 'example.com/x', 'spiffe:///x', None):
        with pytest.raises(spire.SpireCliError):
            spire.trust_domain_of(bad)


@pytest.mark.parametrize('selector', ['unix:uid:0', 'x509pop:subject:cn:operator-acme',
                                      'docker:label:com.docker.compose.service:cert-writer'])
def test_validate_selector_ok(selector):
    assert spire.validate_selector(selector) == selector


@pytest.mark.parametrize('selector', ['unix', ':uid:0', 'unix:', ' unix:uid:0', 3])
def test_validate_selector_bad(selector):
    with pytest.raises(spire.SpireCliError, match='type:value'):
        spire.validate_selector(selector)


def test_normalize_entry_flattens_protojson():
    entry = spire.normalize_entry(raw_entry(dns=['a.example'], expires_at='1790000000', revision_number='3'))
    assert entry['spiffe_id'] == REGISTRY
    assert entry['parent_id'] == ALIAS
    assert entry['selectors'] == sorted(SELECTORS)
    assert entry['x509_svid_ttl'] == 3600
    assert entry['dns_names'] == ['a.example']
    assert entry['expires_at'] == 1790000000 and entry['revision_number'] == 3 and entry['created_at'] == 1780574400
    assert entry['admin'] is False and entry['hint'] == ''


def test_normalize_entry_missing_fields():
    entry = spire.normalize_entry({'id': 'x', 'spiffe_id': {'trust_domain': 'example.com', 'path': '/a'}})
    assert entry['parent_id'] is None and entry['selectors'] == [] and entry['x509_svid_ttl'] == 0


def test_desired_entry_validates():
    assert desired()['selectors'] == sorted(SELECTORS)
    with pytest.raises(spire.SpireCliError, match='At least one selector'):
        desired(selectors=[])
    with pytest.raises(spire.SpireCliError, match='type:value'):
        desired(selectors=['nocolon'])
    with pytest.raises(spire.SpireCliError, match='x509_svid_ttl'):
        desired(x509_svid_ttl=-1)


# ----------------------------------------------------------------------------- parsing

def test_parse_show():
    text = json.dumps({'entries': [raw_entry('e1'), raw_entry('e2', ttl=60)], 'next_page_token': ''})
    entries = spire.parse_show(text)
    assert [e['id'] for e in entries] == ['e1', 'e2']
    assert spire.parse_show('{"entries": [], "next_page_token": ""}\n') == []
    assert spire.parse_show('{"entries": null}') == []


@pytest.mark.parametrize('text, message', [
    ('', 'printed nothing'),
    ('Entry ID : abc\nSPIFFE ID : spiffe://x', 'did not print JSON'),
    ('{"error": "rpc error: code = Unavailable"}', 'failed: rpc error'),
    ('[1, 2]', 'unexpected JSON'),
])
def test_parse_show_errors(text, message):
    with pytest.raises(spire.SpireCliError, match=message):
        spire.parse_show(text)


def test_parse_batch_ok_and_refused():
    ok = {'results': [{'status': {'code': 0, 'message': 'OK'}, 'entry': raw_entry('new')}]}
    assert spire.parse_batch(json.dumps(ok), 'entry create')['id'] == 'new'
    refused = {'results': [{'status': {'code': 6, 'message': 'similar entry already exists'}, 'entry': raw_entry()}]}
    with pytest.raises(spire.SpireCliError, match='AlreadyExists .*similar entry already exists'):
        spire.parse_batch(json.dumps(refused), 'entry create')
    deleted = {'results': [{'status': {'code': 0, 'message': 'OK'}, 'id': 'gone'}]}
    assert spire.parse_batch(json.dumps(deleted), 'entry delete') == {'id': 'gone'}
    with pytest.raises(spire.SpireCliError, match='exactly one'):
        spire.parse_batch('{"results": []}', 'entry update')


# ----------------------------------------------------------------------------- planning

def test_plan_create_none_update():
    want = desired()
    assert spire.plan([], want)[0] == 'create'
    current = spire.normalize_entry(raw_entry(selectors=list(reversed(SELECTORS))))
    assert spire.plan([current], want) == ('none', current, [])
    changed = spire.normalize_entry(raw_entry(selectors=['unix:uid:0'], ttl=60))
    action, entry, diffs = spire.plan([changed], want)
    assert action == 'update' and entry is changed and diffs == ['selectors', 'x509_svid_ttl']
    assert spire.plan([spire.normalize_entry(raw_entry(dns=['x.example']))], want)[2] == ['dns_names']


def test_plan_ignores_other_parents_and_refuses_duplicates():
    want = desired()
    other = spire.normalize_entry(raw_entry(parent_id='spiffe://example.com/spire/agent/x509pop/abc'))
    assert spire.plan([other], want)[0] == 'create'
    dups = [spire.normalize_entry(raw_entry('e1')), spire.normalize_entry(raw_entry('e2', ttl=5))]
    with pytest.raises(spire.SpireCliError, match='2 registration entries .*e1, e2.* 1 already match'):
        spire.plan(dups, want)


def test_predicted_keeps_unmanaged_fields():
    current = spire.normalize_entry(raw_entry(ttl=60, jwt_svid_ttl=300, hint='h'))
    after = spire.predicted(current, desired())
    assert after['x509_svid_ttl'] == 3600 and after['jwt_svid_ttl'] == 300 and after['hint'] == 'h'
    assert spire.predicted(None, desired())['id'] == ''


# ----------------------------------------------------------------------------- argv

def test_show_argv():
    assert spire.show_argv('/bin/s', '/run/api.sock', REGISTRY, ALIAS) == [
        '/bin/s', 'entry', 'show', '-socketPath', '/run/api.sock', '-spiffeID', REGISTRY, '-parentID', ALIAS,
        '-output', 'json']
    assert spire.show_argv(None, None) == [spire.DEFAULT_SERVER_BIN, 'entry', 'show', '-output', 'json']


def test_create_argv_node_and_workload():
    alias = spire.desired_entry(ALIAS, 'spiffe://example.com/spire/server', ['x509pop:subject:cn:operator-acme'])
    assert spire.create_argv('s', None, alias, node=True) == [
        's', 'entry', 'create', '-node', '-spiffeID', ALIAS, '-selector', 'x509pop:subject:cn:operator-acme',
        '-output', 'json']
    argv = spire.create_argv('s', None, desired(dns_names=['a.example', 'b.example']))
    assert argv[:5] == ['s', 'entry', 'create', '-parentID', ALIAS]
    assert argv[argv.index('-x509SVIDTTL') + 1] == '3600'
    assert [argv[i + 1] for i, a in enumerate(argv) if a == '-dns'] == ['a.example', 'b.example']
    assert [argv[i + 1] for i, a in enumerate(argv) if a == '-selector'] == sorted(SELECTORS)


def test_update_argv_carries_unmanaged_fields():
    current = spire.normalize_entry(raw_entry(
        'e9', jwt_svid_ttl=300, federates_with=['other.org'], admin=True, downstream=False, store_svid=True,
        expires_at='1790000000', hint='blue'))
    argv = spire.update_argv('s', '/sock', current, desired())
    assert argv[:7] == ['s', 'entry', 'update', '-socketPath', '/sock', '-entryID', 'e9']
    for flag, value in (('-parentID', ALIAS), ('-spiffeID', REGISTRY), ('-jwtSVIDTTL', '300'),
                        ('-federatesWith', 'other.org'), ('-entryExpiry', '1790000000'), ('-hint', 'blue')):
        assert argv[argv.index(flag) + 1] == value
    assert '-admin' in argv and '-storeSVID' in argv and '-downstream' not in argv
    assert argv[-2:] == ['-output', 'json']


def test_delete_argv():
    assert spire.delete_argv('s', None, 'e1') == ['s', 'entry', 'delete', '-entryID', 'e1', '-output', 'json']
