# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: refusal_problems
short_description: The wrong answers among HTTP probes of a public endpoint, one line each
version_added: 0.3.0
description:
  - Judges the registered result of C(ansible.builtin.uri) probes (one task, with or without a loop) against the
    answer each must get, and returns one line per wrong answer, so that a verification can report every fault
    at once instead of stopping at the first.
  - A probe that got no answer (connection refused, timeout) is a wrong answer. A skipped probe is not judged.
  - The role C(theprotocol.operator.public_proxy) checks its public nginx from outside with it.
author:
  - TheProtocol operator collection contributors (!UNKNOWN)
positional: status, fault
options:
  _input:
    description: The registered result of an C(ansible.builtin.uri) task (register it with C(failed_when=false)).
    type: dict
    required: true
  status:
    description: The HTTP status every probe must get.
    type: int
    required: true
  fault:
    description: What a wrong answer means, put in each line.
    type: str
    required: true
  body:
    description: The exact body every probe must get (whitespace at the ends ignored).
    type: str
  contains:
    description: A text the body of every probe must contain.
    type: str
"""

EXAMPLES = r"""
- name: Each internal location is refused by nginx
  ansible.builtin.uri:
    url: "https://127.0.0.1{{ item }}"
    validate_certs: false
    return_content: true
  loop: [/internal/, /api/v1/rows]
  register: internal_probe
  failed_when: false

- name: Every probe got its refusal
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "{{ problems | join('; ') }}"
  vars:
    problems: "{{ internal_probe | theprotocol.operator.refusal_problems(403, 'never proxied', contains='not served publicly') }}"
"""

RETURN = r"""
_value:
  description:
    - "One line per wrong answer, C(<path>: <fault> (answered <status> <body>; expected <status> ...)); the body is
      quoted up to 160 characters."
  type: list
  elements: str
  sample:
    - '/internal/: an internal location must be refused by nginx, never proxied (answered 404 {"error": "not found"};
      expected 403 with "not served publicly")'
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.theprotocol.operator.plugins.module_utils import _http_refusals


def refusal_problems(registered, status, fault, body=None, contains=None):
    if not isinstance(registered, dict):
        raise AnsibleFilterError('refusal_problems: the input must be the registered result of an ansible.builtin.uri '
                                 'task, got %s.' % type(registered).__name__)
    try:
        status = int(status)
    except (TypeError, ValueError):
        raise AnsibleFilterError('refusal_problems: status must be an HTTP status code, got %r.' % (status,))
    return _http_refusals.refusal_problems(registered, status, str(fault),
                                           body=None if body is None else str(body),
                                           contains=None if contains is None else str(contains))


class FilterModule:
    def filters(self):
        return {'refusal_problems': refusal_problems}
