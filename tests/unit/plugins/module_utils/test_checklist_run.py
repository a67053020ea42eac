# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The checklist's table and its runner over whole fact sets.

Each fact set of ``fixtures/checklist_facts/<name>.json`` is the facts of every check as
``security_checklist`` returns them with ``return_facts: true``, and the full result list the runner
must make of them. They were gathered by ``_observe`` from a stack made of real data
(``observed_stack.LabHost``: an env file written by ``_envfile`` with generated secrets, the PKI of
conftest.py, ``docker inspect`` data and log lines in the lab images' formats, command outputs captured
on the lab), each with one fault made as the integration tests make it. A fact set recorded on the lab
goes there as it is (see CONTRIBUTING.md, "Add a checklist item").

To write the fact sets again (after a change of the facts or of a judgement; review the diff):
``THEPROTOCOL_WRITE_FACT_SETS=1 pytest tests/unit/plugins/module_utils/test_checklist_run.py``. The made
ones are gathered again; a recorded one keeps its facts and gets the results the runner makes of them.
A file holds ``description``, ``facts``, ``rechecks`` (what served_svid_current's looks again get, in
turn; empty: the stack as it was) and ``results`` (id, status, evidence, details of each check).
"""

from __future__ import annotations

import datetime
import json
import os

import pytest

from ansible_collections.theprotocol.operator.tests.unit.plugins.module_utils import observed_stack as lab
from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist as cl
from ansible_collections.theprotocol.operator.plugins.module_utils import _observe as observe
from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation_journal
from ansible_collections.theprotocol.operator.plugins.module_utils import _x509

FACT_SETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'checklist_facts')
WRITE = os.environ.get('THEPROTOCOL_WRITE_FACT_SETS') == '1'
SEC = datetime.timedelta(seconds=1)


# --------------------------------------------------------------------------- the fact sets: how each fault is made

def healthy(host):
    """Every check passes."""
    return host.facts(), []


def cert_writer_stopped(host):
    """`docker stop <registry>-cert-writer` two minutes ago: its last fetch and files are that old."""
    stopped = host.now - 120 * SEC
    host.stop('cert-writer', stopped)
    host.logs['cert-writer'] = [host.cert_writer_line(stopped - (15 * n + 5) * SEC) for n in reversed(range(6))]
    host.write_certs(host.pki.leaf, host.pki.leaf_key, written=stopped - 5 * SEC)
    return host.facts(), []


def agent_without_an_identity(host):
    """The registry's registration entry deleted: the agent is healthy by its healthcheck but issues no identity."""
    reason = ('unix:///tmp/spire-agent/public/api.sock: rpc error: code = PermissionDenied desc = no identity '
              'issued')
    host.logs['cert-writer'] = host.logs['cert-writer'][:3] + [
        host.cert_writer_line(host.now - (5 + 15 * n) * SEC, failed=reason) for n in reversed(range(3))]
    host.write_certs(host.pki.leaf, host.pki.leaf_key, written=host.now - 50 * SEC)
    return host.facts(), []


def nginx_federation_stopped(host):
    """`docker stop <registry>-nginx-federation`: nothing listens on the federation port."""
    host.stop('nginx-federation', host.now - 30 * SEC)
    refused = 'connection refused (is the port published and nginx running?)'
    health = lab.health_probe(None, error=refused)
    mtls = lab.mtls_probes(host, lambda probe_id, method, path: lab.https_outcome(method, path, error=refused))
    return host.facts(health, mtls), []


def served_foreign_certificate(host):
    """nginx-federation serves a certificate of another CA than the volume's SVID, and goes on serving it."""
    host.served = host.pki.other_leaf
    facts = host.facts()
    return facts, [dict(federation_health=facts['federation_health'], svid_files=facts['svid_files'])]


def nginx_reload_in_progress(host):
    """The agent rotated the SVID 2 s ago; nginx-federation serves the old one, then (its hook polls the volume
    every 2 s) the new one: served_svid_current looks again and passes."""
    pki = host.pki
    key = pki.make_key()
    new = pki.make_cert(key, None, issuer=(pki.intermediate, pki.int_key), uris=[pki.registry_id],
                        not_before=host.now - 2 * SEC, not_after=host.now + 3600 * SEC)
    host.logs['cert-writer'].append(host.cert_writer_line(host.now - 2 * SEC, leaf=new))
    host.write_certs(new, key, written=host.now - 2 * SEC)
    facts = host.facts()  # nginx serves pki.leaf, the volume holds the new SVID
    return facts, [dict(federation_health=lab.health_probe(200, pki.leaf), svid_files=facts['svid_files']),
                   dict(federation_health=lab.health_probe(200, new), svid_files=facts['svid_files'])]


def svid_from_another_trust_domain(host):
    """svid.pem and svid_key.pem replaced by an SVID of other.org from another CA; nginx reloaded it."""
    pki = host.pki
    key = pki.make_key()
    other = pki.make_cert(key, None, issuer=(pki.other_root, pki.other_root_key),
                          uris=['spiffe://other.org/service/registry-acme'], not_before=host.now - 3600 * SEC,
                          not_after=host.now + 3600 * SEC)
    host.write_certs(other, key, written=host.now - 5 * SEC, chain=(pki.other_root,))
    host.served = other
    return host.facts(), []


def env_file_tampered(host):
    """.env.operator made world-readable and POSTGRES_PASSWORD set to "postgres" by hand (PostgreSQL kept its own)."""
    host.set_env('POSTGRES_PASSWORD', 'postgres', mode=0o644)
    host.live_auth = dict(host.live_auth, db=lab.LIVE_AUTH['postgres_wrong'])
    return host.facts(), []


def eventstore_refuses_writes(host):
    """The EventStore answers 403 (the frame revoked the registry)."""
    writes = [i for i, line in enumerate(host.logs['registry']) if 'status=201' in line]
    for index in writes[-3:]:
        host.logs['registry'][index] = host.logs['registry'][index].replace('status=201', 'status=403 forbidden')
    return host.facts(), []


def unfinished_rotation(host):
    """A rotation of REDIS_PASSWORD stopped after the new password was added to Redis."""
    doc = _rotation_journal.load(host.env_path)
    doc = _rotation_journal.begin(doc, ['REDIS_PASSWORD'], {'REDIS_PASSWORD': 'a' * 12}, {'REDIS_PASSWORD': 'b' * 12},
                                  host.env_path + '.20260604T115800Z.bak', now=host.now - 120 * SEC)
    doc = _rotation_journal.advance(doc, 'redis_added', now=host.now - 118 * SEC)
    _rotation_journal.write(host.env_path, doc)
    host.redis_passwords = 2
    return host.facts(), []


def registry_started_with_minting(host):
    """The registry runs with MINTING_AUTHORITY=enabled (an override file); .env.operator says disabled."""
    env = host.inspect['registry']['Config']['Env']
    env[env.index('MINTING_AUTHORITY=disabled')] = 'MINTING_AUTHORITY=enabled'
    return host.facts(), []


def newer_image_pushed(host):
    """A newer redis image was pushed under the tag the stack runs."""
    host.registry_digests['redis'] = 'sha256:' + 'b0' * 32
    return host.facts(), []


# name -> (how it is made, what the checks say: check -> (status, words in the evidence)); every other check passes.
# A fact set recorded on the lab has no maker (None): it is judged, not made again.
FACT_SET_EXPECTATIONS = {
    'healthy': (healthy, {}),
    'cert_writer_stopped': (cert_writer_stopped, {
        'cert_writer_running': ('fail', ['not running'])}),
    'agent_without_an_identity': (agent_without_an_identity, {
        'spire_agent_healthy': ('fail', ['issues no identity to the registry workload']),
        'cert_writer_running': ('skip', ['depends on spire_agent_healthy'])}),
    'nginx_federation_stopped': (nginx_federation_stopped, {
        'nginx_federation_accepting': ('fail', ['https://localhost:8443/health', 'connection refused', 'exited']),
        'served_svid_current': ('skip', ['depends on nginx_federation_accepting']),
        'mtls_enforced': ('skip', ['depends on nginx_federation_accepting']),
        # judged before mtls_enforced, which had failed then (apply_dependencies goes in the table's order)
        'eventstore_writes_ok': ('skip', ['depends on mtls_enforced'])}),
    'served_foreign_certificate': (served_foreign_certificate, {
        'served_svid_current': ('fail', ['not reloaded after the rotation'])}),
    'nginx_reload_in_progress': (nginx_reload_in_progress, {
        'served_svid_current': ('pass', ['caught a rotation in progress: nginx served the new SVID within 15 s'])}),
    'svid_from_another_trust_domain': (svid_from_another_trust_domain, {
        'svid_valid': ('fail', ['spiffe://other.org/service/registry-acme', 'chain']),
        'served_svid_current': ('skip', ['depends on svid_valid']),
        'eventstore_writes_ok': ('skip', ['depends on svid_valid']),
        'mtls_enforced': ('pass', ['our registry SVID is not valid (see svid_valid)'])}),
    'env_file_tampered': (env_file_tampered, {
        'env_file_permissions': ('fail', ['mode 0644', 'readable by others']),
        'db_passwords_not_default': ('fail', ['POSTGRES_PASSWORD is a well-known default',
                                              'PostgreSQL does not accept POSTGRES_PASSWORD']),
        'secrets_age': ('warn', ['POSTGRES_PASSWORD: age unknown (changed outside the rotation'])}),
    'eventstore_refuses_writes': (eventstore_refuses_writes, {
        'eventstore_writes_ok': ('fail', ['3 refused (401/403)', 'status=403 forbidden'])}),
    'unfinished_rotation': (unfinished_rotation, {
        'secrets_rotation_complete': ('fail', ['an unfinished rotation of REDIS_PASSWORD', 'stopped at step redis_added',
                                               'Redis accepts 2 passwords for its stack user'])}),
    'registry_started_with_minting': (registry_started_with_minting, {
        'minting_disabled': ('fail', ['running registry container has MINTING_AUTHORITY="enabled"']),
        'eventstore_writes_ok': ('skip', ['depends on minting_disabled'])}),
    # Recorded on the lab with return_facts (not made again from data: no maker).
    'lab_host7_healthy': (None, {}),
    'newer_image_pushed': (newer_image_pushed, {
        'images_up_to_date': ('fail', ['localhost:5000/theprotocol/redis:lab', 'redis runs', 'newer image was pushed'])}),
}
NAMES = sorted(FACT_SET_EXPECTATIONS)
MADE = [name for name in NAMES if FACT_SET_EXPECTATIONS[name][0] is not None]


# --------------------------------------------------------------------------- judging a fact set

class Clock:
    """The recheck's time: ``sleep`` moves it on."""

    def __init__(self):
        self.now = 0.0

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def judge(facts, rechecks, selected=None):
    """The runner over ``facts``; its looks again get ``rechecks`` in turn (the last one from then on; none:
    the stack as it was). Returns (results, the fact names of each look again)."""
    looks = []

    def regather(names):
        looks.append(tuple(names))
        again = rechecks[min(len(looks), len(rechecks)) - 1] if rechecks else {}
        return dict((name, again.get(name, facts[name])) for name in names)

    clock = Clock()
    return cl.run(facts, selected, regather=regather, sleep=clock.sleep, clock=clock.time), looks


def recorded_form(results):
    """What a fact set file keeps of each result (title, remediation and requires come from the table)."""
    return [dict(id=r['id'], status=r['status'], evidence=r['evidence'], details=r['details']) for r in results]


def load(name):
    with open(os.path.join(FACT_SETS, name + '.json')) as handle:
        return json.load(handle)


def save(name, fact_set):
    os.makedirs(FACT_SETS, exist_ok=True)
    with open(os.path.join(FACT_SETS, name + '.json'), 'w') as handle:
        handle.write(dumps(fact_set) + '\n')


def dumps(value, indent=''):
    """JSON, one line for what fits in 120 characters, keys sorted (reviewable diffs)."""
    flat = json.dumps(value, sort_keys=True)
    if len(indent) + len(flat) <= 120 or not isinstance(value, (dict, list)) or not value:
        return flat
    inner = indent + ' '
    if isinstance(value, dict):
        items = ['%s%s: %s' % (inner, json.dumps(k), dumps(v, inner)) for k, v in sorted(value.items())]
        return '{\n%s\n%s}' % (',\n'.join(items), indent)
    return '[\n%s\n%s]' % (',\n'.join(inner + dumps(v, inner) for v in value), indent)


def shape(value):
    """The structure of a JSON value: the keys of dicts, the types of the rest (one list item)."""
    if isinstance(value, dict):
        return dict((k, shape(v)) for k, v in value.items())
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


# --------------------------------------------------------------------------- the table

def test_every_check_is_declared_once_with_its_judgement_and_facts():
    assert len(set(cl.CHECK_IDS)) == len(cl.CHECK_IDS) == 14
    for check_id, check in cl.CHECKS.items():
        assert check.title and check.remediation.startswith('Operator guide, '), check_id
        assert all(dep in cl.CHECKS for dep in check.requires), check_id
        assert check.judge.__name__ == 'judge_' + check_id and callable(check.judge)
        assert check.facts and len(set(check.facts)) == len(check.facts), check_id
        # every fact named is one the gatherer produces (each has a plan; test_observe gathers them all)
        assert set(check.facts) <= set(observe.FACT_NAMES), (check_id, set(check.facts) - set(observe.FACT_NAMES))
    for name in observe.FACT_NAMES:
        assert callable(getattr(observe.Gatherer, '_plan_' + name)), name
    read = set(name for check in cl.CHECKS.values() for name in check.facts)
    assert set(observe.FACT_NAMES) - set(observe.BASE_FACTS) <= read, 'a fact that no check reads'


def test_the_one_recheck_is_declared_in_the_table():
    rechecks = dict((check_id, c.recheck) for check_id, c in cl.CHECKS.items() if c.recheck)
    assert list(rechecks) == ['served_svid_current']
    recheck = rechecks['served_svid_current']
    assert set(recheck.facts) <= set(cl.CHECKS['served_svid_current'].facts)
    assert recheck.grace_option in observe.OPTIONS


def test_facts_needed_are_those_of_the_selected_checks():
    assert cl.facts_needed(['env_file_permissions']) == ('env',)
    assert cl.facts_needed(['x509pop_cert_expiry', 'svid_valid']) == ('x509pop_cert', 'svid_files')
    assert set(cl.facts_needed()) == set(observe.FACT_NAMES) - {'checked_at', 'stack', 'options'}


@pytest.mark.parametrize('name', NAMES)
def test_each_judgement_reads_only_the_facts_it_declares(name):
    facts = load(name)['facts']
    for check_id, check in cl.CHECKS.items():
        declared = dict((k, v) for k, v in facts.items() if k in ('checked_at', 'stack', 'options') + check.facts)
        assert check.judge(declared) == check.judge(facts), check_id


def test_unknown_checks_are_refused():
    with pytest.raises(cl.ChecklistError, match='bogus'):
        cl.run(load('healthy')['facts'], ['svid_valid', 'bogus'])


# --------------------------------------------------------------------------- the runner over the fact sets

def test_every_fact_set_has_its_expectations():
    files = sorted(f[:-len('.json')] for f in os.listdir(FACT_SETS) if f.endswith('.json'))
    assert files == NAMES


@pytest.mark.parametrize('name', NAMES)
def test_a_fact_set_gives_its_full_result_list(name):
    recorded = load(name)
    assert set(recorded['facts']) == set(observe.FACT_NAMES), 'a fact set holds every fact'
    results, dummy = judge(recorded['facts'], recorded.get('rechecks') or [])
    if WRITE:
        save(name, dict(recorded, rechecks=recorded.get('rechecks') or [], results=recorded_form(results)))
        recorded = load(name)
    assert recorded_form(results) == recorded['results']
    assert [r['id'] for r in results] == list(cl.CHECK_IDS)
    for res in results:
        check = cl.CHECKS[res['id']]
        assert (res['title'], res['requires']) == (check.title, list(check.requires))
        assert res['remediation'] == (check.remediation if res['status'] in ('fail', 'warn') else '')
    expected = FACT_SET_EXPECTATIONS[name][1]
    by_id = dict((r['id'], r) for r in results)
    assert dict((k, r['status']) for k, r in by_id.items() if r['status'] != 'pass' or k in expected) == \
        dict((k, status) for k, (status, words) in expected.items())
    for check_id, (status, words) in expected.items():
        text = ' '.join(by_id[check_id]['evidence'])
        for word in words:
            assert word in text, (check_id, word, text)


@pytest.mark.parametrize('name', NAMES)
def test_a_fact_set_holds_no_secret_and_no_key(name):
    text = json.dumps(load(name))
    assert 'PRIVATE KEY' not in text
    # The file is what it claims to be: a fact set of registry1 of acme, or of the lab host it was recorded on.
    operator = lab.OPERATOR if name in MADE else 'operator%s' % name.split('_')[1].replace('host', '')
    assert operator in text


@pytest.mark.parametrize('name', MADE)
def test_a_fact_set_made_again_from_real_data_is_judged_the_same(name, tmp_path, pki):
    """The fact set gathered again by _observe from a LabHost with its fault: the gatherer still makes
    facts of the recorded shape, without the secrets, and the checks say the same."""
    host = lab.LabHost(tmp_path, pki)
    facts, rechecks = FACT_SET_EXPECTATIONS[name][0](host)
    facts = host.recorded(facts)
    rechecks = [host.recorded(again) for again in rechecks]
    text = json.dumps([facts, rechecks])
    for secret in host.secrets.values():
        assert secret not in text
    results, dummy = judge(facts, rechecks)
    if WRITE:
        save(name, dict(description=FACT_SET_EXPECTATIONS[name][0].__doc__, facts=facts, rechecks=rechecks,
                        results=recorded_form(results)))
    recorded = load(name)
    assert shape(facts) == shape(recorded['facts'])
    assert [(r['id'], r['status']) for r in results] == [(r['id'], r['status']) for r in recorded['results']]


# --------------------------------------------------------------------------- the recheck

def test_the_recheck_looks_again_until_the_new_svid_is_served():
    recorded = load('nginx_reload_in_progress')
    results, looks = judge(recorded['facts'], recorded['rechecks'])
    assert looks == [('federation_health', 'svid_files')] * 2
    served = [r for r in results if r['id'] == 'served_svid_current'][0]
    assert served['status'] == 'pass' and served['evidence'][-1] == \
        'caught a rotation in progress: nginx served the new SVID within 15 s'


def test_the_recheck_gives_up_after_the_grace_period():
    recorded = load('served_foreign_certificate')
    results, looks = judge(recorded['facts'], recorded['rechecks'])
    assert len(looks) == recorded['facts']['options']['served_svid_grace'] == 15
    facts = dict(recorded['facts'], options=dict(recorded['facts']['options'], served_svid_grace=0))
    results, looks = judge(facts, recorded['rechecks'])
    assert looks == [] and [r['status'] for r in results if r['id'] == 'served_svid_current'] == ['fail']


def test_without_regather_a_recorded_fact_set_is_judged_once():
    recorded = load('nginx_reload_in_progress')
    results = cl.run(recorded['facts'])
    served = [r for r in results if r['id'] == 'served_svid_current'][0]
    assert served['status'] == 'fail' and 'not reloaded after the rotation' in served['evidence'][0]


def test_no_recheck_for_a_certificate_that_cannot_be_compared():
    # No served certificate at all (nginx down): nothing suggests a rotation in progress.
    recorded = load('nginx_federation_stopped')
    results, looks = judge(recorded['facts'], [])
    assert looks == []


def test_a_selection_is_judged_in_the_table_order_with_its_dependencies():
    recorded = load('agent_without_an_identity')
    results, dummy = judge(recorded['facts'], [], ['cert_writer_running', 'spire_agent_healthy'])
    assert [(r['id'], r['status']) for r in results] == [('spire_agent_healthy', 'fail'), ('cert_writer_running', 'skip')]
    results, dummy = judge(recorded['facts'], [], ['cert_writer_running'])
    assert [(r['id'], r['status']) for r in results] == [('cert_writer_running', 'fail')]


def test_the_svid_key_is_judged_from_what_the_gatherer_says_of_it():
    facts = load('healthy')['facts']
    files = dict(facts['svid_files'], key=dict(present=True, matches_svid=False, error=None))
    res = cl.judge_svid_valid(dict(facts, svid_files=files))
    assert res['status'] == 'fail' and 'svid_key.pem does not belong to svid.pem' in res['evidence']
    error = 'The SVID key file svid_key.pem contains no PEM private key.'
    unreadable = dict(present=True, matches_svid=None, error=error)
    res = cl.judge_svid_valid(dict(facts, svid_files=dict(files, key=unreadable)))
    assert res['status'] == 'fail' and error in res['evidence']
    missing = dict(present=False, matches_svid=None, error=None)
    res = cl.judge_svid_valid(dict(facts, svid_files=dict(files, key=missing)))
    assert res['status'] == 'pass'


def test_served_certificate_is_compared_by_its_der(pki):
    facts = load('healthy')['facts']
    served = facts['federation_health']['served_certificate_pem']
    assert _x509.same_certificate(cl._served_der(facts['federation_health']), facts['svid_files']['svid_pem'])
    assert served.startswith('-----BEGIN CERTIFICATE-----')


@pytest.mark.parametrize('answer, status', [
    ({'exit_code': 0, 'output': ''}, 'pass'),  # CI, 2026-11-28: Docker lost the output of the exec
    ({'exit_code': 1, 'output': 'Agent is unhealthy: unable to determine health\n'}, 'fail'),
    ({'exit_code': None, 'output': 'container not running'}, 'fail'),
])
def test_the_agent_healthcheck_is_judged_by_its_exit_status(answer, status):
    facts = dict(load('lab_host7_healthy')['facts'], agent_healthcheck=answer)
    res = cl.CHECKS['spire_agent_healthy'].judge(facts)
    assert res['status'] == status, res['evidence']
