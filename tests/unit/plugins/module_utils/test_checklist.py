# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The checklist's judgements on real data: certificates made with cryptography, env files parsed
by _envfile, log lines as the lab's cert-writer, registry and SPIRE agent write them."""

from __future__ import annotations

import datetime
import json

import pytest

from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist as cl
from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile, _logs, _secrets, _x509

SEC = datetime.timedelta(seconds=1)
RUNNING = dict(exists=True, running=True, status='running')
STOPPED = dict(exists=True, running=False, status='exited')

# Real lines (lab, 2026-11-25), shifted onto the test clock by _at().
CW_LINES = (
    "2026-06-04T11:59:30.100000000Z 2026-06-04T11:59:30Z cert-writer: fetched SVID "
    "spiffe_id=spiffe://example.com/service/registry-acme serial=44f3e592ae81b63c14a2b15f666f70f2 "
    "not_after=2026-06-04T12:01:17Z bundle_cas=1 dir=/certs\n"
    "2026-06-04T11:59:45.100000000Z 2026-06-04T11:59:45Z cert-writer: fetched SVID "
    "spiffe_id=spiffe://example.com/service/registry-acme serial=c90c631c07f9ccd79d725ddbbc409c "
    "not_after=2026-06-04T12:02:12Z bundle_cas=1 dir=/certs\n"
)
CW_NO_IDENTITY = ("2026-06-04T11:59:59.500000000Z 2026-06-04T11:59:59Z cert-writer: fetch failed: "
                  "unix:///tmp/spire-agent/public/api.sock: rpc error: code = PermissionDenied desc = no identity issued\n")
REGISTRY_OK = """\
2026-06-04T11:59:25.509Z eventstore write event=TokensTransferred status=201
2026-06-04T11:59:31.487Z 127.0.0.1 "GET /health" 200
2026-06-04T11:59:35.523Z eventstore write event=TokensTransferred status=201
"""
REGISTRY_403 = "2026-06-04T11:59:45.541Z eventstore write event=TokensTransferred status=403 forbidden\n"
REGISTRY_ERR = ("2026-06-04T11:59:55.541Z eventstore write event=TokensTransferred status=error "
                "reason=connection_refused\n")
AGENT_BANNED = ('time="2026-06-04T11:59:50Z" level=error msg="Agent is banned: removing SVID and shutting down" '
                'subsystem_name=manager\n')


def docker_log(text):
    """Prefix plain lines as `docker logs --timestamps` does."""
    out = []
    for line in text.splitlines():
        stamp = line.split(' ', 1)[0]
        if not stamp[:4].isdigit():
            stamp = '2026-06-04T11:59:50.000000000Z'
        out.append(line if line.startswith(stamp) and stamp.endswith('Z') and 'T' in stamp else '%s %s' % (stamp, line))
    return _logs.split_docker_log('\n'.join(out))


@pytest.fixture(scope='module')
def svid(pki):
    return dict(svid=pki.cert_pem(pki.leaf, pki.intermediate), key=pki.key_pem(pki.leaf_key), bundle=pki.cert_pem(pki.root))


# --------------------------------------------------------------------------- results

def test_dependencies_skip_and_name_the_cause():
    results = [cl.result('nginx_federation_accepting', cl.FAIL, 'refused'),
               cl.result('served_svid_current', cl.FAIL, 'no answer'),
               cl.result('mtls_enforced', cl.FAIL, 'no answer')]
    cl.apply_dependencies(results)
    assert [r['status'] for r in results] == ['fail', 'skip', 'skip']
    assert 'nginx_federation_accepting' in results[1]['evidence'][0]
    assert results[1]['details']['masked']['status'] == 'fail'
    summary = cl.summarize(results)
    assert summary['status'] == 'fail' and summary['failed'] == ['nginx_federation_accepting']


def test_remediation_only_when_not_passing():
    assert cl.result('svid_valid', cl.PASS, 'ok')['remediation'] == ''
    assert 'Step 2' in cl.result('svid_valid', cl.FAIL, 'bad')['remediation']
    with pytest.raises(cl.ChecklistError):
        cl.result('nope', cl.PASS, 'x')


def test_every_check_has_a_guide_remediation():
    for check_id, check in cl.CHECKS.items():
        title, remediation, requires = check.title, check.remediation, check.requires
        assert title and remediation.startswith('Operator guide, ')
        assert all(dep in cl.CHECKS for dep in requires)


def test_scrub_nested():
    secret = _secrets.generate_secret()
    out = cl.scrub({'a': ['x %s y' % secret, ('z', secret)]}, [secret])
    assert secret not in json.dumps(out)


# --------------------------------------------------------------------------- checks

def test_spire_agent_healthy_pass_and_no_identity(pki, svid):
    agent = pki.make_cert(pki.make_key(), None, issuer=(pki.intermediate, pki.int_key),
                          uris=['spiffe://example.com/spire/agent/x509pop/' + 'ab' * 20])
    agent_pem = pki.cert_pem(agent, pki.intermediate)
    healthy = dict(exit_code=0, output='Agent is healthy.\n')
    res = cl.check_spire_agent_healthy(RUNNING, healthy, agent_pem, svid['bundle'], 'example.com', [],
                                       docker_log(CW_LINES), pki.now)
    assert res['status'] == 'pass', res
    res = cl.check_spire_agent_healthy(RUNNING, healthy, agent_pem, svid['bundle'], 'example.com', [],
                                       docker_log(CW_LINES + CW_NO_IDENTITY), pki.now)
    assert res['status'] == 'fail'
    assert any('no identity' in e for e in res['evidence'])
    res = cl.check_spire_agent_healthy(RUNNING, healthy, agent_pem, svid['bundle'], 'example.com',
                                       docker_log(AGENT_BANNED), docker_log(CW_LINES), pki.now)
    assert res['status'] == 'fail' and any('banned' in e for e in res['evidence'])
    # The same ban line from before the container's current start (the frame evicted the agent, it was
    # restarted and attested again): not this run's state.
    restarted = dict(RUNNING, started_at='2026-06-04T11:59:51.000000000Z')
    res = cl.check_spire_agent_healthy(restarted, healthy, agent_pem, svid['bundle'], 'example.com',
                                       docker_log(AGENT_BANNED), docker_log(CW_LINES), pki.now)
    assert res['status'] == 'pass', res
    before_ban = dict(RUNNING, started_at='2026-06-04T11:59:49.000000000Z')
    res = cl.check_spire_agent_healthy(before_ban, healthy, agent_pem, svid['bundle'], 'example.com',
                                       docker_log(AGENT_BANNED), docker_log(CW_LINES), pki.now)
    assert res['status'] == 'fail' and any('banned' in e for e in res['evidence'])
    res = cl.check_spire_agent_healthy(RUNNING, healthy, None, svid['bundle'], 'example.com', [], [], pki.now)
    assert res['status'] == 'fail' and any('holds no SVID' in e for e in res['evidence'])
    res = cl.check_spire_agent_healthy(STOPPED, None, agent_pem, svid['bundle'], 'example.com', [], [], pki.now)
    assert res['status'] == 'fail' and 'exited' in res['evidence'][0]


def test_spire_agent_svid_from_other_bundle_fails(pki, svid):
    other_agent = pki.make_cert(pki.make_key(), None, issuer=(pki.other_root, pki.other_root_key),
                                uris=['spiffe://example.com/spire/agent/x509pop/' + 'cd' * 20])
    res = cl.check_spire_agent_healthy(RUNNING, dict(exit_code=0, output='Agent is healthy.'),
                                       pki.cert_pem(other_agent), svid['bundle'], 'example.com', [], [], pki.now)
    assert res['status'] == 'fail' and any('does not chain' in e for e in res['evidence'])


def test_cert_writer(pki):
    lines = docker_log(CW_LINES)
    res = cl.check_cert_writer_running(RUNNING, lines, pki.now - 15 * SEC, 15, pki.now)
    assert res['status'] == 'pass', res
    res = cl.check_cert_writer_running(RUNNING, lines, pki.now - 15 * SEC, 15, pki.now + 60 * SEC)
    assert res['status'] == 'fail' and any('more than 2x' in e for e in res['evidence'])
    res = cl.check_cert_writer_running(STOPPED, lines, pki.now, 15, pki.now)
    assert res['status'] == 'fail' and 'exited' in res['evidence'][0]
    res = cl.check_cert_writer_running(RUNNING, docker_log(CW_LINES + CW_NO_IDENTITY), pki.now, 15, pki.now)
    assert res['status'] == 'fail' and any('failed since' in e for e in res['evidence'])


def test_nginx_health():
    assert cl.check_nginx_federation_accepting(RUNNING, dict(status=200), 8443)['status'] == 'pass'
    res = cl.check_nginx_federation_accepting(STOPPED, dict(status=None, error='connection refused'), 8443)
    assert res['status'] == 'fail' and 'connection refused' in res['evidence'][0]
    assert cl.check_nginx_federation_accepting(RUNNING, dict(status=502), 8443)['status'] == 'fail'


@pytest.mark.parametrize('modern', [True, False], ids=['cryptography40-api', 'cryptography38-api'])
def test_svid_valid(pki, svid, modern, monkeypatch):
    monkeypatch.setattr(_x509, 'MODERN_API', modern)
    res = cl.check_svid_valid(svid['svid'], svid['key'], svid['bundle'], pki.registry_id, 30, pki.now)
    assert res['status'] == 'pass', res
    # Another trust domain, another root: both the ID and the chain are named.
    other = cl.check_svid_valid(pki.cert_pem(pki.other_leaf), None, svid['bundle'], pki.registry_id, 30, pki.now)
    assert other['status'] == 'fail'
    text = ' '.join(other['evidence'])
    assert 'spiffe://other.org/service/registry-acme' in text and 'chain' in text
    expired = cl.check_svid_valid(pki.cert_pem(pki.expired_leaf, pki.intermediate), None, svid['bundle'],
                                  pki.registry_id, 30, pki.now)
    assert expired['status'] == 'fail' and any('expired' in e for e in expired['evidence'])
    short = cl.check_svid_valid(svid['svid'], svid['key'], svid['bundle'], pki.registry_id, 7200, pki.now)
    assert short['status'] == 'fail' and any('less than the 7200 s' in e for e in short['evidence'])
    wrong_key = cl.check_svid_valid(svid['svid'], pki.key_pem(pki.mismatched_key), svid['bundle'], pki.registry_id,
                                    30, pki.now)
    assert wrong_key['status'] == 'fail' and 'PRIVATE' not in json.dumps(wrong_key)


def test_served_svid(pki, svid):
    served = _x509.der(pki.leaf)
    assert cl.check_served_svid_current(served, None, svid['svid'])['status'] == 'pass'
    old = _x509.der(pki.expired_leaf)
    res = cl.check_served_svid_current(old, None, svid['svid'], pki.now)
    assert res['status'] == 'fail' and 'not reloaded' in res['evidence'][0]
    assert any('expired' in e for e in res['evidence'])
    assert cl.check_served_svid_current(None, 'connection refused', svid['svid'])['status'] == 'fail'


def test_eventstore(pki):
    now = pki.now
    assert cl.check_eventstore_writes_ok(RUNNING, docker_log(REGISTRY_OK), 60, now)['status'] == 'pass'
    res = cl.check_eventstore_writes_ok(RUNNING, docker_log(REGISTRY_OK + REGISTRY_403), 60, now)
    assert res['status'] == 'fail' and 'status=403 forbidden' in ' '.join(res['evidence'])
    res = cl.check_eventstore_writes_ok(RUNNING, docker_log(REGISTRY_OK + REGISTRY_ERR), 60, now)
    assert res['status'] == 'warn'
    assert cl.check_eventstore_writes_ok(RUNNING, [], 60, now)['status'] == 'fail'


def _probes(status, **extra):
    return [dict(method=m, path=p, status=status, **extra) for m, p in cl.FEDERATION_ENDPOINTS]


def _matrix(**overrides):
    """The matrix of a correct stack (every refusal 403, our SVID 200), with overrides per probe."""
    out = dict((probe_id, _probes(200 if probe_id == 'registry_svid' else 403)) for probe_id in cl.MTLS_PROBE_IDS)
    out.update(overrides)
    return out


AGENT_ID = 'spiffe://example.com/spire/agent/x509pop/0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33'


def test_mtls_matrix_of_a_correct_stack_passes_and_lists_every_cell():
    res = cl.check_mtls_enforced('true', 'true', _matrix(), RUNNING, identities=dict(non_registry=AGENT_ID))
    assert res['status'] == 'pass', res
    text = '\n'.join(res['evidence'])
    for dummy, label in cl.MTLS_PROBES:
        assert label in text
    assert 'no client certificate: 403 403 403 403 403, refused on 5/5' in text
    assert 'our registry SVID: 200 200 200 200 200, accepted on 5/5' in text
    assert AGENT_ID in text
    matrix = res['details']['matrix']
    assert sorted(matrix) == sorted(cl.MTLS_PROBE_IDS)
    assert all(len(row) == 5 for row in matrix.values())
    assert matrix['non_registry']['GET /api/v1/federation/agent-cards'] == '403'


@pytest.mark.parametrize('probe_id, words', [
    ('no_cert', 'require a client certificate'),
    ('self_signed', 'verify client certificates against the SPIRE trust bundle'),
    ('foreign_ca', 'against the SPIRE trust bundle only'),
    ('non_registry', 'only registry SPIFFE IDs'),
    ('forged_header', 'X-SSL-Client-Cert must never count'),
])
def test_mtls_each_refusal_probe_that_gets_through_fails_the_check(probe_id, words):
    # The real fault of each probe: nginx lets that request through to the registry, which answers 200.
    res = cl.check_mtls_enforced('true', 'true', _matrix(**{probe_id: _probes(200)}), RUNNING,
                                 identities=dict(non_registry=AGENT_ID))
    assert res['status'] == 'fail', res
    assert words in res['evidence'][0] and 'got through on POST /api/v1/events/' in res['evidence'][0]
    assert res['details']['matrix'][probe_id]['POST /api/v1/events/'] == '200'
    # one endpoint is enough to fail
    one = _probes(403)
    one[3] = dict(one[3], status=200)
    res = cl.check_mtls_enforced('true', 'true', _matrix(**{probe_id: one}), RUNNING)
    assert res['status'] == 'fail' and 'POST /internal/federation/query' in res['evidence'][0]


def test_mtls_a_refusal_probe_answered_5xx_fails_nginx_passed_it_on():
    res = cl.check_mtls_enforced('true', 'true', _matrix(non_registry=_probes(502)), RUNNING)
    assert res['status'] == 'fail' and 'got through' in res['evidence'][0]


def test_mtls_tls_refusal_counts_as_refused_and_silence_fails():
    tls = _probes(None, tls_refused=True, error='TLS error: TLSV1_ALERT_UNKNOWN_CA')
    res = cl.check_mtls_enforced('true', 'true', _matrix(self_signed=tls), RUNNING)
    assert res['status'] == 'pass', res
    assert 'TLS refused TLS refused' in ' '.join(res['evidence'])
    silent = _probes(None, error='timed out after 5 s')
    res = cl.check_mtls_enforced('true', 'true', _matrix(no_cert=silent), RUNNING)
    assert res['status'] == 'fail' and 'no answer' in res['evidence'][0] and 'timed out' in res['evidence'][0]


def test_mtls_legacy_header_must_get_403():
    res = cl.check_mtls_enforced('true', 'true', _matrix(legacy_header=_probes(200)), RUNNING)
    assert res['status'] == 'fail' and 'legacy X-Federation-License' in res['evidence'][0]
    res = cl.check_mtls_enforced('true', 'true', _matrix(legacy_header=_probes(401)), RUNNING)
    assert res['status'] == 'fail' and 'not 403' in res['evidence'][0]
    res = cl.check_mtls_enforced('true', 'true', _matrix(legacy_header=_probes(502)), RUNNING)
    assert res['status'] == 'warn'


def test_mtls_our_registry_svid_refused_fails_and_no_answer_warns():
    refused = _probes(403, reason='federation peer not allowed')
    res = cl.check_mtls_enforced('true', 'true', _matrix(registry_svid=refused), RUNNING)
    assert res['status'] == 'fail' and 'federation peer not allowed' in res['evidence'][0]
    assert 'locked out' in res['evidence'][0]
    res = cl.check_mtls_enforced('true', 'true', _matrix(registry_svid=_probes(502)), RUNNING)
    assert res['status'] == 'warn' and 'may not come from the mTLS check' in res['evidence'][0]


def test_mtls_environment_must_say_true():
    res = cl.check_mtls_enforced('true', 'false', _matrix(), RUNNING)
    assert res['status'] == 'fail' and 'running registry container' in res['evidence'][0]
    res = cl.check_mtls_enforced(None, 'true', _matrix(), RUNNING)
    assert res['status'] == 'fail' and 'unset' in res['evidence'][0]


def test_mtls_without_the_agent_svid_warns_that_the_allow_list_was_not_tested():
    matrix = _matrix()
    del matrix['non_registry']
    res = cl.check_mtls_enforced('true', 'true', matrix, RUNNING,
                                 unavailable=dict(non_registry='keys.json of the SPIRE agent is missing'))
    assert res['status'] == 'warn' and 'allow-list was not tested' in res['evidence'][0]
    assert res['details']['not_probed'] == dict(non_registry='keys.json of the SPIRE agent is missing')


def test_mtls_without_our_svid_the_registry_probes_are_only_noted():
    # svid_valid reports a broken SVID; mtls_enforced still judges what nginx decides by itself.
    matrix = _matrix()
    why = 'our registry SVID is not valid (see svid_valid)'
    unavailable = {}
    for probe_id in ('legacy_header', 'registry_svid', 'forged_header'):
        del matrix[probe_id]
        unavailable[probe_id] = why
    res = cl.check_mtls_enforced('true', 'true', matrix, RUNNING, unavailable)
    assert res['status'] == 'pass', res
    assert sum(why in e for e in res['evidence']) == 3


@pytest.mark.parametrize('registry', [dict(running=False), dict(running=True, health='starting'),
                                      dict(running=True, health='unhealthy')])
def test_mtls_probes_through_a_registry_that_does_not_serve_are_skipped(registry):
    # A registry refusing its configuration starts and exits in a loop: nginx answers 502 for it.
    res = cl.check_mtls_enforced('true', 'true', _matrix(legacy_header=_probes(502), registry_svid=_probes(502)),
                                 registry=registry)
    assert res['status'] == 'pass', res
    assert sum('the registry container is not serving' in e for e in res['evidence']) == 2
    assert sorted(res['details']['matrix']) == sorted(set(cl.MTLS_PROBE_IDS) - set(cl.MTLS_REGISTRY_PROBES))


def test_minting():
    assert cl.check_minting_disabled('disabled', 'disabled', RUNNING)['status'] == 'pass'
    res = cl.check_minting_disabled('disabled', 'enabled', RUNNING)
    assert res['status'] == 'fail' and 'running registry' in res['evidence'][0]
    assert cl.check_minting_disabled('enabled', 'disabled', RUNNING)['status'] == 'fail'


def test_passwords_from_a_real_env_file():
    pg, redis, key = (_secrets.generate_secret() for dummy in range(3))
    text = 'POSTGRES_USER=registry\nPOSTGRES_PASSWORD=%s\nREDIS_PASSWORD="%s"\nINTERNAL_API_KEY=%s\n' % (pg, redis, key)
    env = _envfile.EnvFile.parse(text)
    values = dict((k, env.value(k)) for k in cl.SECRET_KEYS)
    live = dict(POSTGRES_PASSWORD=dict(ok=True, state='accepted'), REDIS_PASSWORD=dict(ok=True, state='accepted'))
    res = cl.check_db_passwords_not_default(values, live)
    assert res['status'] == 'pass' and 'refuses a random wrong password and no password' in json.dumps(res)
    weak = dict(values, POSTGRES_PASSWORD='postgres')
    res = cl.check_db_passwords_not_default(weak, dict(live, POSTGRES_PASSWORD=dict(
        ok=False, state='refused', reason='authentication failed')))
    out = json.dumps(res)
    assert res['status'] == 'fail' and 'well-known default' in out and 'PostgreSQL does not accept' in out
    assert 'postgres"' not in out.replace('PostgreSQL', '')
    reused = dict(values, REDIS_PASSWORD=pg)
    res = cl.check_db_passwords_not_default(reused, live)
    assert res['status'] == 'fail' and 'reused' in json.dumps(res)
    for value in (pg, redis, key):
        assert value not in json.dumps(res)


def test_passwords_fail_when_a_server_accepts_any_password():
    values = dict((k, _secrets.generate_secret()) for k in cl.SECRET_KEYS)
    any_pw = dict(ok=False, state='accepts_any', reason='PostgreSQL accepts any password: a random wrong one was '
                                                        'accepted; pg_hba.conf trusts connections')
    res = cl.check_db_passwords_not_default(values, dict(POSTGRES_PASSWORD=any_pw,
                                                         REDIS_PASSWORD=dict(ok=True, state='accepted')))
    assert res['status'] == 'fail' and 'accepts any password' in res['evidence'][0], res


def test_passwords_fail_when_a_key_or_a_server_is_missing():
    values = dict((k, _secrets.generate_secret()) for k in cl.SECRET_KEYS)
    live = dict(POSTGRES_PASSWORD=dict(ok=True, state='accepted'), REDIS_PASSWORD=dict(ok=True, state='accepted'))
    res = cl.check_db_passwords_not_default(dict(values, REDIS_PASSWORD=None), dict(live, REDIS_PASSWORD=None))
    assert res['status'] == 'fail' and 'REDIS_PASSWORD is absent from .env.operator' in res['evidence'], res
    del values['INTERNAL_API_KEY']
    res = cl.check_db_passwords_not_default(values, live)
    assert res['status'] == 'fail' and 'INTERNAL_API_KEY is absent from .env.operator' in res['evidence'], res
    values = dict((k, _secrets.generate_secret()) for k in cl.SECRET_KEYS)
    res = cl.check_db_passwords_not_default(values, dict(REDIS_PASSWORD=live['REDIS_PASSWORD']), dict(
        POSTGRES_PASSWORD=dict(exists=False, name='acme-db'), REDIS_PASSWORD=dict(exists=True, running=True)))
    assert res['status'] == 'fail', res
    assert 'POSTGRES_PASSWORD cannot be checked against PostgreSQL: container acme-db does not exist' in res['evidence']
    res = cl.check_db_passwords_not_default(values, dict(POSTGRES_PASSWORD=live['POSTGRES_PASSWORD']), dict(
        REDIS_PASSWORD=dict(exists=True, name='acme-redis', status='exited')))
    assert 'REDIS_PASSWORD cannot be checked against Redis: container acme-redis is exited' in res['evidence'], res


def test_images():
    digest = 'sha256:' + 'a' * 64
    images = dict(redis=dict(ref='r:5000/redis:lab', running_digests=[digest], registry_digest=digest))
    assert cl.check_images_up_to_date(images)['status'] == 'pass'
    newer = dict(redis=dict(images['redis'], registry_digest='sha256:' + 'b' * 64))
    res = cl.check_images_up_to_date(newer)
    assert res['status'] == 'fail' and 'newer image' in res['evidence'][0]
    err = dict(redis=dict(images['redis'], error='cannot ask the image registry'))
    assert cl.check_images_up_to_date(err)['status'] == 'warn'


def test_x509pop(pki):
    key = pki.make_key()
    cert = pki.make_cert(key, 'host1', not_after=pki.now + 365 * datetime.timedelta(days=1))
    assert cl.check_x509pop_cert_expiry(pki.cert_pem(cert), 30, pki.now)['status'] == 'pass'
    near = pki.make_cert(key, 'host1', not_after=pki.now + 10 * datetime.timedelta(days=1))
    res = cl.check_x509pop_cert_expiry(pki.cert_pem(near), 30, pki.now)
    assert res['status'] == 'warn' and 'expires in 10.0 days' in res['evidence'][0]
    gone = pki.make_cert(key, 'host1', not_before=pki.now - 9 * datetime.timedelta(days=1),
                         not_after=pki.now - datetime.timedelta(days=1))
    assert cl.check_x509pop_cert_expiry(pki.cert_pem(gone), 30, pki.now)['status'] == 'fail'
    assert cl.check_x509pop_cert_expiry(None, 30, pki.now)['status'] == 'fail'


def test_env_permissions(tmp_path):
    from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist_probe as probe
    path = tmp_path / '.env.operator'
    path.write_text('A=b\n')
    path.chmod(0o644)
    res = cl.check_env_file_permissions(str(path), probe.lstat_info(str(path)))
    assert res['status'] == 'fail' and 'mode 0644' in res['evidence'][0] and 'readable by others' in res['evidence'][0]
    path.chmod(0o600)
    info = probe.lstat_info(str(path))
    res = cl.check_env_file_permissions(str(path), info)
    assert res['status'] == ('pass' if info['uid'] == 0 else 'fail')
    assert cl.check_env_file_permissions(str(tmp_path / 'missing'), probe.lstat_info(str(tmp_path / 'missing')))[
        'status'] == 'fail'


# --------------------------------------------------------------------------- secret rotation state and age

def _journal_rotation(state, step='env_written'):
    from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation_journal as J
    doc = J.begin(J.empty(), ['POSTGRES_PASSWORD'], {'POSTGRES_PASSWORD': 'a' * 12}, {'POSTGRES_PASSWORD': 'b' * 12},
                  '/opt/x/.env.operator.20261127T180000Z.bak')
    doc = J.advance(doc, step)
    return doc['rotation'] if state == 'in_progress' else J.finish(doc, state)['rotation']


@pytest.mark.parametrize('rotation,error,count,status,words', [
    ('completed', None, 1, 'pass', 'Redis accepts 1 password for its stack user'),
    (None, None, 1, 'pass', 'no rotation recorded'),
    ('in_progress', None, 2, 'fail', 'an unfinished rotation of POSTGRES_PASSWORD'),
    ('completed', None, 2, 'fail', 'Redis accepts 2 passwords for its stack user outside a rotation'),
    ('rolled_back', None, None, 'pass', 'Redis passwords not counted: Redis is down'),
    (None, '/x/.env.operator.rotation.json is unreadable (not a version 1 journal).', 1, 'fail', 'unreadable'),
], ids=['completed', 'none', 'unfinished', 'two passwords', 'redis down', 'unreadable journal'])
def test_secrets_rotation_complete(rotation, error, count, status, words):
    res = cl.check_secrets_rotation_complete(_journal_rotation(rotation) if rotation else None, error, count,
                                             'Redis is down')
    assert res['status'] == status and any(words in e for e in res['evidence']), res['evidence']


def test_secrets_age_warns_on_old_and_unknown_ages():
    young = {'since': '2026-11-20T00:00:00Z', 'days': 7, 'note': None}
    res = cl.check_secrets_age({'POSTGRES_PASSWORD': young}, 90)
    assert res['status'] == 'pass' and res['details']['oldest'] == {'days': 7, 'key': 'POSTGRES_PASSWORD'}
    old = {'since': '2026-01-01T00:00:00Z', 'days': 330, 'note': None}
    res = cl.check_secrets_age({'POSTGRES_PASSWORD': young, 'REDIS_PASSWORD': old}, 90)
    assert res['status'] == 'warn' and 'REDIS_PASSWORD is 330 days old (set 2026-01-01T00:00:00Z), more than 90' \
        in res['evidence'] and res['details']['oldest']['key'] == 'REDIS_PASSWORD'
    unknown = {'since': None, 'days': None, 'note': 'no record of when it was set'}
    res = cl.check_secrets_age({'INTERNAL_API_KEY': unknown}, 90)
    assert res['status'] == 'warn' and res['details']['oldest'] is None
    assert res['evidence'] == ['INTERNAL_API_KEY: age unknown (no record of when it was set)']
