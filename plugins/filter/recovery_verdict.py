# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: recovery_verdict
short_description: Whether the restarts of an incident's recovery plan recovered the stack, and whether to escalate
version_added: 0.3.0
description:
  - Judges the result of C(theprotocol.operator.security_checklist) after the restarts against the recovery plan,
    RV(theprotocol.operator.incident_evidence#module:classification.recovery).
  - Recovered when the evidence after the restarts is healthy and every check the plan names passes (a warning
    passes; a check skipped because a prerequisite failed does not).
  - A failing check the plan does not name never holds a retry. C(images_up_to_date) and C(secrets_age) are reported
    (the incident did not cause them and a restart cannot fix them); any other one is a finding restarts cannot fix
    and is escalated after the recovery.
  - The role C(theprotocol.operator.incident_response) retries its verification until RV(_value.recovered) and
    escalates on RV(_value.escalate).
author:
  - TheProtocol operator collection contributors (!UNKNOWN)
positional: recovery, verified
options:
  _input:
    description: The registered result of C(theprotocol.operator.security_checklist) after the restarts (a failed or
      skipped run counts as not evaluated), or its C(results) list.
    type: raw
    required: true
  recovery:
    description: The recovery plan, RV(theprotocol.operator.incident_evidence#module:classification.recovery).
    type: dict
    required: true
  verified:
    description: The classification of the evidence collected after the restarts; recovered only when its category
      is V(healthy). Omit it to judge the checklist alone.
    type: dict
"""

EXAMPLES = r"""
- name: Judge the recovery
  ansible.builtin.set_fact:
    verdict: "{{ checklist_after | theprotocol.operator.recovery_verdict(evidence.classification.recovery,
      evidence_after.classification) }}"
"""

RETURN = r"""
_value:
  description: The verdict.
  type: dict
  contains:
    recovered:
      description: The evidence is healthy and every check of the plan passes.
      type: bool
      sample: true
    escalate:
      description: Not recovered, or a check restarts cannot fix fails (RV(_value.findings)).
      type: bool
      sample: false
    checks:
      description: The checks that prove the recovery (the plan's).
      type: list
      elements: str
      sample: [cert_writer_running, svid_valid, served_svid_current, eventstore_writes_ok]
    unproven:
      description: The plan's checks that do not pass, each with its status.
      type: list
      elements: str
      sample: []
    findings:
      description: Failing checks outside the plan that are escalated.
      type: list
      elements: str
      sample: []
    reported:
      description: Failing checks outside the plan that the incident did not cause and a restart cannot fix; reported,
        not escalated.
      type: list
      elements: str
      sample: [images_up_to_date]
    not_caused:
      description: The sentence for the report on RV(_value.reported); empty when there is none.
      type: str
      sample: 'not caused by this incident, not fixed by a restart (reported, not escalated): images_up_to_date'
    reason:
      description: Why it escalates; empty when it does not.
      type: str
      sample: ''
    summary:
      description: One line for the timeline and the report.
      type: str
      sample: >-
        recovered: cert_writer_running, svid_valid, served_svid_current, eventstore_writes_ok pass; not caused by this
        incident, not fixed by a restart (reported, not escalated): images_up_to_date
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.theprotocol.operator.plugins.module_utils import _incident


def recovery_verdict(checklist, recovery, verified=None):
    if not isinstance(recovery, dict) or not isinstance(recovery.get('checks'), list):
        raise AnsibleFilterError('recovery_verdict: the recovery must be classification.recovery of '
                                 'theprotocol.operator.incident_evidence, got %s.' % type(recovery).__name__)
    if verified is not None and not isinstance(verified, dict):
        raise AnsibleFilterError('recovery_verdict: verified must be a classification (a dict), got %s.'
                                 % type(verified).__name__)
    if not isinstance(checklist, (dict, list)):
        checklist = None
    return _incident.recovery_verdict(recovery, checklist, verified)


class FilterModule:
    def filters(self):
        return {'recovery_verdict': recovery_verdict}
