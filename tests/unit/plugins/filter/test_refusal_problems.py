# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The filter the public_proxy role judges its probes from outside with: _http_refusals, with its inputs checked."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.theprotocol.operator.plugins.filter import refusal_problems as flt
from ansible_collections.theprotocol.operator.plugins.module_utils import _http_refusals as hr


def uri(path, status, content=''):
    return dict(url='https://127.0.0.1:8443' + path, status=status, content=content, changed=False)


def test_filter_is_the_pure_judgement():
    probe = uri('/api/v1/events/', 401, '{"error": "client certificate required"}')
    assert flt.refusal_problems(probe, '403', 'allow-list', contains='federation peer not allowed') == \
        hr.refusal_problems(probe, 403, 'allow-list', contains='federation peer not allowed')
    assert flt.FilterModule().filters()['refusal_problems'](uri('/', 403, 'no'), 403, 'x', contains='no') == []


def test_filter_checks_its_inputs():
    with pytest.raises(AnsibleFilterError, match='registered result'):
        flt.refusal_problems(['not', 'a', 'register'], 403, 'x')
    with pytest.raises(AnsibleFilterError, match='HTTP status'):
        flt.refusal_problems(uri('/', 403), 'forbidden', 'x')
