# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: x509pop_agent_id
short_description: SPIFFE ID that SPIRE's x509pop node attestor gives an agent
version_added: 0.1.0
description:
  - Returns C(spiffe://<trust domain>/spire/agent/x509pop/<fingerprint>), the agent SPIFFE ID that the SPIRE server's
    C(x509pop) node attestor assigns with its default C(agent_path_template), where the fingerprint is the lowercase
    hexadecimal SHA-1 of the attestation certificate's DER encoding.
  - The ID changes whenever the attestation certificate is re-issued; register workloads under a node alias
    (a node entry selecting C(x509pop:subject:cn:...)) rather than under this ID.
  - Runs on the controller and needs the Python library C(cryptography) there.
author:
  - TheProtocol operator collection contributors (!UNKNOWN)
positional: trust_domain
options:
  _input:
    description: The x509pop attestation certificate, PEM. Only the first certificate is used.
    type: str
    required: true
  trust_domain:
    description: Trust domain of the SPIRE server.
    type: str
    default: example.com
"""

EXAMPLES = r"""
- name: Agent SPIFFE ID of an attestation certificate on the controller
  ansible.builtin.debug:
    msg: "{{ lookup('ansible.builtin.file', '/srv/onboarding/acme/x509pop.crt') | theprotocol.operator.x509pop_agent_id('example.com') }}"
"""

RETURN = r"""
_value:
  description: The agent SPIFFE ID.
  type: str
  sample: spiffe://example.com/spire/agent/x509pop/0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33
"""

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.theprotocol.operator.plugins.module_utils import _x509


def x509pop_agent_id(certificate, trust_domain=_x509.DEFAULT_TRUST_DOMAIN):
    if not isinstance(certificate, (str, bytes)):
        raise AnsibleFilterError('x509pop_agent_id: the input must be a PEM certificate (a string), got %s.'
                                 % type(certificate).__name__)
    try:
        cert = _x509.load_pem_chain(to_bytes(certificate), 'x509pop attestation certificate')[0]
        return _x509.x509pop_agent_spiffe_id(trust_domain, cert)
    except _x509.X509Error as exc:
        raise AnsibleFilterError('x509pop_agent_id: %s' % exc)


class FilterModule:
    def filters(self):
        return {'x509pop_agent_id': x509pop_agent_id}
