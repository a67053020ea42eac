# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# PRIVATE to this collection: may change at any time, do not use from elsewhere.

from __future__ import annotations


class ModuleDocFragment:
    # The options that locate a deployed stack: plugins/module_utils/_stack.py argument_spec().
    DOCUMENTATION = r"""
options:
  registry_name:
    description: Registry name; the compose project and the container prefix C(<registry_name>-<service>).
    type: str
    required: true
  operator_name:
    description: Operator name; the registry SPIFFE ID is C(spiffe://<trust_domain>/service/registry-<operator_name>).
    type: str
    required: true
  trust_domain:
    description: SPIFFE trust domain of the federation.
    type: str
    default: example.com
  stack_dir:
    description: Stack directory. Defaults to C(/opt/theprotocol/<registry_name>).
    type: path
  env_file:
    description: Name of the env file in O(stack_dir).
    type: str
    default: .env.operator
  federation_host:
    description: Host name or address to reach nginx-federation on, from the registry host.
    type: str
    default: localhost
  federation_port:
    description: Published port of nginx-federation.
    type: int
    default: 8443
  cert_writer_interval:
    description: The cert-writer fetch interval in seconds.
    type: int
    default: 300
  timeout:
    description: Timeout in seconds of every Docker call, C(docker exec) and network probe.
    type: float
    default: 10
  docker_host:
    description: Docker daemon URL.
    type: str
    default: unix:///var/run/docker.sock
requirements:
  - Docker SDK for Python (Debian python3-docker) on the registry host
  - cryptography (Debian python3-cryptography) on the registry host
"""
