# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Locating the stack: option checks, the stack directory, and the exec deadline (with a container
stand-in whose exec never returns, as Docker's does when the container dies during the exec)."""

from __future__ import annotations

import threading
import types

import pytest

from ansible_collections.theprotocol.operator.plugins.module_utils import _stack as stack


def params(**changes):
    spec = stack.argument_spec()
    out = dict((k, v.get('default')) for k, v in spec.items())
    out.update(registry_name='registry1', operator_name='acme')
    out.update(changes)
    return out


def test_argument_spec_adds_module_options_without_losing_the_common_ones():
    spec = stack.argument_spec(checks=dict(type='list', elements='str'))
    assert spec['registry_name'] == dict(type='str', required=True) and 'checks' in spec
    assert spec['docker_host']['default'] == 'unix:///var/run/docker.sock'


def test_problems_name_each_bad_option():
    assert stack.problems(params()) == []
    bad = stack.problems(params(registry_name='Registry 1', federation_port=70000, cert_writer_interval=0,
                                timeout=0, stack_dir='relative/dir', env_file='../.env.operator'))
    assert len(bad) == 6
    for word in ('registry_name', 'federation_port', 'cert_writer_interval', 'timeout', 'stack_dir', 'env_file'):
        assert any(p.startswith(word) for p in bad), (word, bad)


def test_stack_dir_and_container_name():
    assert stack.stack_dir(params()) == '/opt/theprotocol/registry1'
    assert stack.stack_dir(params(stack_dir='/srv/r1')) == '/srv/r1'
    assert stack.container_name('registry1', 'spire-agent') == 'registry1-spire-agent'


class Container:
    def __init__(self, behaviour):
        self.name = 'registry1-spire-agent'
        self.behaviour = behaviour
        self.release = threading.Event()

    def exec_run(self, argv, **kwargs):
        if self.behaviour == 'hang':
            self.release.wait(30)
        if self.behaviour == 'error':
            raise RuntimeError('exec failed')
        return types.SimpleNamespace(exit_code=0, output=b'Agent is healthy.\n', kwargs=kwargs)


def test_exec_run_returns_the_answer():
    res = stack.exec_run(Container('ok'), ['/opt/spire/bin/spire-agent', 'healthcheck'], 5, stdout=True)
    assert res.exit_code == 0 and res.kwargs == {'stdout': True}


def test_exec_run_gives_up_on_a_stream_that_never_ends():
    container = Container('hang')  # would answer after 30 s: exec_run must not wait for it
    with pytest.raises(stack.ExecTimeout, match='healthcheck` in registry1-spire-agent gave no answer within 1 s'):
        stack.exec_run(container, ['/opt/spire/bin/spire-agent', 'healthcheck'], 1)
    container.release.set()


class LosingContainer:
    """The SDK as seen on the lab under load: the first answers of a short exec arrive without their output."""
    name = 'registry1-spire-agent'

    def __init__(self, lost, exit_code=0):
        self.lost, self.exit_code, self.calls = lost, exit_code, 0

    def exec_run(self, argv, **kwargs):
        self.calls += 1
        output = b'' if self.calls <= self.lost else b'Agent is healthy.\n'
        return types.SimpleNamespace(exit_code=self.exit_code, output=output)


@pytest.mark.parametrize('lost, read_only, calls, output', [
    (1, True, 2, b'Agent is healthy.\n'),
    (2, True, 3, b'Agent is healthy.\n'),
    (5, True, 3, b''),  # given up after LOST_OUTPUT_RETRIES more: the caller judges the empty answer
    (1, False, 1, b''),  # a command that changes something runs once
])
def test_a_read_whose_output_was_lost_runs_again(lost, read_only, calls, output):
    container = LosingContainer(lost)
    res = stack.exec_run(container, ['/opt/spire/bin/spire-agent', 'healthcheck'], 5, read_only=read_only)
    assert (container.calls, res.output) == (calls, output)


def test_a_failed_read_is_not_run_again():
    container = LosingContainer(5, exit_code=1)
    assert stack.exec_run(container, ['redis-cli', 'ping'], 5, read_only=True).exit_code == 1
    assert container.calls == 1


def test_exec_run_passes_errors_on():
    with pytest.raises(RuntimeError, match='exec failed'):
        stack.exec_run(Container('error'), ['true'], 5)


@pytest.mark.parametrize('exit_code, output, healthy, words', [
    (0, 'Agent is healthy.\n', True, 'spire-agent healthcheck: "Agent is healthy."'),
    # CI, 2026-11-28, host7 under load: the exec exited 0 and its output never arrived (docker/docker-py#2042)
    (0, '', True, 'exited 0 (its output did not reach us'),
    (1, 'Agent is unhealthy: unable to determine health\n', False,
     'exited 1: Agent is unhealthy: unable to determine health'),
    (1, '', False, 'exited 1: no output'),
    (None, '`/opt/spire/bin/spire-agent healthcheck` in x gave no answer within 5 s', False, 'exited None: `'),
])
def test_agent_health_is_decided_by_the_exit_status(exit_code, output, healthy, words):
    verdict, evidence = stack.agent_health(exit_code, output)
    assert verdict is healthy and words in evidence, evidence
