#!/usr/bin/python
# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: security_checklist
short_description: Evaluate the operator guide's security checklist on a registry host in one call
version_added: 0.1.0
description:
  - Runs on the registry host and evaluates every item of the operator guide's Security Checklist, deeper than the
    guide's commands, so that a healthy-looking but broken stack does not pass.
  - Uses the Docker SDK for container state, logs, environment, image digests and the few commands that run inside
    containers (C(spire-agent healthcheck), a password check with C(psql) and C(redis-cli)); TLS probes with the Python
    C(ssl) module; plain file reads for the stack directory and the certs volume. It does not shell out per check.
  - "Checks: V(spire_agent_healthy), V(cert_writer_running), V(nginx_federation_accepting), V(svid_valid),
    V(served_svid_current), V(eventstore_writes_ok), V(mtls_enforced), V(minting_disabled),
    V(db_passwords_not_default), V(images_up_to_date), V(x509pop_cert_expiry), V(env_file_permissions),
    V(secrets_rotation_complete), V(secrets_age)."
  - V(mtls_enforced) presents, on each of the five federation endpoints, in parallel - no client certificate; a
    self-signed certificate and one from another CA (both made in-process, with the registry's SPIFFE ID); the SPIRE
    agent's own SVID (it chains to the bundle but is no registry; read from the agent's data directory,
    C(agent-data.json) and C(keys.json), and loaded into the TLS context through a private temporary directory that is
    removed at once); the legacy C(X-Federation-License) header; a forged C(X-SSL-Client-Cert) header - and each must
    be refused (401/403 or a TLS refusal), while the registry's own SVID must be accepted. The evidence lists the
    matrix; C(details.matrix) maps probe -> endpoint -> status.
  - Each result has an C(id), C(title), C(status) (V(pass), V(warn), V(fail) or V(skip)), C(evidence) and a
    C(remediation) naming the guide's step. A check whose prerequisite failed is V(skip) and names that prerequisite.
  - Findings are returned, never raised; the module fails only on unusable input or when Docker cannot be reached.
    Decide what fails the play from RV(summary) (the C(security_checklist) role has a C(fail_on) policy).
  - No secret value is ever returned. Evidence names keys and reasons only, and every secret of C(.env.operator) is
    also registered with Ansible's output masking.
author:
  - TheProtocol operator collection contributors (!UNKNOWN)
extends_documentation_fragment:
  - theprotocol.operator._attributes
  - theprotocol.operator._attributes.info_module
  - theprotocol.operator._stack
options:
  cert_writer_interval:
    description: The cert-writer fetch interval in seconds; a fetch must be logged, and the files written, within twice it.
    type: int
    default: 300
  svid_min_remaining_seconds:
    description: The registry SVID must stay valid at least this long.
    type: int
    default: 30
  served_svid_grace:
    description:
      - Seconds to keep probing when the served certificate differs from the one on the volume, so that a rotation
        caught between the cert-writer's swap and nginx's reload (the nginx image polls every few seconds) is not
        reported as a missed reload.
    type: int
    default: 15
  x509pop_warn_days:
    description: Warn when the x509pop attestation certificate expires within this many days (fail once expired).
    type: int
    default: 30
  eventstore_window:
    description: Seconds of registry log to look at for EventStore writes and 401/403 refusals.
    type: int
    default: 300
  secret_max_age_days:
    description:
      - V(secrets_age) warns when a secret of C(.env.operator) was set longer ago than this many days, or when its age is
        unknown. The dates come from the rotation journal C(<env_file>.rotation.json) (written by
        M(theprotocol.operator.operator_env) when it generates a secret and by a completed rotation).
    type: int
    default: 90
  checks:
    description: Checks to evaluate (default all). Unselected checks are not reported.
    type: list
    elements: str
notes:
  - Run with become (root). The module reads the stack directory, the certs volume and the agent's data directory.
seealso:
  - module: theprotocol.operator.svid_info
"""

EXAMPLES = r"""
- name: Evaluate the security checklist
  theprotocol.operator.security_checklist:
    registry_name: acme-registry
    operator_name: acme
    federation_port: 8443
    cert_writer_interval: 300
  become: true
  register: checklist

- name: Fail on any failed check
  ansible.builtin.assert:
    that: checklist.summary.failed | length == 0
    fail_msg: "Failed checks: {{ checklist.summary.failed | join(', ') }}"
"""

RETURN = r"""
missing_requirements:
  description:
    - Debian packages of the Python libraries the module needs and did not find on the host (the module failed).
    - The C(theprotocol.operator.security_checklist) role installs them and runs the module again.
  returned: when a requirement is missing
  type: list
  elements: str
  sample: [python3-docker]
results:
  description: One result per evaluated check, in the order of the guide.
  returned: success
  type: list
  elements: dict
  contains:
    id:
      description: Check id.
      type: str
      sample: svid_valid
    title:
      description: What the check verifies.
      type: str
      sample: Registry SVID valid (SPIFFE ID, chain to the bundle, time left)
    status:
      description: V(pass), V(warn), V(fail) or V(skip).
      type: str
      sample: pass
    evidence:
      description: Why the status is what it is; never a secret value.
      type: list
      elements: str
      sample: [SPIFFE ID spiffe://example.com/service/registry-acme]
    remediation:
      description: The guide's step to take; empty for V(pass) and V(skip).
      type: str
      sample: ''
    requires:
      description: Checks this one depends on; it is V(skip) when one of them failed.
      type: list
      elements: str
      sample: []
    details:
      description: Machine-readable facts of the check (serials, counts, remaining time).
      type: dict
      sample: {}
summary:
  description: Counts per status, the overall (worst) status and the ids of failed and warned checks.
  returned: success
  type: dict
  sample: {counts: {pass: 12, warn: 0, fail: 0, skip: 0}, status: pass, failed: [], warned: [], total: 12}
registry_name:
  description: The registry evaluated.
  returned: success
  type: str
  sample: acme-registry
checked_at:
  description: When the checks ran (UTC).
  returned: success
  type: str
  sample: '2026-06-04T12:00:00Z'
duration_seconds:
  description: How long the evaluation took.
  returned: success
  type: float
  sample: 1.2
"""

import datetime
import os
import time
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist as cl
from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist_probe as probe
from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
from ansible_collections.theprotocol.operator.plugins.module_utils import _logs
from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation
from ansible_collections.theprotocol.operator.plugins.module_utils import _rotation_journal
from ansible_collections.theprotocol.operator.plugins.module_utils import _live_auth as live_auth
from ansible_collections.theprotocol.operator.plugins.module_utils import _probe_certs as probe_certs
from ansible_collections.theprotocol.operator.plugins.module_utils import _stack as stack
from ansible_collections.theprotocol.operator.plugins.module_utils import _x509 as x509u

try:
    from docker.errors import DockerException, NotFound
except ImportError:
    pass  # reported by _stack.fail_on_missing_requirements() with the package to install

CERTS_MOUNT = '/certs'
AGENT_DATA_MOUNT = '/opt/spire/data/agent'
SECRET_HINTS = ('PASSWORD', 'SECRET', 'KEY', 'TOKEN')


class Gatherer:
    """Collects the facts each check needs, from Docker, TLS probes and files."""

    def __init__(self, module, client, now):
        self.module = module
        self.client = client
        self.params = module.params
        self.now = now
        self.prefix = module.params['registry_name']
        self.timeout = module.params['timeout']
        self._containers = {}

    def container(self, service):
        if service not in self._containers:
            name = stack.container_name(self.prefix, service)
            try:
                obj = self.client.containers.get(name)
            except NotFound:
                self._containers[service] = (None, dict(exists=False, name=name))
            else:
                attrs = obj.attrs
                env = dict(item.split('=', 1) for item in (attrs.get('Config') or {}).get('Env') or [] if '=' in item)
                state = attrs.get('State') or {}
                info = dict(exists=True, name=name, status=state.get('Status') or obj.status,
                            running=bool(state.get('Running')) and not state.get('Paused') and not state.get(
                                'Restarting'),
                            started_at=state.get('StartedAt'), health=(state.get('Health') or {}).get('Status'),
                            image_ref=(attrs.get('Config') or {}).get('Image'), image_id=attrs.get('Image'),
                            env=dict((k, env.get(k)) for k in ('MINTING_AUTHORITY', 'EVENTSTORE_MTLS_REQUIRED')),
                            mounts=dict((m.get('Destination'), m.get('Source')) for m in attrs.get('Mounts') or []))
                self._containers[service] = (obj, info)
        return self._containers[service]

    def logs(self, service, since=None, tail=None):
        obj, info = self.container(service)
        if obj is None:
            return []
        kwargs = dict(stdout=True, stderr=True, timestamps=True)
        if since is not None:
            kwargs['since'] = int(since.timestamp())
        if tail is not None:
            kwargs['tail'] = tail
        try:
            return _logs.split_docker_log(obj.logs(**kwargs))
        except DockerException:
            return []

    def exec_in(self, service, argv, environment=None):
        obj, info = self.container(service)
        if obj is None or not info['running']:
            return dict(exit_code=None, output='container not running')
        try:
            res = stack.exec_run(obj, argv, self.timeout, environment=environment, stdout=True, stderr=True)
        except stack.ExecTimeout as exc:
            return dict(exit_code=None, output=str(exc))
        except DockerException as exc:
            return dict(exit_code=None, output='exec failed: %s' % type(exc).__name__)
        return dict(exit_code=res.exit_code, output=(res.output or b'').decode('utf-8', 'replace')[-2000:])

    def volume_dir(self, service, destination, volume):
        dummy, info = self.container(service)
        source = (info.get('mounts') or {}).get(destination)
        if source:
            return source
        try:
            return self.client.volumes.get('%s_%s' % (self.prefix, volume)).attrs.get('Mountpoint')
        except DockerException:
            return None

    def image(self, service):
        dummy, info = self.container(service)
        if not info.get('exists'):
            return None
        ref = info.get('image_ref')
        out = dict(ref=ref, running_digests=[], registry_digest=None, error=None)
        repo = ref.split('@', 1)[0]
        if ':' in repo.rsplit('/', 1)[-1]:
            repo = repo.rsplit(':', 1)[0]
        try:
            image = self.client.images.get(info['image_id'])
            out['running_digests'] = [d.split('@', 1)[1] for d in image.attrs.get('RepoDigests') or []
                                      if d.split('@', 1)[0] == repo]
        except DockerException as exc:
            out['error'] = 'cannot inspect the running image (%s)' % type(exc).__name__
            return out
        try:
            out['registry_digest'] = self.client.images.get_registry_data(ref).id
        except DockerException as exc:
            out['error'] = 'cannot ask the image registry for the current digest (%s)' % (
                str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
        return out


def _db_auth(gatherer, env, key):
    """The live check of ``key`` (with its controls) through _live_auth, in the db or redis container."""
    kind = live_auth.KIND_OF_KEY[key]
    user = env.value('POSTGRES_USER') or 'postgres'

    def executor(service, argv, environment):
        res = gatherer.exec_in(service, argv, environment=environment)
        return res['exit_code'], res['output']

    return live_auth.check(executor, kind, env.value(key), user, env.value('POSTGRES_DB') or user)


def _journal(env_path):
    """``(journal, None)`` or ``(None, why it cannot be read)``."""
    try:
        return _rotation_journal.load(env_path), None
    except _rotation_journal.JournalError as exc:
        return None, str(exc)


def _redis_passwords(gatherer, env):
    """``(how many passwords Redis accepts for the stack user, None)`` or ``(None, why not known)``."""
    def executor(container, argv, environment):
        res = gatherer.exec_in(container, argv, environment=environment)
        return (125 if res['exit_code'] is None else res['exit_code']), res['output']

    live = _rotation.Live(executor, {'redis': 'redis'}, None, None)
    try:
        return len(live.redis_hashes(env.value('REDIS_PASSWORD'))), None
    except _rotation.RotationError:
        return None, 'REDIS_PASSWORD of .env.operator cannot read the ACL of the stack user (refused, or Redis down)'


def run_checks(module, client):
    params = module.params
    started = time.monotonic()
    now = datetime.datetime.now(datetime.timezone.utc)
    g = Gatherer(module, client, now)
    stack_dir = stack.stack_dir(params)
    env_path = os.path.join(stack_dir, params['env_file'])
    selected = params['checks'] or list(cl.CHECK_IDS)
    expected_id = x509u.registry_spiffe_id(params['trust_domain'], params['operator_name'])

    # Files of the stack directory.
    env_info = probe.lstat_info(env_path)
    env_data = probe.read_file(env_path)
    env = _envfile.EnvFile()
    if env_data is not None:
        try:
            env = _envfile.EnvFile.from_bytes(env_data, 'env file %s' % env_path)
        except _envfile.EnvFileError as exc:
            module.fail_json(msg=str(exc))
    secrets = [env.value(k) for k in env.keys() if any(h in k.upper() for h in SECRET_HINTS) and env.value(k)]
    module.no_log_values.update(s for s in secrets if len(s) >= 4)

    for service in cl.SERVICES:
        g.container(service)
    certs_dir = g.volume_dir('cert-writer', CERTS_MOUNT, 'certs')
    agent_dir = g.volume_dir('spire-agent', AGENT_DATA_MOUNT, 'spire-agent-data')
    svid_path = os.path.join(certs_dir, 'svid.pem') if certs_dir else None
    key_path = os.path.join(certs_dir, 'svid_key.pem') if certs_dir else None
    svid_pem = probe.read_file(svid_path) if certs_dir else None
    key_pem = probe.read_file(key_path) if certs_dir else None
    bundle_pem = probe.read_file(os.path.join(certs_dir, 'bundle.pem')) if certs_dir else None
    if not bundle_pem:
        bundle_pem = probe.read_file(os.path.join(stack_dir, 'spire', 'bundle.pem'))
    files_mtime = None
    if certs_dir:
        files_mtime = probe.mtime(os.path.join(certs_dir, '..data')) or probe.mtime(svid_path)

    host, port, timeout = params['federation_host'], params['federation_port'], params['timeout']
    no_cert = probe.tls_context()
    with_cert = None
    if svid_pem and key_pem:
        try:
            with_cert = probe.tls_context(svid_path, key_path)
        except (OSError, ValueError):
            with_cert = None
    if 'mtls_enforced' in selected:
        mtls = _mtls_probe_setup(params, expected_id, agent_dir, svid_pem, with_cert, no_cert, now)

    def c0(service):
        return g.container(service)[1]

    # Network and Docker round trips in parallel; each job only reads.
    jobs = {}
    with ThreadPoolExecutor(max_workers=12) as pool:
        def submit(name, fn, *args, **kwargs):
            jobs[name] = pool.submit(fn, *args, **kwargs)
        if 'nginx_federation_accepting' in selected or 'served_svid_current' in selected:
            submit('health', probe.https_request, host, port, 'GET', '/health', no_cert, timeout)
        if 'mtls_enforced' in selected:
            # The probe matrix: every probe on every federation endpoint, with the endpoint's method.
            for probe_id, (context, headers) in mtls['probes'].items():
                for method, path in cl.FEDERATION_ENDPOINTS:
                    body = b'{}' if method == 'POST' else None
                    sent = dict(headers, **{'Content-Type': 'application/json'}) if body else headers
                    submit('mtls %s %s %s' % (probe_id, method, path), probe.https_request, host, port, method, path,
                           context, timeout, sent, body)
        if 'spire_agent_healthy' in selected:
            submit('healthcheck', g.exec_in, 'spire-agent', ['/opt/spire/bin/spire-agent', 'healthcheck'])
            submit('agent_log', g.logs, 'spire-agent', None, 200)
        if 'spire_agent_healthy' in selected or 'cert_writer_running' in selected:
            submit('cw_log', g.logs, 'cert-writer', None, 50)
        if 'eventstore_writes_ok' in selected:
            submit('registry_log', g.logs, 'registry', now - datetime.timedelta(seconds=params['eventstore_window']))
        if 'db_passwords_not_default' in selected:
            for key in cl.DB_SECRET_KEYS:
                if env.value(key) and g.container(cl.DB_SECRET_SERVICES[key])[1].get('running'):
                    submit('auth ' + key, _db_auth, g, env, key)
        if 'secrets_rotation_complete' in selected and env.value('REDIS_PASSWORD') and c0('redis').get('running'):
            submit('redis passwords', _redis_passwords, g, env)
        if 'images_up_to_date' in selected:
            for service in cl.SERVICES:
                submit('image ' + service, g.image, service)
        done = dict((name, future.result()) for name, future in jobs.items())

    def c(service):
        return g.container(service)[1]

    results = []
    for check_id in selected:
        if check_id == 'spire_agent_healthy':
            agent_svid = None
            data = probe.read_file(os.path.join(agent_dir, 'agent-data.json')) if agent_dir else None
            if data:
                agent_svid = cl_agent_svid(data)
            res = cl.check_spire_agent_healthy(c('spire-agent'), done.get('healthcheck'), agent_svid, bundle_pem,
                                               params['trust_domain'], done.get('agent_log', []),
                                               done.get('cw_log', []), now,
                                               probe.read_file(os.path.join(stack_dir, 'spire', 'x509pop.crt')))
        elif check_id == 'cert_writer_running':
            res = cl.check_cert_writer_running(c('cert-writer'), done.get('cw_log', []), files_mtime,
                                               params['cert_writer_interval'], now)
        elif check_id == 'nginx_federation_accepting':
            res = cl.check_nginx_federation_accepting(c('nginx-federation'), done.get('health'), port)
        elif check_id == 'svid_valid':
            res = cl.check_svid_valid(svid_pem, key_pem, bundle_pem, expected_id, params['svid_min_remaining_seconds'],
                                      now)
        elif check_id == 'served_svid_current':
            health = done.get('health') or {}
            res = cl.check_served_svid_current(health.get('peer_der'), health.get('error'), svid_pem, now)
            # A rotation caught between the cert-writer's swap and nginx's reload (nginx-federation polls
            # the certs volume every few seconds): probe again for up to served_svid_grace seconds.
            deadline = time.monotonic() + params['served_svid_grace']
            while res['status'] == cl.FAIL and res['details'].get('volume_serial') and time.monotonic() < deadline:
                time.sleep(1)
                svid_now = probe.read_file(svid_path)
                again = probe.https_request(host, port, 'GET', '/health', no_cert, timeout)
                res = cl.check_served_svid_current(again.get('peer_der'), again.get('error'), svid_now, now)
                if res['status'] == cl.PASS:
                    res['evidence'].append('caught a rotation in progress: nginx served the new SVID within %d s'
                                           % params['served_svid_grace'])
        elif check_id == 'eventstore_writes_ok':
            res = cl.check_eventstore_writes_ok(c('registry'), done.get('registry_log', []),
                                                params['eventstore_window'], now)
        elif check_id == 'mtls_enforced':
            matrix = dict((probe_id, [done['mtls %s %s %s' % (probe_id, m, p)] for m, p in cl.FEDERATION_ENDPOINTS])
                          for probe_id in mtls['probes'])
            unavailable = dict(mtls['unavailable'])
            # The probes with our own SVID as client certificate only mean something when that SVID is valid.
            own = cl.check_svid_valid(svid_pem, key_pem, bundle_pem, expected_id, 0, now)
            if own['status'] != cl.PASS:
                for probe_id in ('legacy_header', 'registry_svid', 'forged_header'):
                    matrix.pop(probe_id, None)
                    unavailable[probe_id] = 'our registry SVID is not valid (see svid_valid)'
            res = cl.check_mtls_enforced(env.value('EVENTSTORE_MTLS_REQUIRED'),
                                         c('registry').get('env', {}).get('EVENTSTORE_MTLS_REQUIRED'),
                                         matrix, c('registry'), unavailable, mtls['identities'])
        elif check_id == 'minting_disabled':
            res = cl.check_minting_disabled(env.value('MINTING_AUTHORITY'),
                                            c('registry').get('env', {}).get('MINTING_AUTHORITY'), c('registry'))
        elif check_id == 'db_passwords_not_default':
            values = dict((k, env.value(k)) for k in cl.SECRET_KEYS if k in env.keys())
            live = dict((k, done['auth ' + k]) for k in cl.DB_SECRET_KEYS if 'auth ' + k in done)
            res = cl.check_db_passwords_not_default(values, live, dict((k, c(cl.DB_SECRET_SERVICES[k]))
                                                                       for k in cl.DB_SECRET_KEYS))
        elif check_id == 'images_up_to_date':
            res = cl.check_images_up_to_date(dict((s, done['image ' + s]) for s in cl.SERVICES
                                                  if done.get('image ' + s) is not None))
        elif check_id == 'x509pop_cert_expiry':
            res = cl.check_x509pop_cert_expiry(probe.read_file(os.path.join(stack_dir, 'spire', 'x509pop.crt')),
                                               params['x509pop_warn_days'], now)
        elif check_id == 'secrets_rotation_complete':
            journal, journal_error = _journal(env_path)
            why = 'Redis is not running' if env.value('REDIS_PASSWORD') else 'no REDIS_PASSWORD in .env.operator'
            count, reason = done.get('redis passwords', (None, why))
            res = cl.check_secrets_rotation_complete((journal or {}).get('rotation'), journal_error, count, reason)
        elif check_id == 'secrets_age':
            journal, journal_error = _journal(env_path)
            values = dict((k, env.value(k)) for k in cl.SECRET_KEYS if env.value(k))
            res = cl.check_secrets_age(_rotation_journal.secret_ages(journal or _rotation_journal.empty(),
                                                                     _rotation.fingerprints(values), now=now),
                                       params['secret_max_age_days'])
        else:  # env_file_permissions
            res = cl.check_env_file_permissions(env_path, env_info)
        results.append(res)
    cl.apply_dependencies(results)
    results = cl.scrub(results, secrets)
    return dict(changed=False, results=results, summary=cl.summarize(results), registry_name=params['registry_name'],
                checked_at=now.strftime('%Y-%m-%dT%H:%M:%SZ'),
                duration_seconds=round(time.monotonic() - started, 3))


def _mtls_probe_setup(params, expected_id, agent_dir, svid_pem, with_cert, no_cert, now):
    """TLS contexts and headers of the mtls_enforced probes: probe id -> (context, headers); what could
    not be made (probe id -> why) and the SPIFFE ID each certificate probe presents."""
    probes, unavailable, identities = {}, {}, {}
    probes['no_cert'] = (no_cert, {})
    for probe_id, make in (('self_signed', probe_certs.self_signed), ('foreign_ca', probe_certs.foreign_ca)):
        try:
            probes[probe_id] = (probe.tls_context_pem(*make(expected_id, now)), {})
            identities[probe_id] = expected_id
        except (probe_certs.ProbeCertError, x509u.X509Error, OSError, ValueError) as exc:
            unavailable[probe_id] = 'cannot make the certificate (%s)' % type(exc).__name__
    if agent_dir:
        try:
            chain, key, agent_id = probe_certs.agent_svid(probe.read_file(os.path.join(agent_dir, 'agent-data.json')),
                                                          probe.read_file(os.path.join(agent_dir, 'keys.json')))
            probes['non_registry'] = (probe.tls_context_pem(chain, key), {})
            identities['non_registry'] = agent_id
        except probe_certs.ProbeCertError as exc:
            unavailable['non_registry'] = str(exc)
        except (OSError, ValueError) as exc:
            unavailable['non_registry'] = 'the agent SVID cannot be loaded (%s)' % type(exc).__name__
    else:
        unavailable['non_registry'] = 'the SPIRE agent data directory was not found'
    if with_cert is not None:
        probes['legacy_header'] = (with_cert, {cl.LEGACY_HEADER: 'checklist-probe'})
        probes['registry_svid'] = (with_cert, {})
        identities['registry_svid'] = expected_id
        try:
            probes['forged_header'] = (no_cert, {'X-SSL-Client-Cert': probe_certs.escaped_header(svid_pem)})
        except (probe_certs.ProbeCertError, UnicodeDecodeError):
            unavailable['forged_header'] = 'our registry SVID file holds no PEM certificate'
    else:
        for probe_id in ('legacy_header', 'registry_svid', 'forged_header'):
            unavailable[probe_id] = 'our registry SVID or key cannot be loaded from the certs volume'
    return dict(probes=probes, unavailable=unavailable, identities=identities)


def cl_agent_svid(data):
    """PEM of the agent's own SVID from SPIRE's agent-data.json (public certificates only)."""
    import base64
    import json
    try:
        document = json.loads(data.decode('utf-8'))
        return b''.join(base64.b64decode(item) for item in document.get('svid') or [])
    except (ValueError, TypeError, AttributeError):
        return None


def main():
    module = AnsibleModule(
        argument_spec=stack.argument_spec(
            svid_min_remaining_seconds=dict(type='int', default=30),
            served_svid_grace=dict(type='int', default=15),
            x509pop_warn_days=dict(type='int', default=30),
            eventstore_window=dict(type='int', default=300),
            secret_max_age_days=dict(type='int', default=_rotation_journal.DEFAULT_MAX_AGE_DAYS, no_log=False),
            checks=dict(type='list', elements='str'),
        ),
        supports_check_mode=True,
    )
    params = module.params
    # missing_requirements: the Debian packages to install (the role installs them and runs the module again).
    stack.fail_on_missing_requirements(module, x509u.HAS_CRYPTOGRAPHY, x509u.CRYPTOGRAPHY_IMP_ERR)
    problems = stack.problems(params)
    if params['eventstore_window'] <= 0:
        problems.append('eventstore_window must be a positive number of seconds, got %d.' % params['eventstore_window'])
    for name in ('svid_min_remaining_seconds', 'x509pop_warn_days', 'secret_max_age_days'):
        if params[name] < 0:
            problems.append('%s must be 0 or more, got %d.' % (name, params[name]))
    unknown = [c for c in params['checks'] or [] if c not in cl.CHECK_IDS]
    if unknown:
        problems.append('Unknown check(s) %s; known: %s.' % (', '.join(unknown), ', '.join(cl.CHECK_IDS)))
    try:
        x509u.registry_spiffe_id(params['trust_domain'], params['operator_name'])
    except x509u.X509Error as exc:
        problems.append(str(exc))
    if problems:
        module.fail_json(msg='Invalid options: %s' % ' '.join(problems))
    client = stack.docker_client(module, params, extra_timeout=20)
    try:
        result = run_checks(module, client)
    finally:
        client.close()
    module.exit_json(**result)


if __name__ == '__main__':
    main()
