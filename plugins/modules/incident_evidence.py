#!/usr/bin/python
# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: incident_evidence
short_description: Collect redacted incident evidence from an operator stack and classify the incident
version_added: 0.1.0
description:
  - Step 1 (Identify) of the operator guide's Security Incident Response, on the registry host, with timestamps
    on every line. Collects the last O(log_lines) lines of the C(cert-writer) and C(nginx-federation) logs, the
    registry's last O(auth_failure_lines) lines matching C(401|403|unauthorized), the last O(agent_log_lines) lines
    of the C(spire-agent) log, the answer of C(spire-agent healthcheck), the state, start time and image digests of
    every container of the stack, the SVID on the certs volume, the certificate that nginx-federation serves and the
    x509pop attestation certificate.
  - Classifies the incident (RV(classification.category)) before anything acts on it. V(revoked) (the agent is banned
    or its attestation is refused), V(x509pop_expired) and V(server_unreachable) are not fixed by restarts and call for
    escalation to the parent frame. V(local_fault) lists the faulty components in RV(classification.faults) and the
    guide's Step 2 actions in RV(classification.actions). V(healthy) means there is nothing to do.
  - The recovery plan is data, RV(classification.recovery), the ordered steps (restart, wait, verify) that the
    C(theprotocol.operator.incident_response) role runs, so the plan shown is the plan run, with the security
    checklist checks that prove the recovery. The filter C(theprotocol.operator.recovery_verdict) judges the
    checklist after the restarts against it.
  - Never collects a secret. The SVID key and the x509pop key are never read, container environments are not
    collected. One secret set is removed from every collected line, namely every value of the env file and of each of its
    backups (C(<env_file>.<stamp>.bak); old passwords stay in logs after a rotation), except public settings such as
    C(OPERATOR_NAME) and C(REGISTRY_DID). Whatever has the shape of a credential goes too, such as URL user info
    (C(redis://:password@host), C(https://user:token@host)), known headers and parameters (the C(X-Internal-Key) and
    C(Authorization) headers, C(password=value), a JSON C("token") member), Redis C(AUTH value), C(requirepass) and
    C(ACL SETUSER >password), env-like assignments of secret-looking names and PEM private keys. The secret values are
    registered with Ansible's output masking.
  - Uses the Docker SDK for Python; no shell commands.
author:
  - TheProtocol operator collection contributors (!UNKNOWN)
extends_documentation_fragment:
  - theprotocol.operator._attributes
  - theprotocol.operator._attributes.info_module
  - theprotocol.operator._stack
  - theprotocol.operator._checklist
options:
  env_file:
    description: Env file name in O(stack_dir); its secret values and those of its backups are redacted from everything
      collected.
    type: str
    default: .env.operator
  certs_volume:
    description: Docker volume that cert-writer writes to. Defaults to C(<registry_name>_certs).
    type: str
  cert_writer_interval:
    description: The cert-writer fetch interval in seconds. The SVID is stale when it has expired or no set was written
      for twice this (the rule of cert-writer's own healthcheck and of M(theprotocol.operator.security_checklist)).
    type: int
    default: 300
  log_lines:
    description: Lines of the cert-writer and nginx-federation logs (the guide's C(--tail 50)).
    type: int
    default: 50
  auth_failure_lines:
    description: Registry log lines matching C(401|403|unauthorized) to keep (the guide's C(tail -20)).
    type: int
    default: 20
  registry_scan_lines:
    description: How many of the latest registry log lines are searched for authentication failures.
    type: int
    default: 5000
  agent_log_lines:
    description: Lines of the spire-agent log.
    type: int
    default: 200
  restart_wait:
    description:
      - Seconds, counted from the spire-agent restart, before cert-writer is restarted, the C(wait) of the V(wait) step
        in RV(classification.recovery). Without it, the guide's 60 s.
    type: int
  checklist:
    description:
      - Also evaluate the security checklist (every check of M(theprotocol.operator.security_checklist), with the
        thresholds below) and return it as RV(checklist), from the same observation of the stack. The containers are
        inspected once for both, and the C(spire-agent healthcheck) runs once; the evidence and the checklist cannot
        disagree because they looked at different moments. The guide's Step 1 in one call.
    type: bool
    default: false
    version_added: 0.3.0
notes:
  - Run with become (root) on the registry host; the module reads the stack directory and the certs volume.
  - Timestamps are ISO-8601 UTC with milliseconds, for example V(2026-06-04T12:00:00.000Z).
seealso:
  - module: theprotocol.operator.svid_info
"""

EXAMPLES = r"""
- name: Identify (the guide's Step 1) and classify
  theprotocol.operator.incident_evidence:
    registry_name: acme-registry
    operator_name: acme
  become: true
  register: evidence

- name: Show the classification
  ansible.builtin.debug:
    msg: "{{ evidence.classification.category }}: {{ evidence.classification.summary }}"
"""

RETURN = r"""
collected_at:
  description: When the collection started.
  returned: success
  type: str
  sample: '2026-06-04T12:00:00.000Z'
classification:
  description: What kind of incident this is and what the guide says to do.
  returned: success
  type: dict
  contains:
    category:
      description: V(revoked), V(x509pop_expired), V(server_unreachable), V(local_fault) or V(healthy).
      type: str
    faults:
      description: Faulty components of a V(local_fault) (V(spire_agent), V(cert_writer), V(nginx_federation)).
      type: list
      elements: str
    actions:
      description: The planned steps, in order, as the operator is shown them (the C(text) of each step of
        RV(classification.recovery.steps)), or V(escalate).
      type: list
      elements: str
      sample: [restart spire-agent, wait from the agent restart, restart cert-writer, verify]
    recovery:
      description: The recovery plan of a V(local_fault) as data; empty lists for every other category.
      type: dict
      contains:
        steps:
          description:
            - The steps in order, each with C(action) (V(restart), V(wait) or V(verify)), C(service) (the compose
              service; V(null) for V(verify)), C(wait) (seconds counted from the restart of C(service); the
              guide's 60 s on the V(wait) step, 0 on the others), C(checks) (the security checklist checks that prove
              the step; on V(verify) all of RV(classification.recovery.checks)) and C(text) (what the operator is
              shown).
          type: list
          elements: dict
          sample:
            - {action: restart, service: spire-agent, wait: 0, checks: [spire_agent_healthy], text: restart spire-agent}
            - {action: wait, service: spire-agent, wait: 60, checks: [], text: wait from the agent restart}
            - {action: restart, service: cert-writer, wait: 0, checks: [cert_writer_running, svid_valid,
               served_svid_current, eventstore_writes_ok], text: restart cert-writer}
            - {action: verify, service: null, wait: 0, checks: [spire_agent_healthy, cert_writer_running, svid_valid,
               served_svid_current, eventstore_writes_ok], text: verify}
        checks:
          description:
            - The security checklist checks that prove this recovery. The verification waits for these only.
            - Another failing check is either reported, not escalated (C(images_up_to_date) and C(secrets_age), which
              the incident did not cause and a restart cannot fix), or escalated after the recovery (a finding
              restarts cannot fix, such as C(env_file_permissions)).
          type: list
          elements: str
          sample: [spire_agent_healthy, cert_writer_running, svid_valid, served_svid_current, eventstore_writes_ok]
    restart:
      description: Whether restarts apply (only for V(local_fault)).
      type: bool
    escalate:
      description: Whether this goes straight to escalation.
      type: bool
    summary:
      description: One sentence for the operator.
      type: str
    reasons:
      description: The evidence the decision rests on.
      type: list
      elements: str
    guide:
      description: The guide's escalation instruction when RV(classification.escalate) is true.
      type: str
containers:
  description: Per service, public container facts (status, health, exit code, start and finish times, restart count,
    image, image id and digests). Never the environment.
  returned: success
  type: dict
logs:
  description: Per service (V(cert-writer), V(nginx-federation), V(spire-agent)), redacted log lines C({ts, line}).
  returned: success
  type: dict
auth_failures:
  description: The registry's last 401/403/unauthorized lines, redacted, C({ts, line}).
  returned: success
  type: list
  elements: dict
agent_healthcheck:
  description: C(rc) and C(output) of C(spire-agent healthcheck); V(null) when the agent is not running.
  returned: success
  type: dict
agent_signal:
  description: The latest agent log line that tells its state (C(signal) V(banned), V(attestation_refused),
    V(x509pop_expired), V(unreachable) or V(ok)).
  returned: success
  type: dict
cert_writer:
  description: Last successful fetch time and failures since then, from the cert-writer log.
  returned: success
  type: dict
svid:
  description: The SVID on the certs volume (SPIFFE ID, validity, when it was written, whether it is stale).
  returned: success
  type: dict
served:
  description: The certificate nginx-federation serves and whether it is the SVID on the certs volume.
  returned: success
  type: dict
x509pop:
  description:
    - The x509pop attestation certificate, read as the checklist reads it (C(_x509.x509pop_verdict)).
    - C(present), C(error), C(subject), C(not_before), C(not_after), C(remaining_seconds), C(expired),
      C(not_yet_valid), and C(agent_spiffe_id), the ID the agent gets when it attests with it.
  returned: success
  type: dict
  sample:
    present: true
    error: null
    subject: CN=registry1.operator1.example.com
    not_before: "2026-11-27T10:00:00Z"
    not_after: "2027-11-27T10:00:00Z"
    remaining_seconds: 31449600
    expired: false
    not_yet_valid: false
    agent_spiffe_id: spiffe://example.com/spire/agent/x509pop/1ad7290f48e13f05733e322e99503c8b58d64f63
server_endpoint:
  description: The SPIRE server address and port from agent.conf.
  returned: success
  type: str
server_reachable:
  description: Whether a TCP connection to RV(server_endpoint) succeeds from the host (V(null) when unknown).
  returned: success
  type: bool
registry_spiffe_id:
  description: The SPIFFE ID the SVID must carry.
  returned: success
  type: str
versions:
  description: Docker engine and spire-agent versions.
  returned: success
  type: dict
checklist:
  description:
    - The security checklist of the stack, as M(theprotocol.operator.security_checklist) returns it (C(results),
      C(summary), C(registry_name), C(checked_at)), judged on the same observation as the evidence.
    - When the checklist could not run, C(error) says why (the evidence is still collected).
  returned: when O(checklist=true)
  type: dict
  version_added: 0.3.0
  sample:
    registry_name: registry1
    checked_at: "2026-11-28T05:40:00Z"
    summary: {status: pass, failed: [], warned: [], total: 14, counts: {pass: 14, warn: 0, fail: 0, skip: 0}}
    results:
      - {id: spire_agent_healthy, status: pass, title: SPIRE agent healthy and holding a usable identity}
redacted_values:
  description: How many distinct secret values of the env file and its backups were registered for redaction (never
    the values).
  returned: success
  type: int
redaction_env_files:
  description: How many files the secret set was read from (the env file and each C(<env_file>.<stamp>.bak) backup).
  returned: success
  type: int
"""

import os
import re
import socket
import ssl

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
from ansible_collections.theprotocol.operator.plugins.module_utils import _incident as inc
from ansible_collections.theprotocol.operator.plugins.module_utils import _observe as observe
from ansible_collections.theprotocol.operator.plugins.module_utils import _stack as stack
from ansible_collections.theprotocol.operator.plugins.module_utils import _x509 as x509u

try:
    import docker
    import docker.errors
except ImportError:
    pass  # reported by _stack.fail_on_missing_requirements() with the package to install

_CONF_RE = re.compile(r'^\s*(server_address|server_port)\s*=\s*"?([^"\s]+)"?', re.M)


def _read(path, limit=1024 * 1024):
    try:
        with open(path, 'rb') as handle:
            return handle.read(limit)
    except (IOError, OSError):
        return None


def _served_der(host, port, timeout):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with context.wrap_socket(sock, server_hostname=host) as tls:
                return tls.getpeercert(binary_form=True), None
    except (OSError, ssl.SSLError) as exc:
        return None, str(exc)


def _tcp_ok(host, port, timeout):
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def collect(module, client):
    params = module.params
    registry = params['registry_name']
    stack_dir = stack.stack_dir(params)
    now = inc.utcnow()
    # One secret set: the current .env.operator and every backup of it (old passwords stay in logs).
    secrets, env_files = inc.env_file_secrets(os.path.join(stack_dir, params['env_file']))
    module.no_log_values.update(s for s in secrets if s)
    redactor = inc.Redactor(secrets)
    expected_id = x509u.registry_spiffe_id(params['trust_domain'], params['operator_name'])

    # One observation for the evidence and the checklist: the gatherer inspects each container once and runs the
    # agent healthcheck once; the evidence takes both from it.
    gatherer = observe.Gatherer(client, params, now=now)
    checklist, gathered = None, {}
    if params['checklist']:
        try:
            checklist, gathered = observe.checklist(gatherer, no_log_values=module.no_log_values)
        except Exception as exc:  # pylint: disable=broad-except
            # The evidence is what step 1 must deliver (an incident is often a broken host): the checklist's
            # failure is recorded, as the role did when the checklist was a task of its own.
            checklist = dict(error=redactor.text('the security checklist could not run: %s: %s'
                                                 % (type(exc).__name__, str(exc).splitlines()[0][:300] if str(exc)
                                                    else '')))

    containers, handles = {}, {}
    for service in stack.SERVICES:
        container = gatherer.container(service)[0]
        if container is None:
            containers[service] = inc.container_facts(None)
            handles[service] = None
            continue
        try:
            image_attrs = client.images.get(container.attrs.get('Image')).attrs
        except docker.errors.APIError:
            image_attrs = None
        containers[service] = inc.container_facts(container.attrs, image_attrs)
        handles[service] = container

    def log_of(service, tail, fact=None):
        # A log the gatherer read for the checklist (the same tail) is not read again. The checklist's facts
        # hold no read error, so an empty one is asked again (cheap when empty), to say why it is empty.
        lines = gathered.get(fact) if fact else None
        if not lines:
            lines, error = gatherer.log_read(service, tail=tail)
            if error:
                return [{'ts': None, 'line': 'cannot read the log: %s' % redactor.text(error)}]
        return inc.split_log('\n'.join(lines).encode('utf-8'), redactor)

    logs = {
        'cert-writer': log_of('cert-writer', params['log_lines'], 'cert_writer_log'),
        'nginx-federation': log_of('nginx-federation', params['log_lines']),
        'spire-agent': log_of('spire-agent', params['agent_log_lines'], 'agent_log'),
    }
    registry_lines = log_of('registry', params['registry_scan_lines'])
    auth = inc.auth_failures(registry_lines, params['auth_failure_lines'])

    healthcheck, agent_version = None, None
    agent = handles['spire-agent']
    if agent is not None and containers['spire-agent']['running']:
        try:
            answer = gathered.get('agent_healthcheck') or gatherer.exec_in('spire-agent', list(stack.AGENT_HEALTHCHECK))
            healthcheck = {'rc': answer['exit_code'], 'output': redactor.text(answer['output'] or '').strip(),
                           'at': inc.isoformat(inc.utcnow())}
            res = stack.exec_run(agent, ['/opt/spire/bin/spire-agent', '--version'], params['timeout'],
                                 read_only=True)
            agent_version = res.output.decode('utf-8', 'replace').strip() or None
        except (docker.errors.APIError, stack.ExecTimeout) as exc:
            if healthcheck is None:
                healthcheck = {'rc': None, 'output': redactor.text(str(exc)), 'at': inc.isoformat(inc.utcnow())}

    volume = params['certs_volume'] or '%s_certs' % registry
    svid_pem, written_at, svid_error = None, None, None
    try:
        mountpoint = client.volumes.get(volume).attrs.get('Mountpoint')
    except docker.errors.NotFound:
        mountpoint, svid_error = None, 'the certs volume %s does not exist' % volume
    if mountpoint:
        svid_pem = _read(os.path.join(mountpoint, 'svid.pem'))
        try:
            written_at = inc.datetime.datetime.fromtimestamp(os.stat(os.path.join(mountpoint, '..data')).st_mtime,
                                                             inc.datetime.timezone.utc)
        except OSError:
            written_at = None
    svid = inc.svid_state(svid_pem, expected_id, written_at, params['cert_writer_interval'], now, svid_error)

    served_der, served_error = _served_der(params['federation_host'], params['federation_port'], params['timeout'])
    served = inc.served_state(served_der, svid, served_error)

    pop = x509u.x509pop_verdict(_read(os.path.join(stack_dir, 'spire', 'x509pop.crt')), params['trust_domain'], now)

    conf_text = (_read(os.path.join(stack_dir, 'spire', 'agent.conf')) or b'').decode('utf-8', 'replace')
    conf = dict(_CONF_RE.findall(conf_text))
    endpoint, reachable = None, None
    if conf.get('server_address'):
        endpoint = '%s:%s' % (conf['server_address'], conf.get('server_port', '8081'))
        reachable = _tcp_ok(conf['server_address'], conf.get('server_port', '8081'), params['timeout'])

    try:
        engine = client.version()
        versions = {'docker_engine': engine.get('Version'), 'docker_api': engine.get('ApiVersion')}
    except docker.errors.APIError:
        versions = {'docker_engine': None, 'docker_api': None}
    versions['spire_agent'] = agent_version
    versions['docker_sdk'] = getattr(docker, '__version__', None)

    evidence = {
        'collected_at': inc.isoformat(now),
        'registry_name': registry,
        'operator_name': params['operator_name'],
        'registry_spiffe_id': expected_id,
        'stack_dir': stack_dir,
        'containers': containers,
        'logs': logs,
        'auth_failures': auth,
        'agent_healthcheck': healthcheck,
        'agent_signal': inc.agent_signal(logs['spire-agent']),
        'cert_writer': inc.cert_writer_state(logs['cert-writer']),
        'svid': svid,
        'served': served,
        'x509pop': pop,
        'server_endpoint': endpoint,
        'server_reachable': reachable,
        'versions': versions,
    }
    evidence['classification'] = inc.classify(evidence, params['restart_wait'])
    if checklist is not None:
        evidence['checklist'] = checklist
    evidence = redactor.data(evidence)
    evidence['redacted_values'] = len(secrets)
    evidence['redaction_env_files'] = env_files
    return evidence


def main():
    module = AnsibleModule(
        argument_spec=stack.argument_spec(
            certs_volume=dict(type='str'),
            log_lines=dict(type='int', default=50),
            auth_failure_lines=dict(type='int', default=20),
            registry_scan_lines=dict(type='int', default=5000),
            agent_log_lines=dict(type='int', default=200),
            restart_wait=dict(type='int'),
            checklist=dict(type='bool', default=False),
            **observe.CHECKLIST_ARGUMENT_SPEC
        ),
        supports_check_mode=True,
    )
    stack.fail_on_missing_requirements(module, x509u.HAS_CRYPTOGRAPHY, x509u.CRYPTOGRAPHY_IMP_ERR)
    params = module.params
    problems = stack.problems(params)
    for key in ('log_lines', 'auth_failure_lines', 'registry_scan_lines', 'agent_log_lines'):
        if params[key] < 1:
            problems.append('%s must be 1 or more, got %d.' % (key, params[key]))
    if params['restart_wait'] is not None and params['restart_wait'] < 0:
        problems.append('restart_wait must be 0 or more, got %d.' % params['restart_wait'])
    if params['checklist']:
        problems.extend(observe.checklist_problems(params))
    try:
        x509u.validate_trust_domain(params['trust_domain'])
        x509u.validate_operator_name(params['operator_name'])
    except x509u.X509Error as exc:
        problems.append(str(exc))
    if problems:
        module.fail_json(msg='Invalid options: %s' % ' '.join(problems))
    # The checklist's registry lookups (images_up_to_date) get the security_checklist module's extra time.
    client = stack.docker_client(module, params, extra_timeout=20 if params['checklist'] else 0)
    try:
        result = collect(module, client)
    except (x509u.X509Error, _envfile.EnvFileError, inc.IncidentError) as exc:
        module.fail_json(msg=str(exc))
    finally:
        client.close()
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
