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


def x509pop_state(cert_pem, trust_domain, now):
    """Facts of the x509pop attestation certificate (public half only)."""
    if cert_pem is None:
        return {'present': False, 'error': 'x509pop.crt is missing in the stack directory'}
    try:
        cert = x509u.load_pem_chain(cert_pem, 'x509pop attestation certificate')[0]
    except x509u.X509Error as exc:
        return {'present': False, 'error': str(exc)}
    return {
        'present': True,
        'error': None,
        'subject': cert.subject.rfc4514_string(),
        'not_before': x509u.isoformat(x509u.not_valid_before(cert)),
        'not_after': x509u.isoformat(x509u.not_valid_after(cert)),
        'remaining_seconds': x509u.remaining_seconds(cert, now),
        'expired': x509u.is_expired(cert, now),
        'agent_spiffe_id': x509u.x509pop_agent_spiffe_id(trust_domain, cert),
    }


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

def _plan(faults):
    steps = []
    if 'spire_agent' in faults:
        steps += ['restart spire-agent', 'wait from the agent restart', 'restart cert-writer']
    elif 'cert_writer' in faults:
        steps.append('restart cert-writer')
    if 'nginx_federation' in faults:
        steps.append('restart nginx-federation')
    return steps + ['verify']


def classify(evidence):
    """Decide the incident category and the guide's steps from collected ``evidence``.

    ``evidence`` keys: ``containers`` (service -> :func:`container_facts`),
    ``agent_healthcheck`` ({'rc', 'output'} or None), ``agent_signal`` (:func:`agent_signal`),
    ``cert_writer`` (:func:`cert_writer_state`), ``svid`` (:func:`svid_state`),
    ``served`` (:func:`served_state`), ``x509pop`` (:func:`x509pop_state`),
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

    agent_says_healthy = health.get('rc') == 0 and 'Agent is healthy.' in (health.get('output') or '')
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
        if category == 'healthy':
            summary = 'Healthy: agent healthy, fresh SVID on the certs volume, nginx-federation serving it. Nothing to do.'
            actions = []
        elif category == 'local_fault':
            summary = 'Local fault (%s): the guide\'s Step 2 applies: %s.' % (', '.join(faults), ', '.join(_plan(faults)))
            actions = _plan(faults)
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
        out = {'category': category, 'faults': faults, 'actions': actions, 'escalate': escalate,
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
        reasons.append('spire-agent healthcheck: %s' % ((health.get('output') or '').strip() or 'no answer'))
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
