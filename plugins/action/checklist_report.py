# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Action plugin of theprotocol.operator.checklist_report: runs on the controller only (no module is sent)."""

from __future__ import annotations

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.action import ActionBase

from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist_report as report

ARGUMENT_SPEC = dict(
    dest=dict(type='path', required=True),
    hosts=dict(type='list', elements='str', required=True),
    result_var=dict(type='str', default='security_checklist_result'),
    registry_names=dict(type='dict', default={}),
    pending=dict(type='list', elements='str', default=[]),
    host_reports=dict(type='bool', default=True),
    fleet_report=dict(type='bool', default=True),
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        super().run(tmp, task_vars)
        validated = ArgumentSpecValidator(ARGUMENT_SPEC).validate(self._task.args)
        if validated.error_messages:
            raise AnsibleActionFail('checklist_report: %s' % '; '.join(validated.error_messages))
        args = validated.validated_parameters
        hostvars = (task_vars or {}).get('hostvars', {})
        results = {}
        for host in args['hosts']:
            found = hostvars[host].get(args['result_var']) if host in hostvars else None
            results[host] = found if isinstance(found, dict) else None
        rows = report.rows(results, args['registry_names'], set(args['pending']))
        docs = report.documents(rows, args['host_reports'], args['fleet_report'])
        try:
            # Reports are output of the run, written in check mode too; they never count as a change.
            written = report.write_reports(args['dest'], docs)
        except OSError as exc:
            raise AnsibleActionFail('checklist_report: cannot write the reports to %s: %s. Set a writable '
                                    'directory (security_checklist_report_dir).' % (args['dest'], to_native(exc)))
        return dict(changed=False, dest=args['dest'], files=sorted(docs), written=written,
                    table=report.fleet_table(rows),
                    failing_hosts=[r['host'] for r in rows if r['status'] in ('fail', 'error')],
                    warning_hosts=[r['host'] for r in rows if r['status'] == 'warn'],
                    pending_hosts=[r['host'] for r in rows if r['status'] == report.PENDING])
