# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The security checklist of the operator guide: the check table and its judgements (private to this collection).

:data:`CHECKS` declares each check once, in the guide's order: its id, title, remediation, the checks
it ``requires``, the ``facts`` it reads (names of ``_observe.FACTS``), its ``judge`` and, for the one
check that may look again, a :class:`Recheck`. :func:`run` is the runner: a loop over the table that
judges the facts the ``_observe`` gatherer returned (or a fact set recorded on the lab), then applies
the dependencies.

Every ``judge_*`` function picks its facts and calls a ``check_*`` function, a pure judgement over
plain values (container states, log lines, file contents, probe outcomes) that returns one result
dict: ``id``, ``title``, ``status`` (pass / warn / fail / skip), ``evidence`` (a list of short
sentences, never a secret value), ``remediation`` (the guide's step to take).
No Ansible imports, no I/O.
"""

from __future__ import annotations

import collections
import datetime
import ssl
import time

from ansible_collections.theprotocol.operator.plugins.module_utils import _secrets
from ansible_collections.theprotocol.operator.plugins.module_utils import _stack
from ansible_collections.theprotocol.operator.plugins.module_utils import _credentials
from ansible_collections.theprotocol.operator.plugins.module_utils import _logs
from ansible_collections.theprotocol.operator.plugins.module_utils import _x509 as x509u
from ansible_collections.theprotocol.operator.plugins.module_utils._docker_time import parse_timestamp
from ansible_collections.theprotocol.operator.plugins.module_utils._stack import SERVICES

PASS, WARN, FAIL, SKIP = 'pass', 'warn', 'fail', 'skip'
STATUSES = (PASS, WARN, FAIL, SKIP)
SEVERITY = {FAIL: 0, WARN: 1, SKIP: 2, PASS: 3}
# From the credential registry: every credential, the ones checked by logging in to their server, and that server.
SECRET_KEYS = _credentials.KEYS
DB_SECRET_KEYS = _credentials.LOGIN_KEYS
DB_SECRET_SERVICES = dict((key, _credentials.get(key).server) for key in DB_SECRET_KEYS)

# The guide's "Endpoints Protected by Federation Auth".
FEDERATION_ENDPOINTS = (
    ('POST', '/api/v1/events/'),
    ('GET', '/api/v1/federation/agent-cards'),
    ('POST', '/api/v1/federation/sync-request'),
    ('POST', '/internal/federation/query'),
    ('POST', '/api/v1/cross-teg/transfer'),
)
LEGACY_HEADER = 'X-Federation-License'
REFUSED = (401, 403)
# How svid_valid names the three files of the certs volume (also in what the gatherer says about the key).
SVID_FILE_LABELS = ('SVID file svid.pem', 'SVID key file svid_key.pem', 'trust bundle bundle.pem')

# One check of the table (:data:`CHECKS`, keyed by its id): ``title``, ``remediation`` (the guide's
# step), ``requires`` (checks this one needs to be meaningful: it is skipped when one of them failed),
# ``facts`` (the names of ``_observe.FACTS`` that ``judge`` reads; the module gathers only the facts
# of the selected checks), ``judge`` (facts -> result) and ``recheck`` (a :class:`Recheck` or None).
Check = collections.namedtuple('Check', 'title remediation requires facts judge recheck', defaults=(None,))
# Judge again on fresh facts while a result may be a passing moment (the one check that re-probes:
# served_svid_current, while nginx-federation reloads a rotated SVID). While ``wanted(result)`` and for
# at most ``facts['options'][grace_option]`` seconds, the runner waits ``interval`` s, gathers the
# ``facts`` again (the gatherer's ``refresh``) and judges them; a result that passes then gets
# ``note % grace`` in its evidence.
Recheck = collections.namedtuple('Recheck', 'facts grace_option wanted note interval')


class ChecklistError(Exception):
    """Invalid input to the checklist; the message never holds a secret value."""


# --------------------------------------------------------------------------- results

def result(check_id, status, evidence, **details):
    """A result dict for ``check_id``."""
    if check_id not in CHECKS:
        raise ChecklistError('Unknown check %r.' % (check_id,))
    if status not in STATUSES:
        raise ChecklistError('Unknown status %r.' % (status,))
    title, remediation, requires = CHECKS[check_id][:3]
    if isinstance(evidence, str):
        evidence = [evidence]
    out = dict(id=check_id, title=title, status=status, evidence=list(evidence),
               remediation=remediation if status in (FAIL, WARN) else '', requires=list(requires))
    out['details'] = details
    return out


def worst(statuses):
    """The worst of ``statuses`` (fail > warn > skip > pass); pass for none."""
    statuses = list(statuses)
    return min(statuses, key=lambda s: SEVERITY[s]) if statuses else PASS


def apply_dependencies(results):
    """Turn a result into ``skip`` when a check it needs failed: the failure names the cause.

    Only the first failing prerequisite is named; the original finding is kept in
    ``details.masked``. Returns the same list.
    """
    by_id = dict((r['id'], r) for r in results)
    for res in results:
        if res['status'] == SKIP:
            continue
        failed = [dep for dep in res.get('requires', []) if by_id.get(dep, {}).get('status') == FAIL]
        if failed:
            res['details']['masked'] = dict(status=res['status'], evidence=res['evidence'])
            res['status'] = SKIP
            res['evidence'] = ['Not evaluated: it depends on %s, which failed; fix that first.' % failed[0]]
            res['remediation'] = ''
    return results


def summarize(results):
    """Counts per status, the overall status and the failing/warning ids."""
    counts = dict((s, 0) for s in STATUSES)
    for res in results:
        counts[res['status']] += 1
    return dict(counts=counts, status=worst(r['status'] for r in results),
                failed=[r['id'] for r in results if r['status'] == FAIL],
                warned=[r['id'] for r in results if r['status'] == WARN],
                total=len(results))


def scrub(value, secrets):
    """``value`` (str, list or dict, nested) with every secret string replaced by ``<redacted>``
    (those long enough to be replaced inside text: ``_secrets.substitutable``)."""
    secrets = _secrets.substitutable(secrets)
    if not secrets:
        return value

    def _one(item):
        if isinstance(item, str):
            for secret in secrets:
                item = item.replace(secret, '<redacted>')
            return item
        if isinstance(item, list):
            return [_one(x) for x in item]
        if isinstance(item, tuple):
            return tuple(_one(x) for x in item)
        if isinstance(item, dict):
            return dict((_one(k), _one(v)) for k, v in item.items())
        return item
    return _one(value)


# --------------------------------------------------------------------------- logs

def _iso(stamp):
    return stamp.astimezone(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ') if stamp else None


def _age(now, stamp):
    return int((now - stamp).total_seconds()) if stamp else None


def _container_problem(name, container):
    if not container or not container.get('exists'):
        return 'container %s does not exist' % name
    if not container.get('running'):
        return 'container %s is %s, not running' % (name, container.get('status') or 'not running')
    return None


# --------------------------------------------------------------------------- checks

def check_spire_agent_healthy(container, healthcheck, agent_svid_pem, bundle_pem, trust_domain, agent_log_lines,
                              cert_writer_lines, now, x509pop_cert_pem=None):
    """``spire-agent healthcheck`` says healthy AND the agent holds a usable identity.

    ``healthcheck`` is ``dict(exit_code, output)``; ``agent_svid_pem`` the agent's own SVID
    (from its data dir); the cert-writer log tells whether the agent issues the registry
    workload its identity (the healthcheck also reports healthy when it does not).
    """
    name = 'spire-agent'
    problem = _container_problem(name, container)
    if problem:
        return result('spire_agent_healthy', FAIL, problem.capitalize() + '.')
    evidence, failures = [], []
    healthy, said = _stack.agent_health((healthcheck or {}).get('exit_code'), (healthcheck or {}).get('output'))
    (evidence if healthy else failures).append(said)
    # Only what the running agent logged: `docker logs` keeps the lines of earlier runs of the container,
    # and a ban that the frame lifted (agent evicted, restarted, attested again) must not fail the check.
    started = parse_timestamp(container.get('started_at'))
    banned = [line for stamp, line in agent_log_lines
              if _logs.is_banned(line) and (started is None or stamp is None or stamp >= started)]
    if banned:
        failures.append('the agent log says it is banned ("Agent is banned"): the parent frame banned this agent')
    agent_id = None
    if not agent_svid_pem:
        failures.append('the agent holds no SVID of its own (none in its data directory): it is not attested')
    else:
        # A missing bundle is a chain error (the bundle "contains no PEM certificate"), not a skipped check.
        agent = x509u.svid_verdict(agent_svid_pem, bundle_pem=bundle_pem or b'', now=now,
                                   labels=('agent SVID', 'agent key', 'trust bundle'))
        if agent['error'] or agent['spiffe_id_error']:
            failures.append('the agent SVID cannot be read: %s' % (agent['error'] or agent['spiffe_id_error']))
        else:
            agent_id = agent['spiffe_id']
            if agent['trust_domain'] != trust_domain or not agent['spiffe_path'].startswith('/spire/agent/'):
                failures.append('the agent SVID carries %s, not an agent ID of trust domain %s'
                                % (agent_id, trust_domain))
            if agent['remaining_seconds'] <= 0:
                failures.append('the agent SVID %s expired at %s' % (agent_id, agent['not_after']))
            elif agent['chain_error']:
                failures.append('the agent SVID does not chain to the trust bundle: %s' % agent['chain_error'])
            else:
                evidence.append('agent SVID %s valid for %d s more, chains to the bundle'
                                % (agent_id, int(agent['remaining_seconds'])))
    if agent_id and x509pop_cert_pem:
        try:
            attestation = x509u.load_pem_chain(x509pop_cert_pem, 'x509pop certificate')[0]
            expected = x509u.x509pop_agent_spiffe_id(trust_domain, attestation)
            if expected != agent_id:
                evidence.append('note: the agent attested with another x509pop certificate than spire/x509pop.crt '
                                '(%s, the file gives %s); it uses the file at its next start' % (agent_id, expected))
        except x509u.X509Error:
            pass
    events = _logs.cert_writer_events(cert_writer_lines)
    if events and events[-1]['kind'] == 'failed' and events[-1]['no_identity']:
        failures.append('the agent issues no identity to the registry workload: the last cert-writer fetch at %s '
                        'failed with "%s" (spire-agent healthcheck still says healthy in that case)'
                        % (_iso(events[-1]['time']), events[-1]['reason'][:160]))
    elif events and events[-1]['kind'] == 'fetched':
        evidence.append('the agent issued %s to the cert-writer at %s' % (events[-1]['spiffe_id'],
                                                                          _iso(events[-1]['time'])))
    if failures:
        return result('spire_agent_healthy', FAIL, failures + evidence, agent_spiffe_id=agent_id)
    return result('spire_agent_healthy', PASS, evidence, agent_spiffe_id=agent_id)


def check_cert_writer_running(container, cert_writer_lines, files_mtime, interval, now):
    """Running, a successful fetch logged and the files on the volume written within the staleness limit
    (``_x509.is_stale``: 2x the interval)."""
    problem = _container_problem('cert-writer', container)
    if problem:
        return result('cert_writer_running', FAIL, problem.capitalize() + ': no SVID is fetched or written.')
    times = '%dx' % x509u.STALE_AFTER_INTERVALS
    events = _logs.cert_writer_events(cert_writer_lines)
    fetched = [e for e in events if e['kind'] == 'fetched']
    last = fetched[-1] if fetched else None
    evidence, failures = [], []
    if last is None or last['time'] is None:
        failures.append('no successful SVID fetch in the cert-writer log')
    else:
        age = x509u.age_seconds(last['time'], now)
        if x509u.is_stale(age, interval):
            failures.append('last successful SVID fetch %d s ago (%s), more than %s the %d s interval'
                            % (age, _iso(last['time']), times, interval))
        else:
            evidence.append('last SVID fetch %d s ago (serial %s, %s)' % (age, last['serial'], last['spiffe_id']))
    failed_after = [e for e in events if e['kind'] == 'failed' and (last is None or events.index(e) >
                                                                    events.index(last))]
    if failed_after:
        failures.append('%d fetch(es) failed since, the last: %s' % (len(failed_after), failed_after[-1]['reason'][:200]))
    if files_mtime is None:
        failures.append('no SVID files on the certs volume')
    else:
        file_age = x509u.age_seconds(files_mtime, now)
        if x509u.is_stale(file_age, interval):
            failures.append('the SVID files on the volume were written %d s ago, more than %s the %d s interval'
                            % (file_age, times, interval))
        else:
            evidence.append('SVID files written %d s ago' % file_age)
    if failures:
        return result('cert_writer_running', FAIL, failures + evidence)
    return result('cert_writer_running', PASS, evidence)


def check_nginx_federation_accepting(container, health, port):
    """``https://localhost:<port>/health`` answers 200. ``health``: dict(status) or dict(error)."""
    problem = _container_problem('nginx-federation', container)
    url = 'https://localhost:%d/health' % port
    if health and health.get('status') == 200:
        return result('nginx_federation_accepting', PASS, '%s answered 200' % url)
    if health and health.get('status') is not None:
        reason = '%s answered %s, not 200' % (url, health['status'])
    else:
        reason = '%s: %s' % (url, (health or {}).get('error') or 'no answer')
    return result('nginx_federation_accepting', FAIL, [reason] + ([problem.capitalize()] if problem else []))


def check_svid_valid(svid_pem, key_pem, bundle_pem, expected_spiffe_id, min_remaining, now, key=None):
    """The registry SVID on the volume: expected SPIFFE ID, chain to the bundle, key match, time left
    (``_x509.svid_verdict``).

    The key is ``key_pem`` (None: not checked) or, from the facts, ``key``: what the gatherer found
    of svid_key.pem (``dict(present, matches_svid, error)``, ``_observe.svid_key_facts``; the key
    itself never enters the facts).
    """
    if not svid_pem or not bundle_pem:
        return result('svid_valid', FAIL, 'SVID or trust bundle missing on the certs volume (svid.pem, bundle.pem).')
    svid = x509u.svid_verdict(svid_pem, key_pem, bundle_pem, expected_spiffe_id, min_remaining=min_remaining, now=now,
                              labels=SVID_FILE_LABELS)
    if key is not None:
        svid = dict(svid, key_matches=key.get('matches_svid'), key_error=key.get('error'))
    if svid['error'] or svid['bundle_error']:
        return result('svid_valid', FAIL, svid['error'] or svid['bundle_error'])
    failures, evidence = [], []
    spiffe_id = svid['spiffe_id']
    if svid['spiffe_id_error']:
        failures.append(svid['spiffe_id_error'])
    if spiffe_id is not None and spiffe_id != expected_spiffe_id:
        failures.append('the SVID carries %s, not %s' % (spiffe_id, expected_spiffe_id))
    elif spiffe_id:
        evidence.append('SPIFFE ID %s' % spiffe_id)
    if svid['chain_error']:
        failures.append('chain: %s' % svid['chain_error'])
    else:
        evidence.append('chain verifies against the bundle (%d CA(s))' % svid['bundle_ca_count'])
    remaining = svid['remaining_seconds']
    if remaining <= 0:
        failures.append('expired at %s' % svid['not_after'])
    elif remaining < min_remaining:
        failures.append('only %d s left, less than the %d s required' % (int(remaining), min_remaining))
    else:
        evidence.append('%d s left (not after %s)' % (int(remaining), svid['not_after']))
    if svid['key_error']:
        failures.append(svid['key_error'])
    elif svid['key_matches'] is False:
        failures.append('svid_key.pem does not belong to svid.pem')
    serial = svid['serial']
    if failures:
        return result('svid_valid', FAIL, failures + evidence, spiffe_id=spiffe_id, serial=serial,
                      remaining_seconds=remaining)
    return result('svid_valid', PASS, evidence, spiffe_id=spiffe_id, serial=serial, remaining_seconds=remaining)


def check_served_svid_current(served_der, served_error, svid_pem, now=None):
    """The leaf nginx-federation serves is the leaf on the volume (``_x509.served_verdict``: same SHA-256)."""
    if served_der is None:
        return result('served_svid_current', FAIL, 'could not get the served certificate: %s'
                      % (served_error or 'no answer'))
    if not svid_pem:
        return result('served_svid_current', FAIL, 'no svid.pem on the volume to compare with')
    served = x509u.served_verdict(served_der, svid_pem, now=now, label='SVID file svid.pem')
    if served['svid_error'] or served['error']:
        return result('served_svid_current', FAIL, served['svid_error'] or served['error'])
    served_serial, volume_serial = served['serial'], served['svid_serial']
    if served['matches_svid']:
        return result('served_svid_current', PASS, 'nginx serves the volume SVID (serial %s)' % served_serial,
                      served_serial=served_serial)
    evidence = ['nginx serves serial %s (not after %s) but the volume holds serial %s (not after %s): nginx was not '
                'reloaded after the rotation' % (served_serial, served['not_after'], volume_serial,
                                                 served['svid_not_after'])]
    if now is not None and served['expired']:
        evidence.append('the served certificate has expired')
    return result('served_svid_current', FAIL, evidence, served_serial=served_serial, volume_serial=volume_serial)


def check_eventstore_writes_ok(container, lines, window, now):
    """Successful EventStore writes and no 401/403 in the last ``window`` seconds of the registry log."""
    problem = _container_problem('registry', container)
    if problem:
        return result('eventstore_writes_ok', FAIL, problem.capitalize() + '.')
    since = now - datetime.timedelta(seconds=window)
    stats = _logs.eventstore_writes(lines, since)
    summary = '%d successful, %d refused (401/403), %d failed EventStore writes in the last %d s' % (
        stats['ok'], stats['auth_failures'], stats['other_failures'], window)
    if stats['auth_failures']:
        return result('eventstore_writes_ok', FAIL, [summary, 'last refusal at %s; e.g. "%s"' % (
            _iso(stats['last_auth_failure']), '", "'.join(stats['samples'][:2]))], **_stats_out(stats))
    started = parse_timestamp(container.get('started_at'))
    if not stats['ok'] and started is not None and started > since:
        return result('eventstore_writes_ok', WARN, [summary, 'the registry started only %d s ago, no write yet'
                                                     % _age(now, started)], **_stats_out(stats))
    if not stats['ok']:
        return result('eventstore_writes_ok', FAIL, [summary, 'no successful EventStore write in the window'
                                                     + ('; e.g. "%s"' % stats['samples'][0] if stats['samples'] else
                                                        '')], **_stats_out(stats))
    if stats['other_failures']:
        return result('eventstore_writes_ok', WARN, [summary, 'e.g. "%s"' % stats['samples'][0]],
                      **_stats_out(stats))
    return result('eventstore_writes_ok', PASS, [summary, 'last success at %s' % _iso(stats['last_ok'])],
                  **_stats_out(stats))


def _stats_out(stats):
    return dict(ok=stats['ok'], auth_failures=stats['auth_failures'], other_failures=stats['other_failures'])


# Probes of mtls_enforced, in the order of the evidence: (id, what is presented). Every probe but
# registry_svid must be refused on every federation endpoint; registry_svid must be accepted.
MTLS_PROBES = (
    ('no_cert', 'no client certificate'),
    ('self_signed', 'a self-signed certificate with the registry SPIFFE ID'),
    ('foreign_ca', 'a certificate from another CA with the registry SPIFFE ID'),
    ('non_registry', 'an SVID of the trust domain that is no registry, the SPIRE agent\'s own'),
    ('legacy_header', 'the legacy %s header (with our registry SVID)' % LEGACY_HEADER),
    ('forged_header', 'a forged X-SSL-Client-Cert header (our registry SVID) without a client certificate'),
    ('registry_svid', 'our registry SVID'),
)
MTLS_PROBE_IDS = tuple(p for p, dummy in MTLS_PROBES)
# Answered by the registry behind nginx (meaningless while the registry does not serve).
MTLS_REGISTRY_PROBES = ('legacy_header', 'registry_svid')
# Why a refusal probe that got through is a fault.
_MTLS_FAULTS = {
    'no_cert': 'nginx-federation must require a client certificate (ssl_verify_client) on every federation endpoint',
    'self_signed': 'nginx-federation must verify client certificates against the SPIRE trust bundle',
    'foreign_ca': 'nginx-federation must verify client certificates against the SPIRE trust bundle only',
    'non_registry': 'nginx-federation must let only registry SPIFFE IDs through (operator_stack_federation_allowed_'
                    'spiffe_ids; default spiffe://<trust domain>/service/registry-*)',
    'legacy_header': 'the registry must refuse %s with 403 (EVENTSTORE_MTLS_REQUIRED=true)' % LEGACY_HEADER,
    'forged_header': 'a client-sent X-SSL-Client-Cert must never count as a client certificate',
}


def _cell(probe):
    """Short text of one probe outcome: status code, TLS refusal or error."""
    if probe is None:
        return 'not probed'
    if probe.get('status') is not None:
        return str(probe['status'])
    if probe.get('tls_refused'):
        return 'TLS refused'
    return 'no answer'


def _refused(probe):
    return probe.get('status') in REFUSED or (probe.get('status') is None and bool(probe.get('tls_refused')))


def check_mtls_enforced(env_value, container_value, matrix, registry=None, unavailable=None, identities=None):
    """EVENTSTORE_MTLS_REQUIRED=true in the file and the running registry, and the probe matrix.

    ``matrix``: probe id (MTLS_PROBE_IDS) -> one outcome per FEDERATION_ENDPOINTS entry, each
    ``dict(method, path, status|error, tls_refused, reason)``; ``unavailable``: probe id -> why it was not
    made; ``identities``: probe id -> the SPIFFE ID it presented (for the evidence).
    Every probe but ``registry_svid`` must be refused (401/403 or a TLS refusal) on every endpoint;
    ``registry_svid`` must be accepted. The evidence lists the matrix.
    """
    failures, evidence, warnings = [], [], []
    matrix = dict(matrix or {})
    unavailable = dict(unavailable or {})
    identities = identities or {}
    if registry is not None and (not registry.get('running') or registry.get('health') in ('starting', 'unhealthy')):
        # The probes through to the registry cannot tell anything while it does not serve (a
        # registry that refuses its configuration starts and exits in a loop).
        for probe_id in MTLS_REGISTRY_PROBES:
            matrix.pop(probe_id, None)
            unavailable.setdefault(probe_id, 'the registry container is not serving (%s)'
                                   % (registry.get('health') or 'not running'))
    if env_value != 'true':
        failures.append('.env.operator has EVENTSTORE_MTLS_REQUIRED=%s, not true' % _show(env_value))
    if container_value != 'true':
        failures.append('the running registry container has EVENTSTORE_MTLS_REQUIRED=%s, not true'
                        % _show(container_value))
    if env_value == 'true' and container_value == 'true':
        evidence.append('EVENTSTORE_MTLS_REQUIRED=true in .env.operator and in the running registry')
    endpoints = ['%s %s' % e for e in FEDERATION_ENDPOINTS]
    evidence.append('probe matrix, endpoints in this order: %s' % ', '.join(endpoints))
    table = {}
    for probe_id, label in MTLS_PROBES:
        who = ' (%s)' % identities[probe_id] if identities.get(probe_id) else ''
        outcomes = matrix.get(probe_id)
        if outcomes is None:
            reason = unavailable.get(probe_id, 'not probed')
            evidence.append('%s%s: not probed: %s' % (label, who, reason))
            if probe_id == 'non_registry':
                warnings.append('could not present %s: %s; the SPIFFE ID allow-list was not tested'
                                % (label, reason))
            continue
        table[probe_id] = dict(('%s %s' % (o['method'], o['path']), _cell(o)) for o in outcomes)
        cells = ' '.join(_cell(o) for o in outcomes)
        if probe_id == 'registry_svid':
            bad = [o for o in outcomes if o.get('status') is None or o['status'] in REFUSED or o['status'] >= 500]
            refused = [o for o in bad if _refused(o)]
            if not bad:
                evidence.append('%s%s: %s, accepted on %d/%d' % (label, who, cells, len(outcomes), len(outcomes)))
            elif refused:
                failures.append('%s%s is refused on %s (%s): federation peers like this registry are locked out, '
                                'and the refusals above prove nothing'
                                % (label, who, ', '.join('%s %s' % (o['method'], o['path']) for o in refused),
                                   '; '.join(sorted(set(o.get('reason') or _cell(o) for o in refused)))))
            else:
                warnings.append('%s%s got no usable answer (%s), so the refusals above may not come from the '
                                'mTLS check' % (label, who, cells))
            continue
        through = [o for o in outcomes if not _refused(o) and o.get('status') is not None]
        silent = [o for o in outcomes if o.get('status') is None and not o.get('tls_refused')]
        if probe_id == 'legacy_header':
            # The guide: "DEACTIVATED -- rejected with 403".
            wrong = [o for o in outcomes if o.get('status') is not None and o['status'] != 403 and o['status'] < 500]
            through = [o for o in through if o not in wrong]
            if wrong:
                failures.append('%s answered %s on %s, not 403: %s'
                                % (label, ' '.join(sorted(set(str(o['status']) for o in wrong))),
                                   ', '.join('%s %s' % (o['method'], o['path']) for o in wrong),
                                   _MTLS_FAULTS[probe_id]))
            elif through or silent:
                warnings.append('%s got no answer on some endpoints (%s)' % (label, cells))
            else:
                evidence.append('%s: %s, refused on %d/%d' % (label, cells, len(outcomes), len(outcomes)))
            continue
        if through:
            failures.append('%s%s got through on %s (%s): %s'
                            % (label, who, ', '.join('%s %s' % (o['method'], o['path']) for o in through),
                               ' '.join(str(o['status']) for o in through), _MTLS_FAULTS[probe_id]))
        if silent:
            failures.append('%s%s: no answer on %s (%s)'
                            % (label, who, ', '.join('%s %s' % (o['method'], o['path']) for o in silent),
                               '; '.join(sorted(set(str(o.get('error')) for o in silent)))))
        if not through and not silent:
            evidence.append('%s%s: %s, refused on %d/%d' % (label, who, cells, len(outcomes), len(outcomes)))
    details = dict(matrix=table, endpoints=endpoints,
                   not_probed=dict((k, v) for k, v in unavailable.items() if k not in table))
    if failures:
        return result('mtls_enforced', FAIL, failures + evidence, **details)
    if warnings:
        return result('mtls_enforced', WARN, warnings + evidence, **details)
    return result('mtls_enforced', PASS, evidence, **details)


def _show(value):
    return 'unset' if value is None else '"%s"' % value[:40]


def check_minting_disabled(env_value, container_value, container=None):
    failures = []
    if env_value != 'disabled':
        failures.append('.env.operator has MINTING_AUTHORITY=%s, not disabled' % _show(env_value))
    if container is not None and not container.get('exists'):
        failures.append('the registry container does not exist, so its MINTING_AUTHORITY cannot be checked')
    elif container_value != 'disabled':
        failures.append('the running registry container has MINTING_AUTHORITY=%s, not disabled (it was started '
                        'with another value than .env.operator holds)' % _show(container_value))
    if failures:
        return result('minting_disabled', FAIL, failures)
    return result('minting_disabled', PASS, 'MINTING_AUTHORITY=disabled in .env.operator and in the running registry')


def credential_facts(values):
    """What the checklist needs to know of the credentials' values, without the values.

    ``values``: key -> value from .env.operator. Returns ``dict(credentials, reused)``:
    ``credentials``: key -> ``dict(set, weakness)`` for each key of :data:`SECRET_KEYS` (``weakness``:
    ``_secrets.weakness``, None when it is not weak or not set); ``reused``: the lists of keys
    that hold the same value.
    """
    credentials, seen = {}, {}
    for key in SECRET_KEYS:
        value = values.get(key)
        credentials[key] = dict(set=bool(value), weakness=_secrets.weakness(value, key) if value else None)
        if value:
            seen.setdefault(value, []).append(key)
    return dict(credentials=credentials, reused=[keys for keys in seen.values() if len(keys) > 1])


def check_db_passwords_not_default(values, live, containers=None, credentials=None):
    """``values``: key -> value from .env.operator (secrets), or ``credentials``: the
    :func:`credential_facts` of them (what the gatherer keeps); ``live``: key -> _live_auth verdict
    (dict(ok, state, reason)); ``containers``: key -> info of the server's container.

    Fails unless every key is in .env.operator, generated-looking and not reused, and its server
    runs, accepts it and refuses the controls (a random wrong password; Redis: no password).
    Evidence names keys and reasons, never values.
    """
    failures, evidence = [], []
    containers = containers or {}
    if credentials is None:
        credentials = credential_facts(values)
    facts = credentials['credentials']
    for key in SECRET_KEYS:
        if not facts[key]['set']:
            failures.append('%s is absent from .env.operator' % key)
            continue
        reason = facts[key]['weakness']
        if reason:
            failures.append('%s %s' % (key, reason))
    for keys in credentials['reused']:
        failures.append('%s hold the same value (reused)' % ' and '.join(keys))
    if not failures:
        evidence.append('%s: generated-looking, not default, not reused' % ', '.join(SECRET_KEYS))
    for key in DB_SECRET_KEYS:
        service = 'PostgreSQL' if key == 'POSTGRES_PASSWORD' else 'Redis'
        outcome = live.get(key)
        if outcome is None:
            if facts[key]['set']:
                info = containers.get(key) or {}
                state = 'does not exist' if not info.get('exists') else 'is %s' % (info.get('status') or 'not running')
                failures.append('%s cannot be checked against %s: container %s %s' % (
                    key, service, info.get('name') or DB_SECRET_SERVICES[key], state))
            continue
        if outcome.get('ok'):
            evidence.append('%s accepts %s from .env.operator and refuses a random wrong password%s' % (
                service, key, ' and no password' if key == 'REDIS_PASSWORD' else ''))
        elif outcome.get('state') == 'refused':
            failures.append('%s does not accept %s from .env.operator (%s): the running service uses another '
                            'password' % (service, key, outcome.get('reason') or 'refused'))
        else:
            failures.append('%s: %s' % (key, outcome.get('reason') or 'the live check failed'))
    if failures:
        return result('db_passwords_not_default', FAIL, failures + evidence)
    return result('db_passwords_not_default', PASS, evidence)


def check_images_up_to_date(images):
    """``images``: service -> dict(ref, running_digests, registry_digest, error)."""
    failures, evidence, warnings = [], [], []
    for service in SERVICES:
        info = images.get(service)
        if info is None:
            continue
        if info.get('error'):
            warnings.append('%s (%s): %s' % (service, info.get('ref'), info['error']))
            continue
        current = info.get('registry_digest')
        running = info.get('running_digests') or []
        if current in running:
            evidence.append('%s runs %s@%s' % (service, info.get('ref'), current[:19]))
        else:
            failures.append('%s runs %s (%s) but the registry has %s for it: a newer image was pushed'
                            % (service, info.get('ref'), ', '.join(d[:19] for d in running) or 'no digest',
                               (current or '?')[:19]))
    if failures:
        return result('images_up_to_date', FAIL, failures + warnings)
    if warnings:
        return result('images_up_to_date', WARN, warnings + evidence)
    return result('images_up_to_date', PASS, evidence or 'no service image to compare')


def check_x509pop_cert_expiry(cert_pem, warn_days, now):
    pop = x509u.x509pop_verdict(cert_pem, now=now)
    if not pop['present']:
        return result('x509pop_cert_expiry', FAIL, pop['error'])
    days = pop['remaining_seconds'] / 86400.0
    subject, not_after = pop['subject'], pop['not_after']
    if pop['not_yet_valid']:
        return result('x509pop_cert_expiry', FAIL, 'x509pop certificate %s is not valid before %s' % (
            subject, pop['not_before']), remaining_days=round(days, 1))
    if pop['expired']:
        return result('x509pop_cert_expiry', FAIL, 'x509pop certificate %s expired at %s: the agent cannot attest'
                      % (subject, not_after), remaining_days=round(days, 1))
    if days < warn_days:
        return result('x509pop_cert_expiry', WARN, 'x509pop certificate %s expires in %.1f days (%s), under the %d '
                      'days threshold' % (subject, days, not_after, warn_days), remaining_days=round(days, 1))
    return result('x509pop_cert_expiry', PASS, 'x509pop certificate %s valid for %.0f more days (until %s)'
                  % (subject, days, not_after), remaining_days=round(days, 1))


def check_env_file_permissions(path, info):
    """``info``: dict(exists, is_symlink, is_file, mode, uid, gid) of an lstat."""
    if not info or not info.get('exists'):
        return result('env_file_permissions', FAIL, '%s does not exist' % path)
    if info.get('is_symlink') or not info.get('is_file'):
        return result('env_file_permissions', FAIL, '%s is not a regular file' % path)
    mode = info['mode'] & 0o7777
    failures = []
    if mode != 0o600:
        extra = ' (readable by others)' if mode & 0o004 else (' (readable by its group)' if mode & 0o040 else '')
        failures.append('%s has mode %04o, not 0600%s' % (path, mode, extra))
    if info.get('uid') != 0:
        failures.append('%s is owned by uid %s, not root' % (path, info.get('uid')))
    if failures:
        return result('env_file_permissions', FAIL, failures)
    return result('env_file_permissions', PASS, '%s: mode 0600, owner root' % path)


def check_secrets_rotation_complete(rotation, journal_error, redis_passwords, redis_reason=None):
    """``rotation``: the last rotation of the journal (or None); ``journal_error``: why it cannot be read;
    ``redis_passwords``: how many passwords Redis accepts for the stack user (None: not known, ``redis_reason``)."""
    failures, evidence = [], []
    if journal_error:
        failures.append(journal_error)
    elif rotation and rotation.get('state') == 'in_progress':
        failures.append('an unfinished rotation of %s (started %s) stopped at step %s'
                        % (', '.join(rotation.get('keys') or []), rotation.get('started'), rotation.get('step')))
    elif rotation:
        evidence.append('last rotation %s, %s' % (rotation.get('started'), rotation.get('state')))
    else:
        evidence.append('no rotation recorded')
    if redis_passwords is None:
        if redis_reason:
            evidence.append('Redis passwords not counted: %s' % redis_reason)
    elif redis_passwords > 1 and not failures:
        failures.append('Redis accepts %d passwords for its stack user outside a rotation: an old one is still valid'
                        % redis_passwords)
    else:
        plural = '' if redis_passwords == 1 else 's'
        evidence.append('Redis accepts %d password%s for its stack user' % (redis_passwords, plural))
    if failures:
        return result('secrets_rotation_complete', FAIL, failures + evidence)
    return result('secrets_rotation_complete', PASS, evidence)


def check_secrets_age(ages, max_days):
    """``ages``: key -> dict(since, days, note) (``_rotation_journal.secret_ages``)."""
    old, unknown, evidence = [], [], []
    for key, info in sorted(ages.items()):
        if info.get('days') is None:
            unknown.append('%s: age unknown (%s)' % (key, info.get('note')))
        elif info['days'] > max_days:
            old.append('%s is %d days old (set %s), more than %d' % (key, info['days'], info['since'], max_days))
        else:
            evidence.append('%s: %d days (set %s)' % (key, info['days'], info['since']))
    known = [(info['days'], key) for key, info in ages.items() if info.get('days') is not None]
    oldest = dict(zip(('days', 'key'), max(known))) if known else None
    if old or unknown:
        return result('secrets_age', WARN, old + unknown + evidence, oldest=oldest, max_days=max_days)
    return result('secrets_age', PASS, evidence or 'no secret in .env.operator', oldest=oldest, max_days=max_days)


# --------------------------------------------------------------------------- judgements over the facts
# Each judge_<id> reads the facts its table entry names (see _observe.FACTS for their shapes) and
# calls its check_* function. The base facts (checked_at, stack, options) are always there.

def _now(facts):
    return parse_timestamp(facts['checked_at'])


def _option(facts, name):
    return facts['options'][name]


def _container(facts, service):
    return facts['containers'].get(service) or dict(exists=False, name=service)


def _log(facts, name):
    """A log fact (``docker logs --timestamps`` lines) as ``[(time, line)]``."""
    return _logs.split_docker_log('\n'.join(facts.get(name) or []))


def _served_der(health):
    """The DER of the certificate nginx-federation presented (a PEM in the facts), or None."""
    pem = (health or {}).get('served_certificate_pem')
    return ssl.PEM_cert_to_DER_cert(pem) if pem else None


def _setting(facts, key):
    return facts['env']['settings'].get(key)


def judge_spire_agent_healthy(facts):
    return check_spire_agent_healthy(_container(facts, 'spire-agent'), facts.get('agent_healthcheck'),
                                     facts.get('agent_svid'), facts['svid_files']['bundle_pem'],
                                     facts['stack']['trust_domain'], _log(facts, 'agent_log'),
                                     _log(facts, 'cert_writer_log'), _now(facts), facts.get('x509pop_cert'))


def judge_cert_writer_running(facts):
    return check_cert_writer_running(_container(facts, 'cert-writer'), _log(facts, 'cert_writer_log'),
                                     parse_timestamp(facts['svid_files']['written_at']),
                                     _option(facts, 'cert_writer_interval'), _now(facts))


def judge_nginx_federation_accepting(facts):
    return check_nginx_federation_accepting(_container(facts, 'nginx-federation'), facts.get('federation_health'),
                                            facts['stack']['federation_port'])


def judge_svid_valid(facts, min_remaining=None):
    files = facts['svid_files']
    if min_remaining is None:
        min_remaining = _option(facts, 'svid_min_remaining_seconds')
    return check_svid_valid(files['svid_pem'], None, files['bundle_pem'], facts['stack']['registry_spiffe_id'],
                            min_remaining, _now(facts), key=files['key'])


def judge_served_svid_current(facts):
    health = facts.get('federation_health') or {}
    return check_served_svid_current(_served_der(health), health.get('error'), facts['svid_files']['svid_pem'],
                                     _now(facts))


def _rotation_in_progress(res):
    """The served and the written SVID are both certificates, and differ: maybe nginx is reloading."""
    return res['status'] == FAIL and bool(res['details'].get('volume_serial'))


def judge_eventstore_writes_ok(facts):
    return check_eventstore_writes_ok(_container(facts, 'registry'), _log(facts, 'registry_log'),
                                      _option(facts, 'eventstore_window'), _now(facts))


# The probes that present our registry SVID (or its header form): they only mean something when it is valid.
_OWN_SVID_PROBES = ('legacy_header', 'registry_svid', 'forged_header')


def judge_mtls_enforced(facts):
    probes = facts['mtls_probes']
    matrix = dict(probes['matrix'])
    unavailable = dict(probes['unavailable'])
    if judge_svid_valid(facts, min_remaining=0)['status'] != PASS:
        for probe_id in _OWN_SVID_PROBES:
            matrix.pop(probe_id, None)
            unavailable[probe_id] = 'our registry SVID is not valid (see svid_valid)'
    registry = _container(facts, 'registry')
    return check_mtls_enforced(_setting(facts, 'EVENTSTORE_MTLS_REQUIRED'),
                               (registry.get('env') or {}).get('EVENTSTORE_MTLS_REQUIRED'), matrix, registry,
                               unavailable, probes['identities'])


def judge_minting_disabled(facts):
    registry = _container(facts, 'registry')
    return check_minting_disabled(_setting(facts, 'MINTING_AUTHORITY'),
                                  (registry.get('env') or {}).get('MINTING_AUTHORITY'), registry)


def judge_db_passwords_not_default(facts):
    env = facts['env']
    return check_db_passwords_not_default(None, facts.get('live_auth') or {},
                                          dict((k, _container(facts, DB_SECRET_SERVICES[k])) for k in DB_SECRET_KEYS),
                                          credentials=dict(credentials=env['credentials'], reused=env['reused']))


def judge_images_up_to_date(facts):
    return check_images_up_to_date(facts.get('images') or {})


def judge_x509pop_cert_expiry(facts):
    return check_x509pop_cert_expiry(facts.get('x509pop_cert'), _option(facts, 'x509pop_warn_days'), _now(facts))


def judge_env_file_permissions(facts):
    return check_env_file_permissions(facts['env']['path'], facts['env']['stat'])


def judge_secrets_rotation_complete(facts):
    journal, redis = facts['journal'], facts['redis_passwords']
    return check_secrets_rotation_complete(journal['rotation'], journal['error'], redis['count'], redis['reason'])


def judge_secrets_age(facts):
    return check_secrets_age(facts['journal']['secret_ages'], _option(facts, 'secret_max_age_days'))


# --------------------------------------------------------------------------- the table

_G = 'Operator guide, '
CHECKS = dict((
    ('spire_agent_healthy', Check(
        title='SPIRE agent healthy and holding a usable identity',
        remediation=_G + 'Security Incident Response, Step 2: run `docker exec <registry>-spire-agent '
        '/opt/spire/bin/spire-agent healthcheck`; if unhealthy or without an identity, `docker compose -f '
        'docker-compose.operator.yml restart spire-agent`, wait 60 s, restart cert-writer. An agent that is banned, '
        'or has no registration entry for the registry, needs the operator of the parent frame (Step 3: Escalate).',
        requires=(),
        facts=('containers', 'agent_healthcheck', 'agent_svid', 'svid_files', 'agent_log', 'cert_writer_log',
               'x509pop_cert'),
        judge=judge_spire_agent_healthy)),
    ('cert_writer_running', Check(
        title='cert-writer running and writing fresh SVIDs',
        remediation=_G + 'Security Incident Response, Step 1 (`docker logs <registry>-cert-writer --tail 50`) and '
        'Step 2: `docker compose -f docker-compose.operator.yml restart cert-writer` after the agent is healthy.',
        requires=('spire_agent_healthy',),
        facts=('containers', 'cert_writer_log', 'svid_files'),
        judge=judge_cert_writer_running)),
    ('nginx_federation_accepting', Check(
        title='nginx-federation accepting connections',
        remediation=_G + 'Security Checklist, "nginx-federation accepting connections": `curl -k https://localhost:'
        '<federation-port>/health`; check `docker logs <registry>-nginx-federation --tail 50` (Step 1) and '
        'start the service with `docker compose -f docker-compose.operator.yml up -d nginx-federation`.',
        requires=(),
        facts=('containers', 'federation_health'),
        judge=judge_nginx_federation_accepting)),
    ('svid_valid', Check(
        title='Registry SVID valid (SPIFFE ID, chain to the bundle, time left)',
        remediation=_G + 'Trust Domain (spiffe://<trust-domain>/service/registry-<operator-name>) and Security '
        'Incident Response Step 2: restart spire-agent, then cert-writer; a wrong SPIFFE ID or trust domain needs '
        'the parent frame (Step 3: Escalate).',
        requires=(),
        facts=('svid_files',),
        judge=judge_svid_valid)),
    ('served_svid_current', Check(
        title='nginx-federation serves the SVID on the volume',
        remediation=_G + 'Components, nginx-federation "reads certs from shared volume": nginx does not re-read '
        'certificates by itself; reload it (`docker exec <registry>-nginx-federation nginx -s reload`) or restart it '
        'with `docker compose -f docker-compose.operator.yml restart nginx-federation`.',
        requires=('nginx_federation_accepting', 'svid_valid'),
        facts=('federation_health', 'svid_files'),
        judge=judge_served_svid_current,
        # A rotation caught between the cert-writer's swap and nginx's reload (nginx-federation polls the
        # certs volume every few seconds): probe again for up to served_svid_grace seconds.
        recheck=Recheck(facts=('federation_health', 'svid_files'), grace_option='served_svid_grace',
                        wanted=_rotation_in_progress, interval=1,
                        note='caught a rotation in progress: nginx served the new SVID within %d s'))),
    ('eventstore_writes_ok', Check(
        title='EventStore writes succeed (no 401/403 in the window)',
        remediation=_G + 'Security Checklist, "SPIRE x509pop certs valid / auto-rotating": check registry logs for '
        '401/403 (`docker logs <registry>-registry 2>&1 | grep -i "401\\|403\\|unauthorized"`); a 403 after a valid '
        'SVID means the attestation may be revoked: contact the operator of your parent frame (SPIRE Attestation '
        'Revocation, Step 3: Escalate).',
        # A registry started with minting enabled or mTLS not required refuses to run (and so to write).
        requires=('svid_valid', 'minting_disabled', 'mtls_enforced'),
        facts=('containers', 'registry_log'),
        judge=judge_eventstore_writes_ok)),
    ('mtls_enforced', Check(
        title='mTLS enforced (EVENTSTORE_MTLS_REQUIRED; federation endpoints refuse no, untrusted and non-registry '
        'certificates, the legacy and forged headers; accept a registry SVID)',
        remediation=_G + 'Federation Authentication and Endpoints Protected by Federation Auth: set '
        'EVENTSTORE_MTLS_REQUIRED=true in .env.operator, recreate the registry (`docker compose -f '
        'docker-compose.operator.yml up -d`), and keep `ssl_verify_client` with the SPIRE bundle and the SPIFFE ID '
        'allow-list (registries only: spiffe://<trust-domain>/service/registry-*, role variable '
        'operator_stack_federation_allowed_spiffe_ids) on every federation endpoint of nginx-federation; redeploy '
        'with site.yml to restore the role\'s configuration.',
        requires=('nginx_federation_accepting',),
        facts=('env', 'containers', 'mtls_probes', 'svid_files'),
        judge=judge_mtls_enforced)),
    ('minting_disabled', Check(
        title='Minting disabled (.env.operator and running registry)',
        remediation=_G + 'Why Minting is Disabled and Security Checklist "Minting disabled": MINTING_AUTHORITY=disabled '
        'in .env.operator, then recreate the registry with `docker compose -f docker-compose.operator.yml up -d` so '
        'the running container uses it.',
        requires=(),
        facts=('env', 'containers'),
        judge=judge_minting_disabled)),
    ('db_passwords_not_default', Check(
        title='Database passwords generated, not reused, and live',
        remediation=_G + 'Security Checklist "Database passwords not default" and Secret Rotation: generate new '
        'credentials (theprotocol.operator secret rotation, which changes the live PostgreSQL/Redis credentials too; '
        'the guide\'s plain `down`/`up -d` locks the registry out of PostgreSQL).',
        requires=(),
        facts=('env', 'containers', 'live_auth'),
        judge=judge_db_passwords_not_default)),
    ('images_up_to_date', Check(
        title='Docker images up to date',
        remediation=_G + 'Security Checklist "Docker images up to date": `docker compose -f '
        'docker-compose.operator.yml pull` then `docker compose -f docker-compose.operator.yml up -d`.',
        requires=(),
        facts=('images',),
        judge=judge_images_up_to_date)),
    ('x509pop_cert_expiry', Check(
        title='x509pop attestation certificate not near expiry',
        remediation=_G + 'Overview and SPIRE Attestation Revocation: an expired x509pop certificate stops the agent at '
        'its next rotation; ask the operator of your parent frame for a new attestation certificate (onboarding) '
        'before it expires, then redeploy the stack.',
        requires=(),
        facts=('x509pop_cert',),
        judge=judge_x509pop_cert_expiry)),
    ('env_file_permissions', Check(
        title='.env.operator mode 0600, owned by root',
        remediation=_G + 'Secret Rotation (".env.operator" holds the stack secrets): `chown root:root .env.operator '
        '&& chmod 0600 .env.operator`; rotate the secrets if others could read them.',
        requires=(),
        facts=('env',),
        judge=judge_env_file_permissions)),
    ('secrets_rotation_complete', Check(
        title='No unfinished secret rotation; Redis accepts one password',
        remediation=_G + 'Secret Rotation, done live by theprotocol.operator: run `rotate_secrets.yml` with '
        '`theprotocol_rotation_action=resume` (it finishes the rotation recorded in .env.operator.rotation.json when '
        'its new values are live, rolls it back when they are not); a second Redis password outside a rotation is '
        'dropped by the next rotation, which leaves Redis exactly one.',
        requires=(),
        facts=('journal', 'redis_passwords'),
        judge=judge_secrets_rotation_complete)),
    ('secrets_age', Check(
        title='Secrets rotated within the maximum age',
        remediation=_G + 'Secret Rotation: rotate the secrets with theprotocol.operator\'s `rotate_secrets.yml` (live, '
        'verified, rolled back on failure); it records each new value\'s date in .env.operator.rotation.json.',
        requires=(),
        facts=('journal',),
        judge=judge_secrets_age)),
))
CHECK_IDS = tuple(CHECKS)


# --------------------------------------------------------------------------- the runner

def facts_needed(selected=None):
    """The names of the facts the checks ``selected`` (default: all) read, in the table's order."""
    out = []
    for check_id in selected or CHECK_IDS:
        for name in CHECKS[check_id].facts:
            if name not in out:
                out.append(name)
    return tuple(out)


def run(facts, selected=None, regather=None, sleep=time.sleep, clock=time.monotonic):
    """The checklist over ``facts`` (``_observe``): one result per selected check, in the table's order,
    with the dependencies applied (:func:`apply_dependencies`).

    ``regather(names)`` returns those facts gathered again (the gatherer's ``refresh``); without it,
    a check with a :class:`Recheck` is judged once (a recorded fact set). ``sleep`` and ``clock`` are
    the waiting of the recheck.
    """
    unknown = [c for c in selected or () if c not in CHECKS]
    if unknown:
        raise ChecklistError('Unknown check(s) %s.' % ', '.join(unknown))
    results = []
    for check_id, check in CHECKS.items():
        if selected is not None and check_id not in selected:
            continue
        res = check.judge(facts)
        if check.recheck is not None and regather is not None:
            res = _recheck(check, res, facts, regather, sleep, clock)
        results.append(res)
    return apply_dependencies(results)


def _recheck(check, res, facts, regather, sleep, clock):
    recheck = check.recheck
    grace = _option(facts, recheck.grace_option)
    deadline = clock() + grace
    while recheck.wanted(res) and clock() < deadline:
        sleep(recheck.interval)
        again = dict(facts)
        again.update(regather(recheck.facts))
        res = check.judge(again)
        if res['status'] == PASS:
            res['evidence'].append(recheck.note % grace)
    return res
