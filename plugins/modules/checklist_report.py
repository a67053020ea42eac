#!/usr/bin/python
# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Documentation only: the work is done by the action plugin plugins/action/checklist_report.py on the controller.

from __future__ import annotations


DOCUMENTATION = r"""
module: checklist_report
short_description: Write security checklist reports (JSON, JUnit XML, Markdown) for hosts and for the fleet
version_added: 0.1.0
description:
  - Runs on the controller only, in one task for the whole run (use it with C(run_once)); nothing is sent to the hosts.
  - Reads the registered result of M(theprotocol.operator.security_checklist) of every host in O(hosts) from
    C(hostvars) and writes, in O(dest), C(<host>.json), C(<host>.xml) and C(<host>.md) per host and C(fleet.json),
    C(fleet.xml) and C(fleet.md) over all of them, failing hosts first. A host without a result (it failed or was
    unreachable before the check) is reported as C(error).
  - Each file is written atomically and only when its content differs. The reports are output of the run, not a
    change of the managed hosts, so the task never reports C(changed), and it writes them in check mode too.
  - The module results carry no secret (the module redacts its evidence), so neither do the reports.
author:
  - TheProtocol operator collection contributors (!UNKNOWN)
extends_documentation_fragment:
  - theprotocol.operator._attributes
attributes:
  check_mode:
    support: full
    details:
      - Writes the reports in check mode too; they live on the controller.
  diff_mode:
    support: none
  idempotent:
    support: full
    details:
      - Never reports a change; unchanged files are not rewritten.
  action:
    support: full
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
options:
  dest:
    description: Report directory on the controller; created (mode 0755) when missing.
    type: path
    required: true
  hosts:
    description: Inventory hostnames to report on, usually C(ansible_play_hosts_all).
    type: list
    elements: str
    required: true
  result_var:
    description: Name of the variable each host registered the M(theprotocol.operator.security_checklist) result in.
    type: str
    default: security_checklist_result
  pending:
    description:
      - Hosts that a serial rollout has not reached yet (usually C(ansible_play_hosts) minus C(ansible_play_batch)).
        Without a result they are reported as C(pending), not C(error), and get no host report.
    type: list
    elements: str
    default: []
  registry_names:
    description: Host -> registry name, used for hosts without a result.
    type: dict
    default: {}
  host_reports:
    description: Write the per-host reports.
    type: bool
    default: true
  fleet_report:
    description: Write the fleet reports.
    type: bool
    default: true
seealso:
  - module: theprotocol.operator.security_checklist
"""

EXAMPLES = r"""
- name: Evaluate the checklist on every registry host
  theprotocol.operator.security_checklist:
    registry_name: registry1
    operator_name: acme
  register: security_checklist_result

- name: Write the reports of all hosts of the play in one task
  theprotocol.operator.checklist_report:
    dest: /var/tmp/reports
    hosts: "{{ ansible_play_hosts_all }}"
  run_once: true
  register: checklist_report

- name: Print the fleet table
  ansible.builtin.debug:
    msg: "{{ checklist_report.table }}"
  run_once: true
"""

RETURN = r"""
dest:
  description: The report directory.
  returned: success
  type: str
  sample: /var/tmp/reports
files:
  description: Every report file name of the run.
  returned: success
  type: list
  elements: str
  sample: [fleet.json, fleet.md, fleet.xml, host1.json, host1.md, host1.xml]
written:
  description: The files whose content changed and were written.
  returned: success
  type: list
  elements: str
  sample: [fleet.json, host1.json]
table:
  description: The fleet table (Markdown), one line per item, failing hosts first.
  returned: success
  type: list
  elements: str
  sample: ["| host | registry | overall | spire_agent_healthy |", "|---|---|---|---|", "| host1 | registry1 | PASS | ok |"]
failing_hosts:
  description: Hosts with a failed check or without a result.
  returned: success
  type: list
  elements: str
  sample: []
warning_hosts:
  description: Hosts whose worst check is a warning.
  returned: success
  type: list
  elements: str
  sample: [host2]
pending_hosts:
  description: Hosts of O(pending) without a result yet.
  returned: success
  type: list
  elements: str
  sample: [host3, host4]
"""
