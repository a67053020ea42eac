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
  - No secret value is ever returned. Evidence names keys and reasons only. Every value of C(.env.operator) whose key
    is not one of the stack's public settings is a secret; it is replaced by C(<redacted>) wherever it appears in
    the results, and registered with Ansible's output masking (from 8 characters, well-known defaults aside).
  - The module gathers, once, the facts that the selected checks read (container states, logs, certificates, probes)
    and judges them; O(return_facts) returns those facts too, without any secret value.
author:
  - TheProtocol operator collection contributors (!UNKNOWN)
extends_documentation_fragment:
  - theprotocol.operator._attributes
  - theprotocol.operator._attributes.info_module
  - theprotocol.operator._stack
  - theprotocol.operator._checklist
options:
  cert_writer_interval:
    description: The cert-writer fetch interval in seconds; a fetch must be logged, and the files written, within twice it.
    type: int
    default: 300
  checks:
    description:
      - Checks to evaluate (default all). Unselected checks are not reported, and the facts only they read are not
        gathered.
    type: list
    elements: str
  return_facts:
    description:
      - Also return RV(facts), the facts the checks were judged on, with every secret value removed. A fact set
        recorded on a stack this way can be judged again by the collection's unit tests (see C(CONTRIBUTING.md),
        "Add a checklist item").
    type: bool
    default: false
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
facts:
  description:
    - The facts the checks were judged on, gathered once; the base facts C(checked_at), C(stack), C(options), C(env)
      and C(containers), and those the selected checks read (C(agent_healthcheck), C(agent_svid), C(agent_log),
      C(cert_writer_log), C(registry_log), C(svid_files), C(x509pop_cert), C(federation_health), C(mtls_probes),
      C(live_auth), C(redis_passwords), C(images), C(journal)).
    - Plain JSON values; times in RFC 3339, certificates as PEM, logs as the lines of C(docker logs --timestamps).
    - No secret value. The credentials appear as whether they are set, why they are weak, which share a value and
      their ages; the SVID key as whether it belongs to the SVID; a secret value inside the text read from the
      stack (logs, command output) is replaced by C(<redacted>).
  returned: when O(return_facts=true)
  type: dict
  sample:
    checked_at: '2026-06-04T12:00:00.000000Z'
    stack: {registry_name: acme-registry, operator_name: acme, trust_domain: example.com}
    options: {cert_writer_interval: 300, eventstore_window: 300}
    x509pop_cert: "-----BEGIN CERTIFICATE-----..."
"""

import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.theprotocol.operator.plugins.module_utils import _observe as observe
from ansible_collections.theprotocol.operator.plugins.module_utils import _stack as stack
from ansible_collections.theprotocol.operator.plugins.module_utils import _x509 as x509u


def run_checks(module, client):
    """Gather the facts of the selected checks once (_observe), judge them (_checklist.run)."""
    params = module.params
    started = time.monotonic()
    gatherer = observe.Gatherer(client, params)
    try:
        # The secret set first: Ansible masks it in everything the module prints from now on.
        out, facts = observe.checklist(gatherer, params['checks'], no_log_values=module.no_log_values)
    except observe.ObserveError as exc:
        module.fail_json(msg=str(exc))
    out.update(changed=False, duration_seconds=round(time.monotonic() - started, 3))
    if params['return_facts']:
        out['facts'] = facts
    return out


def main():
    module = AnsibleModule(
        argument_spec=stack.argument_spec(
            checks=dict(type='list', elements='str'),
            return_facts=dict(type='bool', default=False),
            **observe.CHECKLIST_ARGUMENT_SPEC
        ),
        supports_check_mode=True,
    )
    params = module.params
    # missing_requirements: the Debian packages to install (the role installs them and runs the module again).
    stack.fail_on_missing_requirements(module, x509u.HAS_CRYPTOGRAPHY, x509u.CRYPTOGRAPHY_IMP_ERR)
    problems = stack.problems(params) + observe.checklist_problems(params, params['checks'])
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
