# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist as cl
from ansible_collections.theprotocol.operator.plugins.modules import security_checklist

BASE = dict(registry_name='registry1', operator_name='operator1')


def run_main(capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            security_checklist.main()
    return info.value.code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize('extra, words', [
    (dict(federation_port=0), 'federation_port must be a TCP port'),
    (dict(cert_writer_interval=0), 'cert_writer_interval must be a positive'),
    (dict(x509pop_warn_days=-1), 'x509pop_warn_days must be 0 or more'),
    (dict(checks=['svid_valid', 'bogus']), 'Unknown check(s) bogus'),
    (dict(operator_name='Bad_Name'), 'operator name'),
    (dict(stack_dir='relative/dir'), 'stack_dir must be an absolute path'),
])
def test_bad_options_fail_before_anything(capsys, extra, words):
    code, out = run_main(capsys, dict(BASE, docker_host='unix:///nonexistent.sock', **extra))
    assert code == 1 and out['failed'] and words in out['msg']


def test_unreachable_docker_is_a_clear_error(capsys, tmp_path):
    code, out = run_main(capsys, dict(BASE, docker_host='unix://%s/none.sock' % tmp_path))
    assert code == 1 and 'Cannot reach the Docker daemon' in out['msg']


def test_documented_checks_are_the_implemented_ones():
    for check_id in cl.CHECK_IDS:
        assert 'V(%s)' % check_id in security_checklist.DOCUMENTATION


def test_agent_svid_from_agent_data_json(pki):
    import base64
    pem = pki.cert_pem(pki.leaf)
    data = json.dumps({'svid': [base64.b64encode(pem).decode()], 'reattestable': True}).encode()
    assert security_checklist.cl_agent_svid(data) == pem
    assert security_checklist.cl_agent_svid(b'not json') is None
