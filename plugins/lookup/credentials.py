# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: credentials
short_description: The C(.env.operator) keys of the operator stack's credentials
version_added: 0.3.0
description:
  - The keys of the credentials the collection declares (its credential registry), in their fixed order. The roles
    read them here instead of keeping a list of their own, so that a new credential needs no change in any role.
  - V(POSTGRES_PASSWORD), V(REDIS_PASSWORD) and V(INTERNAL_API_KEY) today.
  - Names only, never a value.
author:
  - TheProtocol operator collection contributors (!UNKNOWN)
options:
  rotatable:
    description: Only the credentials that M(theprotocol.operator.credential_rotate) rotates live.
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Generate every credential of the stack where it is missing
  theprotocol.operator.operator_env:
    path: /opt/theprotocol/registry1/.env.operator
    secrets: "{{ lookup('theprotocol.operator.credentials', wantlist=True) }}"

- name: Refuse a key that cannot be rotated
  ansible.builtin.assert:
    that: secret_rotation_secrets | difference(lookup('theprotocol.operator.credentials', rotatable=true,
      wantlist=True)) | length == 0
"""

RETURN = r"""
_raw:
  description: The keys, in the registry's order.
  type: list
  elements: str
  sample: [POSTGRES_PASSWORD, REDIS_PASSWORD, INTERNAL_API_KEY]
"""

from ansible.errors import AnsibleLookupError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.lookup import LookupBase

from ansible_collections.theprotocol.operator.plugins.module_utils import _credentials


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        if terms:
            raise AnsibleLookupError('the credentials lookup takes no terms (got %d); use rotatable=true for the '
                                     'rotatable ones' % len(terms))
        unknown = sorted(set(kwargs) - {'rotatable'})
        if unknown:
            raise AnsibleLookupError('the credentials lookup has no option %s (only rotatable)' % ', '.join(unknown))
        rotatable = boolean(kwargs.get('rotatable', False), strict=True)
        return list(_credentials.ROTATABLE if rotatable else _credentials.KEYS)
