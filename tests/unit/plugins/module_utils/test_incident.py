# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_incident: log parsing, redaction and classification on log lines captured from the lab
(SPIRE agent v1.13.3, the lab cert-writer, nginx-federation, the lab registry) and real certificates."""

from __future__ import annotations

import copy
import datetime

import pytest

from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist as cl
from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
from ansible_collections.theprotocol.operator.plugins.module_utils import _incident as inc
from ansible_collections.theprotocol.operator.plugins.module_utils import _stack
from ansible_collections.theprotocol.operator.plugins.module_utils import _x509

UTC = datetime.timezone.utc

# Captured with `docker logs -t` on lab-host5 (registry5), faults made as in the integration test.
AGENT_HEALTHY = ''.join((
    '2026-11-25T20:52:05.755667965Z time="2026-11-25T20:52:05Z" level=info msg="SVID is not found. St'
    'arting node attestation" subsystem_name=attestor trust_domain_id="spiffe://example.com"\n',
    '2026-11-25T20:52:05.755667965Z time="2026-11-25T20:52:05Z" level=info msg="Node attestation was '
    'successful" reattestable=true spiffe_id="spiffe://example.com/spire/agent/x509pop/7f72053b8f8a7e'
    'b8ca316e1304b4a9fcaacdeead" subsystem_name=attestor trust_domain_id="spiffe://example.com"\n',
    '2026-11-25T20:52:05.768000000Z time="2026-11-25T20:52:05Z" level=info msg="Starting Workload and'
    ' SDS APIs" address=/tmp/spire-agent/public/api.sock network=unix subsystem_name=endpoints\n',
    '2026-11-25T20:53:06.517000000Z time="2026-11-25T20:53:06Z" level=info msg="Renewing X509-SVID" e'
    'ntry_id=bbc38164-02ae-4b7a-9cd3-284abb6c661d expires_at="2026-11-25T20:54:10Z" spiffe_id="spiffe'
    '://example.com/service/registry-operator5" subsystem_name=manager\n',
))

AGENT_BANNED = AGENT_HEALTHY + ''.join((
    '2026-11-25T20:53:55.839000000Z time="2026-11-25T20:53:55Z" level=error msg="Failed to fetch auth'
    'orized entries" error="rpc error: code = PermissionDenied desc = authorization denied for method'
    ' /spire.api.server.entry.v1.Entry/SyncAuthorizedEntries" subsystem_name=manager\n',
    '2026-11-25T20:53:55.839605918Z time="2026-11-25T20:53:55Z" level=warning msg="Agent is banned: r'
    'emoving SVID and shutting down" error="failed to fetch authorized entries: rpc error: code = Per'
    'missionDenied desc = authorization denied for method /spire.api.server.entry.v1.Entry/SyncAuthor'
    'izedEntries" subsystem_name=manager\n',
    '2026-11-25T20:53:56.100000000Z time="2026-11-25T20:53:56Z" level=info msg="SVID is not found. St'
    'arting node attestation" subsystem_name=attestor trust_domain_id="spiffe://example.com"\n',
    '2026-11-25T20:53:56.200000000Z time="2026-11-25T20:53:56Z" level=error msg="Agent crashed" error'
    '="failed to receive attestation response: rpc error: code = PermissionDenied desc = failed to at'
    'test: agent is banned"\n',
))

AGENT_EXPIRED = ''.join((
    '2026-11-25T20:57:59.100000000Z time="2026-11-25T20:57:59Z" level=info msg="SVID is not found. St'
    'arting node attestation" subsystem_name=attestor trust_domain_id="spiffe://example.com"\n',
    '2026-11-25T20:57:59.200000000Z time="2026-11-25T20:57:59Z" level=error msg="Agent crashed" error'
    '="failed to receive attestation response: rpc error: code = PermissionDenied desc = nodeattestor'
    '(x509pop): certificate verification failed: x509: certificate has expired or is not yet valid: c'
    'urrent time 2026-11-25T20:57:59Z is after 2026-11-25T19:57:52Z"\n',
))

AGENT_UNREACHABLE = ''.join((
    '2026-11-25T21:10:00.000000000Z time="2026-11-25T21:10:00Z" level=error msg="Agent crashed" error'
    '="failed to receive attestation response: rpc error: code = Unavailable desc = connection error:'
    ' desc = \\"transport: Error while dialing: dial tcp 172.31.250.10:8081: connect: connection refus'
    'ed\\""\n',
))

CERT_WRITER = ''.join((
    '2026-11-25T20:53:31.697000000Z 2026-11-25T20:53:31Z cert-writer: fetched SVID spiffe_id=spiffe:/'
    '/example.com/service/registry-operator5 serial=59f9c3d303a7d8230e6c2c7bd22f166 not_after=2026-11'
    '-25T20:55:06Z bundle_cas=1 dir=/certs\n',
    '2026-11-25T20:54:11.739362680Z 2026-11-25T20:54:11Z cert-writer: fetch failed: unix:///tmp/spire'
    '-agent/public/api.sock: rpc error: code = Unavailable desc = connection error: desc = "transport'
    ': Error while dialing: dial unix /tmp/spire-agent/public/api.sock: connect: no such file or dire'
    'ctory"\n',
))

CERT_WRITER_NO_IDENTITY = CERT_WRITER + ''.join((
    '2026-11-25T20:54:26.000000000Z 2026-11-25T20:54:26Z cert-writer: fetch failed: rpc error: code ='
    ' PermissionDenied desc = no identity issued\n',
))

REGISTRY = ''.join((
    '2026-11-25T20:55:23.340000000Z 2026-11-25T20:55:23.340Z eventstore write event=TokensTransferred'
    ' status=201 created\n',
    '2026-11-25T20:55:33.374237669Z 2026-11-25T20:55:33.374Z eventstore write event=TokensTransferred'
    ' status=403 forbidden\n',
    '2026-11-25T20:55:43.405190324Z 2026-11-25T20:55:43.404Z eventstore write event=TokensTransferred'
    ' status=403 forbidden\n',
    '2026-11-25T20:55:44.000000000Z 2026-11-25T20:55:44.000Z GET /api/v1/federation/agent-cards 401 U'
    'nauthorized (no client certificate)\n',
))
NOW = datetime.datetime(2026, 11, 25, 20, 53, 40, tzinfo=UTC)


def lines(text, secrets=()):
    return inc.split_log(text.encode(), inc.Redactor(secrets))


def healthy_evidence(pki, now=NOW):
    svid = inc.svid_state(pki.cert_pem(pki.leaf), pki.registry_id, now - datetime.timedelta(seconds=10), 15, now)
    return {
        'containers': {s: {'exists': True, 'status': 'running', 'running': True, 'health': 'healthy'}
                       for s in _stack.SERVICES},
        'agent_healthcheck': {'rc': 0, 'output': 'Agent is healthy.'},
        'agent_signal': inc.agent_signal(lines(AGENT_HEALTHY)),
        'cert_writer': inc.cert_writer_state(lines(CERT_WRITER.splitlines(True)[0])),
        'svid': svid,
        'served': {'reachable': True, 'sha256_fingerprint': svid['sha256_fingerprint'], 'matches_svid': True},
        'x509pop': {'present': True, 'expired': False, 'not_after': '2027-02-23T20:49:07Z'},
        'server_reachable': True,
        'server_endpoint': '172.31.250.10:8081',
    }


# --------------------------------------------------------------------------- logs

def test_split_log_keeps_docker_timestamps_in_utc():
    out = lines(CERT_WRITER)
    assert out[0]['ts'] == '2026-11-25T20:53:31.697Z'
    assert out[0]['line'].startswith('2026-11-25T20:53:31Z cert-writer: fetched SVID')
    expected = datetime.datetime(2026, 11, 25, 20, 53, 31, 500000, tzinfo=UTC)
    assert inc.parse_timestamp('2026-11-25T21:53:31.5+01:00') == expected
    assert inc.parse_timestamp('0001-01-01T00:00:00Z') is None
    assert inc.split_log(b'no timestamp here\n') == [{'ts': None, 'line': 'no timestamp here'}]


def test_auth_failures_are_the_guides_grep_and_tail():
    found = inc.auth_failures(lines(REGISTRY), limit=2)
    assert [f['ts'] for f in found] == ['2026-11-25T20:55:43.405Z', '2026-11-25T20:55:44.000Z']
    assert len(inc.auth_failures(lines(REGISTRY), limit=20)) == 3
    assert inc.auth_failures(lines(REGISTRY), limit=0) == []


@pytest.mark.parametrize('text, signal', [
    (AGENT_HEALTHY, 'ok'),
    (AGENT_BANNED, 'banned'),
    (AGENT_EXPIRED, 'x509pop_expired'),
    (AGENT_UNREACHABLE, 'unreachable'),
    (AGENT_BANNED + AGENT_HEALTHY, 'ok'),  # re-attested after an evict: the latest word counts
])
def test_agent_signal_is_the_latest_telling_line(text, signal):
    assert inc.agent_signal(lines(text))['signal'] == signal


def test_cert_writer_state():
    state = inc.cert_writer_state(lines(CERT_WRITER))
    assert state['last_fetch_at'] == '2026-11-25T20:53:31.697Z'
    assert state['failures_since_last_fetch'] == 1 and not state['no_identity']
    assert inc.cert_writer_state(lines(CERT_WRITER_NO_IDENTITY))['no_identity']


# --------------------------------------------------------------------------- redaction

ENV = b'''# Managed by Ansible
OPERATOR_NAME=operator5
REGISTRY_DID=did:web:registry5.lab.example.com
POSTGRES_PASSWORD=Zq8v3nX_kP2mW9tR4yL6bC1dF5gH7jK0
REDIS_PASSWORD="sEcr3t-redis-value-0123456789abcdef"
INTERNAL_API_KEY=iak_0123456789abcdefghijklmnopqrstuv
CUSTOM_THING=also-secret-by-default
'''


def test_secret_values_are_all_but_the_public_settings():
    values = inc.secret_values(_envfile.EnvFile.from_bytes(ENV))
    assert sorted(values) == sorted(['Zq8v3nX_kP2mW9tR4yL6bC1dF5gH7jK0', 'sEcr3t-redis-value-0123456789abcdef',
                                     'iak_0123456789abcdefghijklmnopqrstuv', 'also-secret-by-default'])


def test_redactor_removes_env_values_env_lines_headers_urls_and_keys():
    secrets = inc.secret_values(_envfile.EnvFile.from_bytes(ENV))
    red = inc.Redactor(secrets)
    text = ('connect failed password Zq8v3nX_kP2mW9tR4yL6bC1dF5gH7jK0 for user registry\n'
            'REDIS_PASSWORD=whatever-else\n'
            'X-Internal-Key: iak_0123456789abcdefghijklmnopqrstuv\n'
            'Authorization: Bearer abc.def\n'
            'url=postgres://registry:hunter2hunter2@db:5432/registry api_key="k-1" token=t0k3n\n'
            '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----\n'
            'CN=operator-operator5 stays\n')
    out = red.text(text)
    assert red.leaks(out) == 0
    for gone in ('whatever-else', 'Bearer abc.def', 'hunter2hunter2', 'k-1', 't0k3n', 'MIGHAgEAMBMG'):
        assert gone not in out
    assert 'REDIS_PASSWORD=<redacted>' in out and 'CN=operator-operator5 stays' in out
    assert 'for user registry' in out
    data = red.data({'a': ['x Zq8v3nX_kP2mW9tR4yL6bC1dF5gH7jK0 y'], 'subject': 'CN=operator-x'})
    assert data == {'a': ['x <redacted> y'], 'subject': 'CN=operator-x'}


def test_short_secrets_are_not_substituted_inside_text():
    assert inc.Redactor(['abc']).text('abcdef') == 'abcdef'


def test_split_log_redacts_each_line():
    out = lines('2026-11-25T20:00:00Z password is Zq8v3nX_kP2mW9tR4yL6bC1dF5gH7jK0\n',
                ['Zq8v3nX_kP2mW9tR4yL6bC1dF5gH7jK0'])
    assert out == [{'ts': '2026-11-25T20:00:00.000Z', 'line': 'password is <redacted>'}]


# --------------------------------------------------------------------------- containers / certificates

def test_container_facts_from_inspect_data_never_include_the_environment():
    attrs = {'Id': '0a97ca558889f1929671ffd1e91eb4cf', 'Name': '/registry5-spire-agent', 'RestartCount': 2,
             'Image': 'sha256:bea7', 'Config': {'Image': 'lab/spire-agent:lab', 'Env': ['POSTGRES_PASSWORD=x']},
             'State': {'Status': 'exited', 'Running': False, 'ExitCode': 137, 'StartedAt': '2026-11-25T20:52:05.681Z',
                       'FinishedAt': '2026-11-25T20:55:42.123456789Z', 'Health': {'Status': 'unhealthy'}}}
    facts = inc.container_facts(attrs, {'RepoDigests': ['lab/spire-agent@sha256:8b28']})
    assert facts['status'] == 'exited' and facts['exit_code'] == 137 and facts['health'] == 'unhealthy'
    assert facts['finished_at'] == '2026-11-25T20:55:42.123Z'
    assert facts['image_digests'] == ['lab/spire-agent@sha256:8b28']
    assert 'POSTGRES_PASSWORD' not in repr(facts)
    assert not inc.container_ok(facts)
    assert inc.container_facts(None)['status'] == 'missing'


def test_svid_state(pki):
    fresh = inc.svid_state(pki.cert_pem(pki.leaf, pki.intermediate), pki.registry_id,
                           pki.now - datetime.timedelta(seconds=20), 15, pki.now)
    assert fresh['present'] and not fresh['stale'] and fresh['spiffe_id_matches']
    assert fresh['sha256_fingerprint'] == _x509.sha256_fingerprint(pki.leaf)
    old = inc.svid_state(pki.cert_pem(pki.leaf), pki.registry_id, pki.now - datetime.timedelta(seconds=300), 15,
                         pki.now)
    assert old['stale'] and old['age_seconds'] == 300
    expired = inc.svid_state(pki.cert_pem(pki.expired_leaf), pki.registry_id, pki.now, 15, pki.now)
    assert expired['expired'] and expired['stale']
    other = inc.svid_state(pki.cert_pem(pki.wrong_td_leaf), pki.registry_id, pki.now, 15, pki.now)
    assert other['spiffe_id_matches'] is False
    assert inc.svid_state(None, pki.registry_id, None, 15, pki.now)['error']
    assert 'no PEM certificate' in inc.svid_state(b'junk', pki.registry_id, None, 15, pki.now)['error']


def test_served_state(pki):
    svid = inc.svid_state(pki.cert_pem(pki.leaf), pki.registry_id, pki.now, 15, pki.now)
    from cryptography.hazmat.primitives import serialization
    assert inc.served_state(pki.leaf.public_bytes(serialization.Encoding.DER), svid)['matches_svid'] is True
    assert inc.served_state(pki.expired_leaf.public_bytes(serialization.Encoding.DER), svid)['matches_svid'] is False
    assert inc.served_state(None, svid, 'connection refused')['reachable'] is False


# --------------------------------------------------------------------------- classification

def test_healthy(pki):
    result = inc.classify(healthy_evidence(pki, pki.now))
    assert result['category'] == 'healthy' and result['actions'] == [] and not result['restart']


def test_agent_killed_restarts_agent_then_cert_writer(pki):
    ev = healthy_evidence(pki, pki.now)
    ev['containers']['spire-agent'].update(status='exited', running=False, health='unhealthy', exit_code=137)
    ev['agent_healthcheck'] = None
    result = inc.classify(ev)
    assert result['category'] == 'local_fault' and result['faults'] == ['spire_agent']
    assert result['actions'] == ['restart spire-agent', 'wait from the agent restart', 'restart cert-writer', 'verify']


def test_healthy_agent_without_identity_is_an_agent_fault(pki):
    ev = healthy_evidence(pki, pki.now)
    ev['svid'] = inc.svid_state(pki.cert_pem(pki.leaf), pki.registry_id, pki.now - datetime.timedelta(minutes=10),
                                15, pki.now)
    ev['cert_writer'] = inc.cert_writer_state(lines(CERT_WRITER_NO_IDENTITY))
    result = inc.classify(ev)
    assert result['faults'] == ['spire_agent']


def test_cert_writer_stopped_restarts_only_cert_writer(pki):
    ev = healthy_evidence(pki, pki.now)
    ev['containers']['cert-writer'].update(status='exited', running=False, health='unhealthy')
    result = inc.classify(ev)
    assert result['faults'] == ['cert_writer'] and result['actions'] == ['restart cert-writer', 'verify']


def test_nginx_serving_an_old_certificate_restarts_only_nginx(pki):
    ev = healthy_evidence(pki, pki.now)
    ev['served'] = {'reachable': True, 'sha256_fingerprint': 'old', 'matches_svid': False}
    result = inc.classify(ev)
    assert result['faults'] == ['nginx_federation'] and result['actions'] == ['restart nginx-federation', 'verify']


def test_banned_agent_is_revoked_and_never_restarted(pki):
    ev = healthy_evidence(pki, pki.now)
    ev['containers']['spire-agent'].update(status='restarting', running=True, restarting=True, health='unhealthy')
    ev['agent_signal'] = inc.agent_signal(lines(AGENT_BANNED))
    ev['agent_healthcheck'] = None
    result = inc.classify(ev)
    assert result['category'] == 'revoked' and result['escalate'] and not result['restart']
    assert result['actions'] == ['escalate'] and 'agent is banned' in result['reasons'][0]
    assert 'parent frame' in result['guide']


def test_expired_x509pop_is_not_revoked(pki):
    ev = healthy_evidence(pki, pki.now)
    ev['containers']['spire-agent'].update(status='restarting', restarting=True, health='unhealthy')
    ev['agent_signal'] = inc.agent_signal(lines(AGENT_EXPIRED))
    ev['x509pop'] = _x509.x509pop_verdict(pki.cert_pem(pki.expired_leaf), 'example.com', pki.now)
    result = inc.classify(ev)
    assert result['category'] == 'x509pop_expired' and result['escalate'] and not result['restart']
    # From the file alone too (the agent still runs on its cached SVID).
    ev2 = healthy_evidence(pki, pki.now)
    ev2['x509pop'] = copy.deepcopy(ev['x509pop'])
    assert inc.classify(ev2)['category'] == 'x509pop_expired'


def test_server_unreachable(pki):
    ev = healthy_evidence(pki, pki.now)
    ev['containers']['spire-agent'].update(status='restarting', restarting=True, health='unhealthy')
    ev['agent_signal'] = inc.agent_signal(lines(AGENT_UNREACHABLE))
    ev['server_reachable'] = False
    result = inc.classify(ev)
    assert result['category'] == 'server_unreachable' and not result['restart']
    # A healthy agent with a fresh SVID is not an incident even if the server is briefly away.
    ev2 = healthy_evidence(pki, pki.now)
    ev2['agent_signal'] = ev['agent_signal']
    assert inc.classify(ev2)['category'] == 'healthy'


def test_cert_writer_starting_is_fine_once_it_wrote_a_fresh_set(pki):
    ev = healthy_evidence(pki, pki.now)
    ev['containers']['cert-writer'].update(health='starting', started_at=inc.isoformat(pki.now - datetime.timedelta(
        seconds=5)))
    ev['svid']['written_at'] = inc.isoformat(pki.now - datetime.timedelta(seconds=2))
    assert inc.classify(ev)['category'] == 'healthy'
    ev['svid']['written_at'] = inc.isoformat(pki.now - datetime.timedelta(seconds=9))
    assert inc.classify(ev)['faults'] == ['cert_writer']


def test_agent_healthcheck_answer_beats_dockers_lagging_health(pki):
    ev = healthy_evidence(pki, pki.now)
    ev['containers']['spire-agent']['health'] = 'starting'
    assert inc.classify(ev)['category'] == 'healthy'
    ev['agent_healthcheck'] = {'rc': 1, 'output': 'Agent is unhealthy: unable to determine health'}
    assert inc.classify(ev)['faults'] == ['spire_agent']


def test_agent_healthcheck_whose_output_docker_lost_is_judged_by_its_exit_status(pki):
    ev = healthy_evidence(pki, pki.now)
    ev['agent_healthcheck'] = {'rc': 0, 'output': ''}
    assert inc.classify(ev)['category'] == 'healthy'
    ev['agent_healthcheck'] = {'rc': 1, 'output': ''}
    verdict = inc.classify(ev)
    assert verdict['faults'] == ['spire_agent'] and 'spire-agent healthcheck exited 1: no output' in verdict['reasons']


# --------------------------------------------------------------------------- recovery plan (data) and verdict

def agent_killed(pki):
    """The lab's case: spire-agent killed (docker kill: exit 137), the rest of the stack fine."""
    ev = healthy_evidence(pki, pki.now)
    ev['containers']['spire-agent'].update(status='exited', running=False, health='unhealthy', exit_code=137)
    ev['agent_healthcheck'] = None
    return ev


def test_agent_fault_plan_is_the_guides_steps_with_the_checks_that_prove_them(pki):
    result = inc.classify(agent_killed(pki))
    proof = ['spire_agent_healthy', 'cert_writer_running', 'svid_valid', 'served_svid_current', 'eventstore_writes_ok']
    assert result['recovery'] == {'checks': proof, 'steps': [
        {'action': 'restart', 'service': 'spire-agent', 'wait': 0, 'checks': ['spire_agent_healthy'],
         'text': 'restart spire-agent'},
        {'action': 'wait', 'service': 'spire-agent', 'wait': 60, 'checks': [], 'text': 'wait from the agent restart'},
        {'action': 'restart', 'service': 'cert-writer', 'wait': 0,
         'checks': ['cert_writer_running', 'svid_valid', 'served_svid_current', 'eventstore_writes_ok'],
         'text': 'restart cert-writer'},
        {'action': 'verify', 'service': None, 'wait': 0, 'checks': proof, 'text': 'verify'},
    ]}
    # What the operator is shown is the plan that runs.
    assert result['actions'] == [step['text'] for step in result['recovery']['steps']]
    assert ', '.join(result['actions']) in result['summary']
    # The wait is the caller's (the role's incident_response_restart_wait), only on the wait step.
    steps = inc.classify(agent_killed(pki), restart_wait=90)['recovery']['steps']
    assert [step['wait'] for step in steps] == [0, 90, 0, 0]


@pytest.mark.parametrize('faults, services', [
    (['cert_writer'], ['cert-writer']),
    (['nginx_federation'], ['nginx-federation']),
    (['spire_agent', 'cert_writer'], ['spire-agent', 'spire-agent', 'cert-writer']),  # cert-writer restarted once
    (['nginx_federation', 'spire_agent'], ['spire-agent', 'spire-agent', 'cert-writer', 'nginx-federation']),
])
def test_plan_orders_the_steps_of_several_faults_and_runs_a_shared_step_once(faults, services):
    plan = inc.recovery_plan(faults)
    assert [step['service'] for step in plan['steps'][:-1]] == services
    assert plan['steps'][-1]['action'] == 'verify' and plan['steps'][-1]['checks'] == plan['checks']
    assert len(plan['checks']) == len(set(plan['checks']))


def test_plan_of_the_classification_of_real_faults(pki):
    ev = healthy_evidence(pki, pki.now)
    ev['containers']['cert-writer'].update(status='exited', running=False, health='unhealthy')
    assert inc.classify(ev)['recovery']['checks'] == ['cert_writer_running', 'svid_valid', 'served_svid_current',
                                                      'eventstore_writes_ok']
    ev = healthy_evidence(pki, pki.now)
    ev['served'] = {'reachable': True, 'sha256_fingerprint': 'old', 'matches_svid': False}
    assert inc.classify(ev)['recovery']['checks'] == ['nginx_federation_accepting', 'served_svid_current', 'mtls_enforced']


def test_no_plan_without_a_local_fault(pki):
    assert inc.classify(healthy_evidence(pki, pki.now))['recovery'] == {'steps': [], 'checks': []}
    ev = healthy_evidence(pki, pki.now)
    ev['containers']['spire-agent'].update(status='restarting', running=True, restarting=True, health='unhealthy')
    ev['agent_signal'] = inc.agent_signal(lines(AGENT_BANNED))
    ev['agent_healthcheck'] = None
    result = inc.classify(ev)
    assert result['recovery'] == {'steps': [], 'checks': []} and result['actions'] == ['escalate']


def test_the_step_table_names_only_checks_of_the_checklist():
    named = [c for steps in inc.RECOVERY_STEPS.values() for step in steps for c in step[3]]
    assert set(named) | set(inc.REPORTED_CHECKS) <= set(cl.CHECKS)
    assert set(inc.RECOVERY_STEPS) == set(inc.FAULTS)
    assert not set(named) & set(inc.REPORTED_CHECKS)


def checklist_after(*judged):
    """What security_checklist returns after the restarts: the real judgements given, every other check passing."""
    by_id = dict((r['id'], r) for r in judged)
    results = [by_id.get(c) or cl.result(c, cl.PASS, 'passed on the lab') for c in cl.CHECK_IDS]
    cl.apply_dependencies(results)
    return dict(results=results, summary=cl.summarize(results))


def newer_image_in_the_registry():
    image = dict(ref='lab-registry:5000/registry:lab', running_digests=['sha256:' + 'a' * 64],
                 registry_digest='sha256:' + 'b' * 64)
    return cl.check_images_up_to_date(dict(registry=image))


def env_file_mode(tmp_path, mode):
    env = tmp_path / '.env.operator'
    env.write_bytes(ENV)
    env.chmod(mode)
    info = env.stat()
    return cl.check_env_file_permissions(str(env), dict(exists=True, is_file=True, is_symlink=False, mode=info.st_mode,
                                                        uid=0, gid=0))


def test_a_newer_image_is_reported_not_escalated(pki):
    """Issue 14, on the lab: the only failing check was images_up_to_date, the agent was killed; the agent and
    cert-writer came back, and the run retried until 248 s and escalated. Now: recovered, reported."""
    plan = inc.classify(agent_killed(pki))['recovery']
    after = checklist_after(newer_image_in_the_registry())
    assert after['summary']['failed'] == ['images_up_to_date']
    verdict = inc.recovery_verdict(plan, after, inc.classify(healthy_evidence(pki, pki.now)))
    assert verdict['recovered'] and not verdict['escalate'] and verdict['reason'] == ''
    assert verdict['reported'] == ['images_up_to_date'] and verdict['findings'] == [] and verdict['unproven'] == []
    assert verdict['not_caused'] == ('not caused by this incident, not fixed by a restart (reported, not escalated): '
                                     'images_up_to_date')
    assert verdict['summary'] == ('recovered: spire_agent_healthy, cert_writer_running, svid_valid, served_svid_current, '
                                  'eventstore_writes_ok pass; ' + verdict['not_caused'])


def test_a_world_readable_env_file_is_escalated_after_the_recovery(pki, tmp_path):
    plan = inc.recovery_plan(['cert_writer'])
    verdict = inc.recovery_verdict(plan, checklist_after(env_file_mode(tmp_path, 0o644), newer_image_in_the_registry()))
    assert verdict['recovered'] and verdict['escalate']
    assert verdict['findings'] == ['env_file_permissions'] and verdict['reported'] == ['images_up_to_date']
    assert verdict['reason'] == 'recovered, but failing checks that restarts cannot fix: env_file_permissions'
    assert not inc.recovery_verdict(plan, checklist_after(env_file_mode(tmp_path, 0o600)))['escalate']


def test_a_failing_proof_is_not_a_recovery(pki):
    plan = inc.recovery_plan(['cert_writer'])
    stopped = cl.check_cert_writer_running(dict(exists=True, running=False, status='exited'), [], None, 15, pki.now)
    verdict = inc.recovery_verdict(plan, checklist_after(stopped, newer_image_in_the_registry()))
    assert not verdict['recovered'] and verdict['escalate']
    assert verdict['unproven'] == ['cert_writer_running (fail)'] and verdict['reason'] == 'not recovered after the restarts'
    assert verdict['reported'] == ['images_up_to_date']
    # A proof skipped because its prerequisite failed proves nothing, whether or not the plan names the prerequisite.
    refused = cl.check_nginx_federation_accepting(dict(exists=True, running=True, status='running'),
                                                  dict(error='connection refused'), 8443)
    verdict = inc.recovery_verdict(plan, checklist_after(refused))
    assert verdict['unproven'] == ['served_svid_current (skip)'] and verdict['escalate']


def test_a_warning_proves_and_a_missing_checklist_does_not(pki):
    plan = inc.recovery_plan(['nginx_federation'])
    warned = cl.result('served_svid_current', cl.WARN, 'serves the SVID, which expires soon')
    assert inc.recovery_verdict(plan, checklist_after(warned))['recovered']
    skipped = {'changed': False, 'skipped': True, 'skip_reason': 'Conditional result was False'}
    verdict = inc.recovery_verdict(plan, skipped, {'category': 'local_fault'})
    assert not verdict['recovered'] and verdict['escalate']
    assert verdict['summary'] == 'not recovered: the evidence after the restarts is local_fault, not healthy'
    failed = {'failed': True, 'msg': 'Docker is not reachable'}
    assert inc.recovery_verdict(plan, failed, {'category': 'healthy'})['summary'] == (
        'not recovered: the security checklist did not run after the restarts')
    assert inc.recovery_verdict(plan, checklist_after(), {})['summary'] == (
        'not recovered: the evidence after the restarts is not collected, not healthy')
