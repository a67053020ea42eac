# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import json
import os
import socket

import docker
import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist as cl
from ansible_collections.theprotocol.operator.plugins.module_utils import _observe as observe
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


# test_agent_svid_from_agent_data_json moved to tests/unit/plugins/module_utils/test_observe.py (_observe.agent_svid_pem).


def lab_host(tmp_path, pki, monkeypatch):
    """observed_stack.LabHost (tests/unit/plugins/module_utils) behind the module's Docker client."""
    from ansible_collections.theprotocol.operator.tests.unit.plugins.module_utils import observed_stack
    host = observed_stack.LabHost(tmp_path, pki)
    monkeypatch.setattr(docker, 'DockerClient', lambda **kwargs: host.client())
    return host, observed_stack


@pytest.mark.parametrize('return_facts', [True, False])
def test_one_call_judges_the_facts_it_gathered_and_returns_no_secret(capsys, tmp_path, pki, monkeypatch, return_facts):
    host, lab = lab_host(tmp_path, pki, monkeypatch)
    secret = host.secrets['REDIS_PASSWORD']
    host.logs['registry'].append(host.registry_line(host.now, 'redis: AUTH %s refused' % secret))
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    code, out = run_main(capsys, dict(BASE, registry_name=lab.REGISTRY, operator_name=lab.OPERATOR,
                                      stack_dir=host.stack_dir, federation_host='127.0.0.1', federation_port=port,
                                      eventstore_window=100000000, return_facts=return_facts))
    assert code == 0, out
    text = json.dumps(out)
    for value in host.secrets.values():
        assert value not in text
    assert [r['id'] for r in out['results']] == list(cl.CHECK_IDS)
    by_id = dict((r['id'], r['status']) for r in out['results'])
    assert by_id['nginx_federation_accepting'] == 'fail' and by_id['served_svid_current'] == 'skip'
    # (the module reads the clock: the judgements that depend on it are the runner's tests, over fact sets)
    assert by_id['db_passwords_not_default'] == by_id['minting_disabled'] == by_id['images_up_to_date'] == 'pass'
    if not return_facts:
        assert 'facts' not in out
        return
    assert sorted(out['facts']) == sorted(observe.FACT_NAMES)
    assert any('redis: AUTH <redacted> refused' in line for line in out['facts']['registry_log'])


def test_selected_checks_gather_only_their_facts(capsys, tmp_path, pki, monkeypatch):
    host, lab = lab_host(tmp_path, pki, monkeypatch)
    code, out = run_main(capsys, dict(BASE, registry_name=lab.REGISTRY, operator_name=lab.OPERATOR,
                                      stack_dir=host.stack_dir, checks=['secrets_age', 'env_file_permissions'],
                                      return_facts=True))
    assert code == 0, out
    assert [r['id'] for r in out['results']] == ['env_file_permissions', 'secrets_age']
    assert out['results'][0]['status'] == ('pass' if os.geteuid() == 0 else 'fail')
    assert sorted(out['facts']['journal']['secret_ages']) == sorted(host.secrets)
    assert sorted(out['facts']) == sorted(observe.BASE_FACTS + ('journal',))
    assert host.calls == []


def test_an_env_file_that_cannot_be_parsed_fails_the_module(capsys, tmp_path, pki, monkeypatch):
    host, lab = lab_host(tmp_path, pki, monkeypatch)
    with open(host.env_path, 'a') as handle:
        handle.write('NOT A SETTING\n')
    code, out = run_main(capsys, dict(BASE, registry_name=lab.REGISTRY, operator_name=lab.OPERATOR,
                                      stack_dir=host.stack_dir))
    assert code == 1 and 'env file' in out['msg']
    for value in host.secrets.values():
        assert value not in json.dumps(out)
