# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: federation_allowlist_regex
short_description: Anchored regexes of a SPIFFE ID allow-list (nginx-federation)
version_added: 0.1.0
description:
  - Validates a list of SPIFFE ID patterns and returns one anchored regular expression per pattern, for the
    C(map) with which nginx-federation (and the public proxy) decides which peers reach the federation endpoints.
  - A pattern is C(spiffe://<trust domain>/<path>); in the path, C(*) matches any characters within one path
    segment and C(**) any characters across segments. The trust domain is literal.
  - Fails naming every invalid entry (not a string, not a SPIFFE ID, characters outside SPIFFE's, C(.) or
    C(..) segments, C(***)) and on an empty list.
author:
  - TheProtocol operator collection contributors (!UNKNOWN)
options:
  _input:
    description: The SPIFFE ID patterns.
    type: list
    elements: str
    required: true
  variable:
    description: The variable the patterns come from, named in the error message.
    type: str
    default: operator_stack_federation_allowed_spiffe_ids
    version_added: 0.3.0
"""

EXAMPLES = r"""
- name: Regexes of the default allow-list
  ansible.builtin.debug:
    msg: "{{ ['spiffe://example.com/service/registry-*'] | theprotocol.operator.federation_allowlist_regex }}"
    # ['^spiffe://example\\.com/service/registry-[A-Za-z0-9._-]*$']
"""

RETURN = r"""
_value:
  description: One anchored regular expression per distinct pattern, in order.
  type: list
  elements: str
  sample: ['^spiffe://example\.com/service/registry-[A-Za-z0-9._-]*$']
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.theprotocol.operator.plugins.module_utils import _spiffe_authz


def federation_allowlist_regex(patterns, variable='operator_stack_federation_allowed_spiffe_ids'):
    try:
        return _spiffe_authz.regexes(patterns)
    except _spiffe_authz.AllowListError as exc:
        raise AnsibleFilterError('%s: %s' % (variable, exc))


class FilterModule:
    def filters(self):
        return {'federation_allowlist_regex': federation_allowlist_regex}
