# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The filter the incident_response role judges its recovery with, over checklist results of _checklist's own
judgements (a newer image in the registry, as on the lab in issue 14)."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.theprotocol.operator.plugins.filter import recovery_verdict as flt
from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist as cl
from ansible_collections.theprotocol.operator.plugins.module_utils import _incident as inc


def checklist_result(*judged):
    by_id = dict((r['id'], r) for r in judged)
    results = cl.apply_dependencies([by_id.get(c) or cl.result(c, cl.PASS, 'passed on the lab') for c in cl.CHECK_IDS])
    return dict(changed=False, attempts=1, results=results, summary=cl.summarize(results), checked_at='2026-11-25T21:00:00Z')


def test_filter_is_the_pure_verdict():
    newer = cl.check_images_up_to_date(dict(db=dict(ref='postgres:15', running_digests=['sha256:' + 'a' * 64],
                                                    registry_digest='sha256:' + 'c' * 64)))
    plan = inc.recovery_plan(['spire_agent'])
    after = checklist_result(newer)
    verdict = flt.recovery_verdict(after, plan, {'category': 'healthy'})
    assert verdict == inc.recovery_verdict(plan, after, {'category': 'healthy'})
    assert verdict['recovered'] and not verdict['escalate'] and verdict['reported'] == ['images_up_to_date']
    # The task that did not run (verification unhealthy): registered as skipped.
    assert flt.recovery_verdict({'skipped': True}, plan, {'category': 'local_fault'})['escalate']
    assert flt.FilterModule().filters()['recovery_verdict'] is flt.recovery_verdict


@pytest.mark.parametrize('recovery, verified, message', [
    (None, None, 'the recovery must be classification.recovery'),
    ({'steps': []}, None, 'the recovery must be classification.recovery'),
    ({'steps': [], 'checks': []}, 'healthy', 'verified must be a classification'),
])
def test_filter_errors(recovery, verified, message):
    with pytest.raises(AnsibleFilterError, match=message):
        flt.recovery_verdict({}, recovery, verified)
