# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Incident evidence and classification for the guide's "Security Incident Response".

Pure functions; no Ansible and no Docker imports.  The module ``incident_evidence``
gathers raw facts (container state, logs, certificate files, a TLS probe) and hands
them to :func:`classify`, which decides what kind of incident it is and which of
the guide's steps apply:

* ``revoked``            the parent frame banned the agent or refuses its attestation;
* ``x509pop_expired``    the x509pop attestation certificate has expired;
* ``server_unreachable`` the agent cannot reach the parent frame's SPIRE server;
* ``local_fault``        a local component is down or stale (restarts fix it);
* ``healthy``            nothing to do.

Revocation, an expired attestation certificate and an unreachable server are not
fixed by restarts: the plan for them is escalation only.

:class:`Redactor` (from ``_redact``) removes every secret value of ``.env.operator`` and of its
backups, URL user info, known header and parameter names and env-like assignments from anything
collected, so evidence can leave the host.
"""

from __future__ import annotations

import datetime
import re

from ansible_collections.theprotocol.operator.plugins.module_utils import _logs
from ansible_collections.theprotocol.operator.plugins.module_utils import _redact
from ansible_collections.theprotocol.operator.plugins.module_utils import _stack
from ansible_collections.theprotocol.operator.plugins.module_utils import _x509 as x509u
from ansible_collections.theprotocol.operator.plugins.module_utils._docker_time import isoformat_ms as isoformat, parse_timestamp

REDACTED = _redact.REDACTED

# The one masking rule (_secrets, through _redact): every env value whose key is not in
# PUBLIC_ENV_KEYS is a secret; one shorter than MIN_SUBSTITUTION_LENGTH is not replaced inside text.
PUBLIC_ENV_KEYS = _redact.PUBLIC_ENV_KEYS
MIN_SUBSTITUTION_LENGTH = _redact.MIN_SUBSTITUTION_LENGTH

CATEGORIES = ('revoked', 'x509pop_expired', 'server_unreachable', 'local_fault', 'healthy')
FAULTS = ('spire_agent', 'cert_writer', 'nginx_federation')

GUIDE_ESCALATION = ('Operator guide, Security Incident Response, Step 3: escalate to the operator of your parent '
                    'frame (security@example.com) with the container logs, your operator name, your registry DID '
                    'and the timestamp of the issue.')

# What the SPIRE agent (v1.13) logs; the latest matching line of its log decides.
AGENT_SIGNALS = (
    ('banned', _logs.BANNED_RE),
    ('x509pop_expired', re.compile(r'certificate has expired|certificate is expired|expired or is not yet valid', re.I)),
    ('unreachable', re.compile(
        r'connection refused|no route to host|i/o timeout|network is unreachable|no such host|'
        r'code = Unavailable|Error while dialing|context deadline exceeded|connection reset', re.I)),
    ('attestation_refused', re.compile(
        r'(?:attest|attestation)[^\n]*(?:PermissionDenied|permission denied|not authorized|unauthenticated|'
        r'refused|rejected|no such node|agent is not attested)', re.I)),
    ('ok', re.compile(r'Node attestation was successful|Starting Workload and SDS APIs|'
                      r'Renewing X509-SVID|Creating X509-SVID|Successfully rotated agent SVID|X509-SVID (?:was )?renewed',
                      re.I)),
)


class IncidentError(Exception):
    """Unusable input; the message never holds a secret value."""


# --------------------------------------------------------------------------- time

def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


# --------------------------------------------------------------------------- redaction

def secret_values(envfile, public_keys=PUBLIC_ENV_KEYS):
    """Every value of a parsed ``.env.operator`` (an ``_envfile.EnvFile``) except the public ones."""
    return _redact.secret_values(envfile, public_keys)


def env_file_secrets(path, public_keys=PUBLIC_ENV_KEYS):
    """``(values, files)``: the secret values of ``.env.operator`` at ``path`` and of every backup of it."""
    return _redact.env_file_secrets(path, public_keys)


# One redaction for all evidence: see _redact (env values and backups, URL user info, header and
# parameter names, Redis AUTH forms, private keys).
Redactor = _redact.Redactor


# --------------------------------------------------------------------------- logs

def split_log(raw, redactor=None):
    """Docker log output with timestamps (``docker logs -t``) as ``[{'ts', 'line'}]`` (``_logs.split_log``),
    redacted by ``redactor`` (by default a :class:`Redactor` without env values)."""
    return _logs.split_log(raw, redactor or Redactor())


def auth_failures(lines, limit=20):
    """The guide's ``grep -i "401\\|403\\|unauthorized" | tail -20`` on split log lines (``_logs.is_auth_failure``)."""
    return [entry for entry in lines if _logs.is_auth_failure(entry['line'])][-limit:] if limit > 0 else []


def agent_signal(lines):
    """The latest line of the agent log that tells its state: ``{'signal', 'ts', 'line'}`` or None."""
    for entry in reversed(lines):
        for name, pattern in AGENT_SIGNALS:
            if pattern.search(entry['line']):
                return {'signal': name, 'ts': entry['ts'], 'line': entry['line']}
    return None


def cert_writer_state(lines):
    """Last successful fetch and whether the fetches since then failed (and why), from split log lines."""
    last_fetch = None
    failures_after = []
    for event in _logs.cert_writer_events((entry['ts'], entry['line']) for entry in lines):
        if event['kind'] == 'fetched':
            last_fetch = event
            failures_after = []
        else:
            failures_after.append(event)
    return {
        'last_fetch_at': last_fetch['time'] if last_fetch else None,
        'failures_since_last_fetch': len(failures_after),
        'last_failure': {'ts': failures_after[-1]['time'], 'line': failures_after[-1]['line']} if failures_after else None,
        'no_identity': any(e['no_identity'] for e in failures_after),
    }


# --------------------------------------------------------------------------- containers

def container_facts(attrs, image_attrs=None):
    """Public facts of a container from ``docker inspect`` data (never its environment)."""
    if not attrs:
        return {'exists': False, 'status': 'missing', 'running': False, 'health': None}
    state = attrs.get('State') or {}
    health = (state.get('Health') or {}).get('Status')
    image_attrs = image_attrs or {}
    return {
        'exists': True,
        'name': (attrs.get('Name') or '').lstrip('/'),
        'id': (attrs.get('Id') or '')[:12],
        'status': state.get('Status'),
        'running': bool(state.get('Running')),
        'restarting': bool(state.get('Restarting')),
        'health': health,
        'exit_code': state.get('ExitCode'),
        'oom_killed': bool(state.get('OOMKilled')),
        'error': state.get('Error') or '',
        'started_at': isoformat(parse_timestamp(state.get('StartedAt'))),
        'finished_at': isoformat(parse_timestamp(state.get('FinishedAt'))),
        'restart_count': attrs.get('RestartCount', 0),
        'image': (attrs.get('Config') or {}).get('Image'),
        'image_id': attrs.get('Image'),
        'image_digests': list(image_attrs.get('RepoDigests') or []),
        'image_created': image_attrs.get('Created'),
    }


def container_ok(facts):
    """Running, and healthy when it has a healthcheck (a starting healthcheck counts as not yet ok)."""
    return bool(facts and facts.get('running') and not facts.get('restarting')
                and facts.get('health') in (None, 'healthy'))


# --------------------------------------------------------------------------- certificates

def svid_state(svid_pem, expected_spiffe_id, written_at, interval, now, error=None):
    """State of the SVID files on the certs volume (public facts only; the key is never read), from
    ``_x509.svid_verdict``.

    ``written_at`` is when cert-writer switched ``..data`` to the current set. The SVID is
    stale when it has expired, or when no set was written for ``_x509.STALE_AFTER_INTERVALS``
    fetch intervals (cert-writer writes every interval, the guide's 300 s).
    """
    out = {'present': False, 'error': error, 'spiffe_id': None, 'spiffe_id_matches': None, 'not_before': None,
           'not_after': None, 'remaining_seconds': None, 'expired': None, 'written_at': isoformat(written_at),
           'age_seconds': None, 'stale': True, 'sha256_fingerprint': None, 'serial': None}
    if svid_pem is None:
        out['error'] = error or 'svid.pem is missing on the certs volume'
        return out
    svid = x509u.svid_verdict(svid_pem, expected_spiffe_id=expected_spiffe_id or None, written_at=written_at,
                              interval=interval, now=now)
    if svid['error']:
        out['error'] = svid['error']
        return out
    out.update({
        'present': True,
        # An SVID whose SPIFFE ID is invalid still shows the one it carries.
        'spiffe_id': svid['spiffe_id'] or svid['certificate']['spiffe_id'],
        'spiffe_id_matches': svid['spiffe_id_matches'],
        'not_before': svid['not_before'],
        'not_after': svid['not_after'],
        'remaining_seconds': svid['remaining_seconds'],
        'expired': svid['expired'],
        'age_seconds': svid['age_seconds'],
        'stale': svid['stale'],
        'sha256_fingerprint': svid['sha256_fingerprint'],
        'serial': svid['serial'],
    })
    return out


def served_state(served_der, svid, error=None):
    """Whether nginx-federation serves the SVID that is on the certs volume (``_x509.served_verdict``)."""
    if served_der is None:
        return {'reachable': False, 'error': error, 'sha256_fingerprint': None, 'matches_svid': None}
    served = x509u.served_verdict(served_der, svid_sha256=svid.get('sha256_fingerprint') if svid.get('present') else None)
    if served['error']:
        return {'reachable': True, 'error': served['error'], 'sha256_fingerprint': None, 'matches_svid': False}
    return {
        'reachable': True,
        'error': None,
        'sha256_fingerprint': served['sha256_fingerprint'],
        'not_after': served['not_after'],
        'matches_svid': served['matches_svid'],
    }


# --------------------------------------------------------------------------- classification

# The guide's Step 2 as data. Per fault, the steps that recover it, in order: action (restart, wait or
# verify), compose service, what the operator is shown, and the checks of the security checklist
# (_checklist.CHECKS) that prove the step. The guide: "restart the SPIRE agent ... Then wait 60 seconds
# and restart cert-writer"; the wait is counted from the agent's restart (RESTART_WAIT, or the
# ``restart_wait`` the caller gives). A step two faults share runs once (an agent fault restarts
# cert-writer too). roles/incident_response/tasks/recover.yml runs these steps, nothing else.
RESTART_WAIT = 60
# A fresh SVID written, served, and accepted by the EventStore (the guide's checklist: "x509pop certs valid /
# auto-rotating: successful EventStore writes"); nginx-federation back, serving it, with mTLS enforced.
_WRITER_PROOF = ('cert_writer_running', 'svid_valid', 'served_svid_current', 'eventstore_writes_ok')
_NGINX_PROOF = ('nginx_federation_accepting', 'served_svid_current', 'mtls_enforced')
RECOVERY_STEPS = {
    'spire_agent': (
        ('restart', 'spire-agent', 'restart spire-agent', ('spire_agent_healthy',)),
        ('wait', 'spire-agent', 'wait from the agent restart', ()),
        ('restart', 'cert-writer', 'restart cert-writer', _WRITER_PROOF),
    ),
    'cert_writer': (
        ('restart', 'cert-writer', 'restart cert-writer', _WRITER_PROOF),
    ),
    'nginx_federation': (
        ('restart', 'nginx-federation', 'restart nginx-federation', _NGINX_PROOF),
    ),
}
# Failing checks outside the plan's that the incident did not cause, that no restart fixes and that expose
# nothing: reported with the recovery, neither waited for nor escalated. Any other failing check outside
# the plan's (.env.operator readable by others, minting enabled, a default password, ...) is a finding
# restarts cannot fix: escalated after the recovery, without waiting for it.
REPORTED_CHECKS = ('images_up_to_date', 'secrets_age')
NOT_CAUSED = 'not caused by this incident, not fixed by a restart'
_PROVEN = ('pass', 'warn')


def recovery_plan(faults, restart_wait=None):
    """``{'steps', 'checks'}`` for the local ``faults``: the ordered steps (``action``, ``service``,
    ``wait`` seconds counted from the restart of ``service``, ``checks``, ``text``), ending with a
    ``verify`` step, and the checks that prove the whole recovery. No faults: no steps."""
    wait = RESTART_WAIT if restart_wait is None else int(restart_wait)
    steps, seen, checks = [], set(), []
    for fault in [f for f in FAULTS if f in faults]:
        for action, service, text, proof in RECOVERY_STEPS[fault]:
            if (action, service) in seen:
                continue
            seen.add((action, service))
            steps.append({'action': action, 'service': service, 'wait': wait if action == 'wait' else 0,
                          'checks': list(proof), 'text': text})
            checks.extend(c for c in proof if c not in checks)
    if steps:
        steps.append({'action': 'verify', 'service': None, 'wait': 0, 'checks': list(checks), 'text': 'verify'})
    return {'steps': steps, 'checks': checks}


def recovery_verdict(recovery, checklist, verified=None):
    """Whether the restarts of ``recovery`` (:func:`recovery_plan`) recovered the stack, and whether to escalate.

    ``checklist``: the ``security_checklist`` result after the restarts (or its ``results`` list; None or
    without results when it did not run). ``verified``: the classification of the evidence collected after
    the restarts (None: not considered). Recovered when that evidence is healthy and every check the plan
    names passes (a warning passes; a skip because a prerequisite failed does not). Escalate when not
    recovered, or when a check outside the plan fails that is not one of ``REPORTED_CHECKS``; those are
    reported only.
    """
    proof = list((recovery or {}).get('checks') or [])
    results = checklist.get('results') if isinstance(checklist, dict) else checklist
    status = dict((r.get('id'), r.get('status')) for r in (results or []) if isinstance(r, dict))
    failing = [c for c, s in status.items() if s == 'fail' and c not in proof]
    reported = [c for c in failing if c in REPORTED_CHECKS]
    findings = [c for c in failing if c not in REPORTED_CHECKS]
    unproven = ['%s (%s)' % (c, status.get(c) or 'not evaluated') for c in proof if status.get(c) not in _PROVEN]
    if verified is not None and verified.get('category') != 'healthy':
        why = 'the evidence after the restarts is %s, not healthy' % (verified.get('category') or 'not collected')
    elif not status:
        why = 'the security checklist did not run after the restarts'
    elif unproven:
        why = 'the checks that prove it do not pass: %s' % ', '.join(unproven)
    else:
        why = ''
    recovered = not why
    not_caused = '%s (reported, not escalated): %s' % (NOT_CAUSED, ', '.join(reported)) if reported else ''
    parts = ['recovered: %s pass' % ', '.join(proof) if recovered else 'not recovered: ' + why]
    if findings:
        parts.append('failing, not fixed by a restart (escalated): %s' % ', '.join(findings))
    if not_caused:
        parts.append(not_caused)
    if not recovered:
        reason = 'not recovered after the restarts'
    elif findings:
        reason = 'recovered, but failing checks that restarts cannot fix: %s' % ', '.join(findings)
    else:
        reason = ''
    return {'recovered': recovered, 'escalate': bool(not recovered or findings), 'checks': proof, 'unproven': unproven,
            'findings': findings, 'reported': reported, 'not_caused': not_caused, 'reason': reason,
            'summary': '; '.join(parts)}


def classify(evidence, restart_wait=None):
    """Decide the incident category and the guide's steps from collected ``evidence``.

    The steps are ``recovery`` (:func:`recovery_plan`, with the wait of ``restart_wait`` seconds, default
    ``RESTART_WAIT``); ``actions`` is their text, what the operator is shown.

    ``evidence`` keys: ``containers`` (service -> :func:`container_facts`),
    ``agent_healthcheck`` ({'rc', 'output'} or None), ``agent_signal`` (:func:`agent_signal`),
    ``cert_writer`` (:func:`cert_writer_state`), ``svid`` (:func:`svid_state`),
    ``served`` (:func:`served_state`), ``x509pop`` (:func:`_x509.x509pop_verdict`),
    ``server_reachable`` (bool or None).
    """
    containers = evidence.get('containers') or {}
    agent = containers.get('spire-agent') or {}
    writer = containers.get('cert-writer') or {}
    nginx = containers.get('nginx-federation') or {}
    health = evidence.get('agent_healthcheck') or {}
    signal = evidence.get('agent_signal') or {}
    writer_log = evidence.get('cert_writer') or {}
    svid = evidence.get('svid') or {}
    served = evidence.get('served') or {}
    pop = evidence.get('x509pop') or {}
    reasons = []

    agent_says_healthy, agent_said = _stack.agent_health(health.get('rc'), health.get('output'))
    # The healthcheck answer now is authoritative; Docker's health status lags behind it.
    agent_running = bool(agent.get('running') and not agent.get('restarting'))
    agent_ok = agent_running and agent_says_healthy
    identity_ok = bool(svid.get('present') and not svid.get('stale') and svid.get('spiffe_id_matches') is not False)
    # A cert-writer whose Docker healthcheck has not run yet is fine once it wrote a set after its start.
    written_since_start = bool(svid.get('written_at') and writer.get('started_at')
                               and svid['written_at'] >= writer['started_at'])
    writer_ok = container_ok(writer) or bool(
        writer.get('running') and not writer.get('restarting') and writer.get('health') == 'starting'
        and identity_ok and written_since_start)

    def result(category, faults=(), extra=None):
        faults = [f for f in FAULTS if f in faults]
        escalate = category in ('revoked', 'x509pop_expired', 'server_unreachable')
        recovery = recovery_plan(faults if category == 'local_fault' else (), restart_wait)
        actions = [step['text'] for step in recovery['steps']]
        if category == 'healthy':
            summary = 'Healthy: agent healthy, fresh SVID on the certs volume, nginx-federation serving it. Nothing to do.'
        elif category == 'local_fault':
            summary = 'Local fault (%s): the guide\'s Step 2 applies: %s.' % (', '.join(faults), ', '.join(actions))
        else:
            summary = {
                'revoked': 'The parent frame banned this agent or refuses its attestation: restarts cannot fix it. '
                           'Contact the operator of your parent frame (the guide: attestation revoked).',
                'x509pop_expired': 'The x509pop attestation certificate expired at %s: the agent cannot attest again '
                                   'until the parent frame issues a new one. Restarts cannot fix it.'
                                   % pop.get('not_after'),
                'server_unreachable': 'The SPIRE agent cannot reach the parent frame\'s SPIRE server: restarts of the '
                                      'stack cannot fix it. Check the network path, then contact the parent frame.',
            }[category]
            actions = ['escalate']
        out = {'category': category, 'faults': faults, 'actions': actions, 'recovery': recovery, 'escalate': escalate,
               'restart': category == 'local_fault', 'summary': summary, 'reasons': reasons,
               'guide': GUIDE_ESCALATION if escalate else ''}
        out.update(extra or {})
        return out

    usable = agent_ok and identity_ok
    # 1. Ban: the agent's latest word, whatever its container state.
    if signal.get('signal') == 'banned' and not usable:
        reasons.append('spire-agent log at %s: %s' % (signal.get('ts'), signal.get('line')))
        return result('revoked')
    # 2. Expired attestation certificate (from the file itself, or the agent's log).
    if pop.get('expired') or (signal.get('signal') == 'x509pop_expired' and not usable):
        if pop.get('expired'):
            reasons.append('x509pop.crt expired at %s (agent %s)' % (pop.get('not_after'), pop.get('agent_spiffe_id')))
        if signal.get('signal') == 'x509pop_expired':
            reasons.append('spire-agent log at %s: %s' % (signal.get('ts'), signal.get('line')))
        return result('x509pop_expired')
    # Attestation refused for another reason (revoked attestation).
    if signal.get('signal') == 'attestation_refused' and not usable:
        reasons.append('spire-agent log at %s: %s' % (signal.get('ts'), signal.get('line')))
        return result('revoked')
    # 3. Server unreachable (and the agent has no usable identity because of it).
    unreachable = signal.get('signal') == 'unreachable' or evidence.get('server_reachable') is False
    if unreachable and not usable:
        if evidence.get('server_reachable') is False:
            reasons.append('the SPIRE server %s does not accept TCP connections from this host'
                           % evidence.get('server_endpoint'))
        if signal.get('signal') == 'unreachable':
            reasons.append('spire-agent log at %s: %s' % (signal.get('ts'), signal.get('line')))
        if evidence.get('server_reachable') is False or not agent_ok:
            return result('server_unreachable')

    # 4. Local faults.
    faults = set()
    if not agent.get('exists', True) or not agent_running:
        faults.add('spire_agent')
        reasons.append('spire-agent container %s (health %s, exit code %s)'
                       % (agent.get('status'), agent.get('health'), agent.get('exit_code')))
    elif not agent_says_healthy:
        faults.add('spire_agent')
        reasons.append(agent_said)
    if not writer_ok:
        faults.add('cert_writer')
        reasons.append('cert-writer container %s (health %s, exit code %s)'
                       % (writer.get('status'), writer.get('health'), writer.get('exit_code')))
    if not identity_ok:
        if svid.get('error'):
            reasons.append('SVID: %s' % svid['error'])
        elif svid.get('spiffe_id_matches') is False:
            reasons.append('SVID carries %s, not the registry SPIFFE ID' % svid.get('spiffe_id'))
        else:
            reasons.append('SVID stale: written %s (%s s ago), not after %s'
                           % (svid.get('written_at'), svid.get('age_seconds'), svid.get('not_after')))
        if writer_log.get('no_identity') or (agent_says_healthy and writer_log.get('failures_since_last_fetch')):
            # Healthy agent without an identity for the registry (the healthcheck does not tell).
            faults.add('spire_agent')
            last = writer_log.get('last_failure') or {}
            reasons.append('cert-writer fetches fail (%s since the last good one), last: %s'
                           % (writer_log.get('failures_since_last_fetch'), last.get('line')))
        elif 'spire_agent' not in faults:
            faults.add('cert_writer')
    if not container_ok(nginx):
        faults.add('nginx_federation')
        reasons.append('nginx-federation container %s (health %s)' % (nginx.get('status'), nginx.get('health')))
    elif served.get('matches_svid') is False and identity_ok:
        faults.add('nginx_federation')
        reasons.append('nginx-federation serves certificate %s, not the SVID on the certs volume (%s)'
                       % (served.get('sha256_fingerprint'), svid.get('sha256_fingerprint')))
    elif served.get('reachable') is False:
        faults.add('nginx_federation')
        reasons.append('nginx-federation does not answer TLS: %s' % served.get('error'))
    if faults:
        return result('local_fault', faults)
    return result('healthy')
