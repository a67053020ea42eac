# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Where a deployed operator stack is, for the read-only modules that run on its host (private).

``security_checklist`` and ``incident_evidence`` locate the same stack the same way: its
services, the options that name it, the Python libraries they need (with the Debian packages to
install), their checks on those options, the stack directory and the Docker client.
"""

from __future__ import annotations

import os
import re
import threading
import traceback

from ansible.module_utils.basic import missing_required_lib

DEFAULT_BASE = '/opt/theprotocol'
# The compose services of the stack (docker-compose.operator.yml), in the file's order: the identity
# chain in the order the guide starts and restarts it (spire-agent, then cert-writer, then the
# nginx-federation that serves what cert-writer wrote), then the registry and its stores.
SERVICES = ('spire-agent', 'cert-writer', 'nginx-federation', 'registry', 'db', 'redis')
REGISTRY_NAME_RE = re.compile(r'^[a-z0-9][a-z0-9_-]*\Z')
# `spire-agent healthcheck` exits 0 and prints "Agent is healthy." when healthy, exits 1 with "Agent is
# unhealthy: ..." otherwise; SPIRE's own integration tests judge it by its exit status. Docker can lose the
# output of a short exec (docker/docker-py#2042, moby/moby#27289: seen on the lab under load, exit 0 and no
# output), so the status is the verdict and the line only evidence.
AGENT_HEALTHCHECK = ('/opt/spire/bin/spire-agent', 'healthcheck')
AGENT_HEALTHY_LINE = 'Agent is healthy.'


def agent_health(exit_code, output):
    """The answer of ``spire-agent healthcheck`` -> ``(healthy, evidence)``; ``exit_code`` None: it did not run."""
    text = (output or '').strip()
    last = text.splitlines()[-1][:200] if text else ''
    if exit_code == 0:
        if AGENT_HEALTHY_LINE in text:
            return True, 'spire-agent healthcheck: "%s"' % AGENT_HEALTHY_LINE
        return True, 'spire-agent healthcheck exited 0 (%s)' % (
            'said "%s"' % last if last else 'its output did not reach us: Docker loses the output of some execs')
    return False, 'spire-agent healthcheck exited %s: %s' % (exit_code, last or 'no output')


def argument_spec(**extra):
    """The options that locate the stack (documented in each module), plus the module's own ``extra``."""
    spec = dict(
        registry_name=dict(type='str', required=True),
        operator_name=dict(type='str', required=True),
        trust_domain=dict(type='str', default='example.com'),
        stack_dir=dict(type='path'),
        env_file=dict(type='str', default='.env.operator'),
        federation_host=dict(type='str', default='localhost'),
        federation_port=dict(type='int', default=8443),
        cert_writer_interval=dict(type='int', default=300),
        timeout=dict(type='float', default=10),
        docker_host=dict(type='str', default='unix:///var/run/docker.sock'),
    )
    spec.update(extra)
    return spec


def _docker():
    """``(the Docker SDK module or None, the ImportError's traceback or None)``. Imported on first use, so that
    the pure modules that take :data:`SERVICES` from here (the checklist, also on the controller) do not load it."""
    try:
        import docker
    except ImportError:
        return None, traceback.format_exc()
    return docker, None


def fail_on_missing_requirements(module, cryptography_ok, cryptography_err):
    """Fail, naming the Debian packages in ``missing_requirements``, when docker or cryptography is missing."""
    docker, docker_err = _docker()
    missing = [(lib, pkg, err) for lib, pkg, err, ok in (
        ('docker', 'python3-docker', docker_err, docker is not None),
        ('cryptography', 'python3-cryptography', cryptography_err, cryptography_ok)) if not ok]
    if missing:
        module.fail_json(msg=missing_required_lib(' and '.join('%s (Debian: %s)' % m[:2] for m in missing)),
                         exception=missing[0][2], missing_requirements=[m[1] for m in missing])


def problems(params):
    """What is wrong with the locating options (a list of sentences, empty when all is well)."""
    out = []
    if not REGISTRY_NAME_RE.match(params['registry_name'] or ''):
        out.append('registry_name %r is not a compose project name (lowercase letters, digits, "-", "_").'
                   % params['registry_name'])
    if not 0 < params['federation_port'] < 65536:
        out.append('federation_port must be a TCP port (1-65535), got %d.' % params['federation_port'])
    if params['cert_writer_interval'] <= 0:
        out.append('cert_writer_interval must be a positive number of seconds, got %d.'
                   % params['cert_writer_interval'])
    if params['timeout'] <= 0:
        out.append('timeout must be positive.')
    if params['stack_dir'] is not None and not os.path.isabs(params['stack_dir']):
        out.append('stack_dir must be an absolute path.')
    if os.sep in params['env_file'] or params['env_file'] in ('', '.', '..'):
        out.append('env_file must be a file name in stack_dir, got %r.' % params['env_file'])
    return out


def stack_dir(params):
    """The stack directory: ``stack_dir``, or ``/opt/theprotocol/<registry_name>``."""
    return params['stack_dir'] or os.path.join(DEFAULT_BASE, params['registry_name'])


def container_name(registry_name, service):
    """Compose's container name of ``service`` (the guide's ``<registry>-<service>``)."""
    return '%s-%s' % (registry_name, service)


class ExecTimeout(Exception):
    """A ``docker exec`` in a stack container gave no answer in time."""


# Reads that print something when they succeed are run again this many times when their output is lost.
LOST_OUTPUT_RETRIES = 2


def exec_run(container, argv, timeout, read_only=False, **kwargs):
    """``container.exec_run(argv, **kwargs)``, given up after ``timeout`` seconds (raises ExecTimeout).

    When a container dies during an exec (a crash-looping spire-agent), Docker can leave the exec's
    stream open, and the SDK reads attached streams without a socket timeout: the call would never
    return. It runs in a daemon thread, so that a stuck one does not hold the module at exit.

    The SDK sometimes returns the exit status of a short exec without its output (docker/docker-py#2042,
    seen on the lab under load). A ``read_only`` command, which prints something when it succeeds, is run
    again when it exits 0 with no output (up to LOST_OUTPUT_RETRIES times); a command that changes
    something never is.
    """
    for dummy in range(LOST_OUTPUT_RETRIES if read_only else 0):
        res = _exec_once(container, argv, timeout, kwargs)
        if res.exit_code != 0 or res.output:
            return res
    return _exec_once(container, argv, timeout, kwargs)


def _exec_once(container, argv, timeout, kwargs):
    box = {}

    def target():
        try:
            box['result'] = container.exec_run(argv, **kwargs)
        except Exception as exc:  # pylint: disable=broad-except
            box['error'] = exc

    worker = threading.Thread(target=target, name='exec %s' % argv[0], daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise ExecTimeout('`%s` in %s gave no answer within %d s (the container may be restarting)'
                          % (' '.join(argv), getattr(container, 'name', 'the container'), timeout))
    if 'error' in box:
        raise box['error']
    return box['result']


def docker_client(module, params, extra_timeout=0):
    """A Docker client that answered a ping, or fail saying how to reach the daemon."""
    try:
        docker = _docker()[0]
        client = docker.DockerClient(base_url=params['docker_host'], timeout=int(max(params['timeout'], 1)) + extra_timeout)
        client.ping()
    except Exception as exc:  # pylint: disable=broad-except
        # DockerException, or requests' ConnectionError from older SDKs (Debian 12's 5.0) that do not wrap it.
        module.fail_json(msg='Cannot reach the Docker daemon at %s (%s). Run the task on the registry host with '
                             'become (root, or a member of the docker group).'
                             % (params['docker_host'], type(exc).__name__))
    return client
