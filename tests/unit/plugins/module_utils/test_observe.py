# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The observation layer: the gatherer over a stack on disk and a stand-in of the Docker SDK
(observed_stack.LabHost), its pure fact functions on real data, and what never becomes a fact."""

from __future__ import annotations

import base64
import json
import os
import socket

import pytest

from ansible_collections.theprotocol.operator.tests.unit.plugins.module_utils import observed_stack as lab
from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist as cl
from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
from ansible_collections.theprotocol.operator.plugins.module_utils import _observe as observe
from ansible_collections.theprotocol.operator.plugins.module_utils import _secrets


@pytest.fixture
def host(tmp_path, pki):
    return lab.LabHost(tmp_path, pki)


def closed_port():
    """A local TCP port nothing listens on (connections are refused at once)."""
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


# --------------------------------------------------------------------------- the gatherer

def test_every_fact_is_gathered_as_json_without_a_secret(host):
    gatherer = host.gatherer(federation_host='127.0.0.1', federation_port=closed_port())
    secrets = gatherer.read_env()
    assert sorted(secrets) == sorted(host.secrets.values())
    facts = gatherer.gather()
    assert list(facts) == list(observe.FACT_NAMES)
    assert json.loads(json.dumps(facts)) == facts
    text = json.dumps(facts)
    for secret in host.secrets.values():
        assert secret not in text
    assert 'PRIVATE KEY' not in text
    # Docker and the files, as the stand-in and the disk hold them.
    assert facts['checked_at'] == '2026-06-04T12:00:00.000000Z'
    assert facts['stack']['registry_spiffe_id'] == host.pki.registry_id
    assert facts['options'] == lab.OPTIONS
    assert facts['containers']['registry']['env'] == dict(MINTING_AUTHORITY='disabled', EVENTSTORE_MTLS_REQUIRED='true')
    assert facts['agent_healthcheck'] == dict(exit_code=0, output='Agent is healthy.\n')
    assert facts['agent_svid'].startswith('-----BEGIN CERTIFICATE-----')
    assert facts['cert_writer_log'] == host.logs['cert-writer']
    assert len(facts['agent_log']) == 4 and len(facts['registry_log']) == 9  # the last 40 s of the registry log
    assert facts['svid_files']['key'] == dict(present=True, matches_svid=True, error=None)
    assert facts['svid_files']['written_at'] == '2026-06-04T11:59:45.000000Z'
    assert facts['live_auth']['POSTGRES_PASSWORD']['ok'] and facts['live_auth']['REDIS_PASSWORD']['ok']
    assert facts['redis_passwords'] == dict(count=1, reason=None)
    assert sorted(facts['images']) == sorted(lab._stack.SERVICES)
    assert facts['journal']['error'] is None and facts['journal']['rotation'] is None
    assert sorted(facts['journal']['secret_ages']) == sorted(host.secrets)
    # The network: nothing listens, every probe says so; every probe of the matrix was made.
    assert 'connection refused' in facts['federation_health']['error']
    assert facts['federation_health']['served_certificate_pem'] is None
    matrix = facts['mtls_probes']['matrix']
    assert sorted(matrix) == sorted(cl.MTLS_PROBE_IDS) and facts['mtls_probes']['unavailable'] == {}
    assert all(len(row) == len(cl.FEDERATION_ENDPOINTS) and all('connection refused' in o['error'] for o in row)
               for row in matrix.values())
    assert facts['mtls_probes']['identities']['non_registry'] == host.agent_id


def test_only_the_facts_of_the_selected_checks_are_gathered(host):
    gatherer = host.gatherer()
    facts = gatherer.gather(cl.facts_needed(['x509pop_cert_expiry', 'env_file_permissions']))
    assert sorted(facts) == sorted(observe.BASE_FACTS + ('x509pop_cert',))
    assert host.calls == []  # no docker logs, no docker exec, no image registry
    assert [r['status'] for r in cl.run(facts, ['x509pop_cert_expiry', 'env_file_permissions'])] == ['pass', 'pass']


def test_refresh_reads_the_facts_again(host, pki):
    gatherer = host.gatherer()
    first = gatherer.gather(['svid_files'])['svid_files']
    key = pki.make_key()
    new = pki.make_cert(key, None, issuer=(pki.intermediate, pki.int_key), uris=[pki.registry_id])
    host.write_certs(new, key, written=host.now)
    again = gatherer.refresh(['svid_files'])
    assert list(again) == ['svid_files']
    assert again['svid_files']['svid_pem'] != first['svid_pem'] == pki.cert_pem(pki.leaf, pki.intermediate).decode()
    assert again['svid_files']['written_at'] == '2026-06-04T12:00:00.000000Z'
    with pytest.raises(observe.ObserveError, match='Unknown fact'):
        gatherer.refresh(['bogus'])


def test_text_read_from_the_stack_is_scrubbed_before_it_leaves(host):
    secret = host.secrets['POSTGRES_PASSWORD']
    host.logs['registry'].append(host.registry_line(host.now - lab.SEC, 'connect failed for postgres://registry:%s@db'
                                                    % secret))
    gatherer = host.gatherer()
    facts = gatherer.gather(['registry_log'])
    assert secret in json.dumps(facts)  # as read; the module scrubs what it returns
    assert secret not in json.dumps(cl.scrub(facts, gatherer.read_env()))


def test_an_env_file_that_cannot_be_parsed_stops_the_observation(host):
    with open(host.env_path, 'a') as handle:
        handle.write('NOT A SETTING\n')
    with pytest.raises(observe.ObserveError, match='env file'):
        host.gatherer().gather([])


def test_without_containers_and_files_every_fact_says_so(tmp_path, pki):
    params = lab.params(str(tmp_path / 'none'), federation_host='127.0.0.1', federation_port=closed_port())

    class Empty(lab.Client):
        def _volume(self, name):
            raise lab.docker.errors.NotFound('no such volume')

    host = type('Nothing', (), dict(inspect={}, logs={}, calls=[], registry_digests={}))()
    facts = observe.Gatherer(Empty(host), params, now=pki.now).gather()
    assert all(not c['exists'] for c in facts['containers'].values())
    assert facts['env']['stat'] == dict(exists=False) and facts['env']['credentials']['POSTGRES_PASSWORD']['set'] is False
    assert facts['agent_healthcheck'] == dict(exit_code=None, output='container not running')
    assert facts['agent_svid'] is None and facts['agent_log'] == [] and facts['x509pop_cert'] is None
    assert facts['svid_files'] == dict(certs_dir=None, svid_pem=None, bundle_pem=None, written_at=None,
                                       key=dict(present=False, matches_svid=None, error=None))
    assert facts['live_auth'] == {} and facts['images'] == {}
    assert facts['redis_passwords'] == dict(count=None, reason='no REDIS_PASSWORD in .env.operator')
    assert facts['mtls_probes']['unavailable']['non_registry'] == 'the SPIRE agent data directory was not found'
    results = dict((r['id'], r['status']) for r in cl.run(facts))
    assert results['env_file_permissions'] == results['svid_valid'] == results['spire_agent_healthy'] == 'fail'


# --------------------------------------------------------------------------- facts from data

def test_container_facts_from_inspect_data_keep_only_public_settings():
    # docker inspect of a lab container (tests/unit/plugins/module_utils/test_incident.py), with secrets in Env.
    attrs = {'Id': '0a97ca558889f1929671ffd1e91eb4cf', 'Name': '/registry5-registry', 'RestartCount': 2,
             'Image': 'sha256:bea7', 'Config': {'Image': 'lab/registry:lab', 'Env': [
                 'POSTGRES_PASSWORD=Zq8v3nX_kP2mW9tR4yL6bC1dF5gH7jK0', 'MINTING_AUTHORITY=disabled']},
             'State': {'Status': 'restarting', 'Running': True, 'Restarting': True, 'ExitCode': 137,
                       'StartedAt': '2026-11-25T20:52:05.681Z', 'FinishedAt': '2026-11-25T20:55:42.123456789Z',
                       'Health': {'Status': 'unhealthy'}}}
    facts = observe.container_facts(attrs, 'registry5-registry')
    assert facts['running'] is False and facts['restarting'] is True and facts['exit_code'] == 137
    assert facts['env'] == dict(MINTING_AUTHORITY='disabled', EVENTSTORE_MTLS_REQUIRED=None)
    assert facts['started_at'] == '2026-11-25T20:52:05.681Z' and facts['health'] == 'unhealthy'
    assert 'Zq8v3nX' not in json.dumps(facts)
    assert observe.container_facts(None, 'registry5-db') == dict(exists=False, name='registry5-db')


def test_env_facts_name_keys_and_reasons_never_values():
    pg, key = _secrets.generate_secret(), _secrets.generate_secret()
    env = _envfile.EnvFile.parse('OPERATOR_NAME=acme\nPOSTGRES_PASSWORD=%s\nREDIS_PASSWORD=redis\n'
                                 'INTERNAL_API_KEY=%s\nCUSTOM_SETTING=%s\n' % (pg, key, pg))
    facts = observe.env_facts(env, '/opt/theprotocol/r1/.env.operator', dict(exists=True))
    assert facts['settings'] == dict(OPERATOR_NAME='acme')
    assert facts['secret_keys'] == ['POSTGRES_PASSWORD', 'REDIS_PASSWORD', 'INTERNAL_API_KEY', 'CUSTOM_SETTING']
    assert facts['credentials']['REDIS_PASSWORD'] == dict(set=True, weakness='is a well-known default value')
    assert facts['credentials']['POSTGRES_PASSWORD'] == dict(set=True, weakness=None)
    assert facts['reused'] == []
    text = json.dumps(facts)
    assert pg not in text and key not in text
    reused = observe.env_facts(_envfile.EnvFile.parse('POSTGRES_PASSWORD=%s\nINTERNAL_API_KEY=%s\n' % (pg, pg)),
                               '/x', {})
    assert reused['reused'] == [['POSTGRES_PASSWORD', 'INTERNAL_API_KEY']]
    assert reused['credentials']['REDIS_PASSWORD'] == dict(set=False, weakness=None)


def test_svid_key_facts(pki):
    svid = pki.cert_pem(pki.leaf, pki.intermediate)
    assert observe.svid_key_facts(svid, pki.key_pem(pki.leaf_key)) == dict(present=True, matches_svid=True, error=None)
    assert observe.svid_key_facts(svid, pki.key_pem(pki.mismatched_key))['matches_svid'] is False
    assert observe.svid_key_facts(svid, None) == dict(present=False, matches_svid=None, error=None)
    broken = observe.svid_key_facts(svid, b'-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n')
    assert broken['error'].startswith('The SVID key file svid_key.pem cannot be parsed') and 'AAAA' not in broken['error']


def test_agent_svid_from_agent_data_json(pki):
    pem = pki.cert_pem(pki.leaf)
    data = json.dumps({'svid': [base64.b64encode(pem).decode()], 'reattestable': True}).encode()
    assert observe.agent_svid_pem(data) == pem
    assert observe.agent_svid_pem(b'not json') is None


def test_probe_outcomes_carry_the_served_certificate_as_pem(pki):
    out = lab.health_probe(200, pki.leaf)
    assert 'peer_der' not in out and out['status'] == 200
    assert out['served_certificate_pem'] == pki.cert_pem(pki.leaf).decode()


def test_the_journal_fact_keeps_no_fingerprint(host):
    from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation_journal as J
    doc = J.begin(J.load(host.env_path), ['REDIS_PASSWORD'], {'REDIS_PASSWORD': 'a' * 12},
                  {'REDIS_PASSWORD': 'b' * 12}, host.env_path + '.bak', now=host.now)
    J.write(host.env_path, doc)
    journal = host.gatherer().gather(['journal'])['journal']
    assert journal['rotation']['state'] == 'in_progress' and 'fingerprints' not in journal['rotation']
    assert 'a' * 12 not in json.dumps(journal)
    os.chmod(host.env_path + '.rotation.json', 0o600)
    with open(host.env_path + '.rotation.json', 'w') as handle:
        handle.write('{"version": 7}')
    journal = host.gatherer().gather(['journal'])['journal']
    assert journal['error'] and journal['rotation'] is None and journal['secret_ages']
