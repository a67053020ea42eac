#!/usr/bin/python
# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: operator_preflight
short_description: Check the operator stack inputs before touching any host
version_added: 0.1.0
description:
  - Validates the inputs of the C(operator_stack) role on the controller, before anything is changed on a host. Run it
    with C(delegate_to=localhost) and C(run_once) per registry, or once per host of a fleet.
  - Checks the operator and registry names (RFC 1123 DNS labels), the trust domain, the registry DID (W3C DID syntax),
    the SPIRE server address (a host name or IP address and nothing else, since it goes into the agent's HCL configuration)
    and port, and the stack settings (V(MINTING_AUTHORITY=disabled) and V(EVENTSTORE_MTLS_REQUIRED=true) exactly; keys
    are variable names matched as whole strings (a trailing line break is refused); C(EVENTSTORE_URL) a plain https URL without
    credentials, query or fragment).
  - When given, checks the image references (OCI/docker reference grammar C([registry[:port]/]name[:tag][@digest])), the
    federation bind address (an IP address) and the extra hosts (C(<host name>:<IP address>)); they go into the compose
    file.
  - Checks the x509pop attestation certificate - it parses, belongs to the private key, has the digitalSignature key
    usage, is not a CA, is within its validity window (and valid for at least O(x509pop_min_remaining_days)) - and, when
    intermediates are given, that they issue it. The parent frame's CA is not an input, so the chain is not checked up
    to it.
  - Checks the SPIRE trust bundle - it parses and holds at least one CA certificate, and CA certificates that carry a
    SPIFFE ID (SPIRE CAs carry V(spiffe://<trust-domain>)) are of O(trust_domain).
  - When O(onboarding) is given (the C(onboarding.yml) that the parent frame's onboarding wrote with the material), checks
    that the operator name, registry name and trust domain are those the frame registered (the frame's workload entry
    selects the compose project C(<registry_name>), so a stack under another name gets no SVID). The message says what the
    frame registered and what to change. Also checks that the x509pop certificate is the one issued with that file.
  - Collects all problems and fails with one message that lists every one of them, each saying what to do.
  - Never returns or shows key material.
author:
  - TheProtocol operator collection contributors (!UNKNOWN)
extends_documentation_fragment:
  - theprotocol.operator._attributes
  - theprotocol.operator._attributes.info_module
requirements:
  - cryptography >= 38.0 on the host that runs the module (the controller)
options:
  operator_name:
    description:
      - Your operator name as onboarded by the parent frame, an RFC 1123 DNS label (lowercase letters, digits and C(-)).
      - Part of the registry SPIFFE ID C(spiffe://<trust_domain>/service/registry-<operator_name>).
    type: str
  registry_name:
    description:
      - Name of the registry stack, an RFC 1123 DNS label. It prefixes the container names
        (C(<registry_name>-spire-agent), ...).
    type: str
  trust_domain:
    description:
      - SPIFFE trust domain of the parent frame.
    type: str
    default: example.com
  registry_did:
    description:
      - DID of the registry, C(did:<method>:<method-specific-id>), for example V(did:web:registry.example.com).
    type: str
  spire_server_address:
    description:
      - Host name or IP address of the parent frame's SPIRE server, without scheme or port.
    type: str
  spire_server_port:
    description:
      - TCP port of the parent frame's SPIRE server.
    type: int
    default: 8081
  images:
    description:
      - The stack's images, keys C(spire_agent), C(cert_writer), C(nginx), C(registry), C(postgres) and C(redis), each an
        image reference C([registry[:port]/]name[:tag][@digest]). Not checked when omitted.
    type: dict
  federation_bind_address:
    description:
      - IP address on which nginx-federation's port is published. Not checked when omitted.
    type: str
  extra_hosts:
    description:
      - Extra C(/etc/hosts) entries of the containers, each C(<host name>:<IP address>).
    type: list
    elements: str
  x509pop_cert:
    description:
      - The x509pop attestation certificate as PEM text (not a path), optionally followed by intermediate CA
        certificates.
    type: str
  x509pop_key:
    description:
      - The private key of O(x509pop_cert) as unencrypted PEM text (not a path). Keep it in Ansible Vault.
    type: str
  x509pop_intermediates:
    description:
      - Intermediate CA certificates (PEM text) between the frame CA and O(x509pop_cert), if any.
    type: str
  trust_bundle:
    description:
      - The SPIRE trust bundle of the parent frame as PEM text (one or more CA certificates).
    type: str
  settings:
    description:
      - The non-secret settings of the stack's C(.env.operator), as given to M(theprotocol.operator.operator_env).
      - Must hold V(MINTING_AUTHORITY=disabled) and V(EVENTSTORE_MTLS_REQUIRED=true), exactly and in lowercase
        (a YAML boolean V(true) counts as V(true)).
    type: dict
    default: {}
  onboarding:
    description:
      - What the parent frame registered for this operator, the content of C(onboarding.yml) of the onboarding material
        (parsed, as written by the M(theprotocol.operator.operator_onboarding) role; keys C(operator_name),
        C(registry_name), C(agent.trust_domain), C(registry_spiffe_id), C(x509pop_certificate_sha1_fingerprint)).
      - Not checked when omitted or empty (material without C(onboarding.yml)).
    type: dict
  check_onboarding_material:
    description:
      - Check the onboarding material (O(x509pop_cert), O(x509pop_key), O(x509pop_intermediates), O(trust_bundle),
        O(onboarding)).
      - V(false) for a preflight that runs before the parent frame issues the material in the same run; the material
        must then be checked before it is used.
    type: bool
    default: true
  x509pop_min_remaining_days:
    description:
      - Days the x509pop certificate must stay valid. V(0) fails only a certificate that has expired or is not valid
        yet.
    type: int
    default: 0
notes:
  - All timestamps are ISO-8601 in UTC, for example V(2026-06-04T12:00:00Z).
seealso:
  - module: theprotocol.operator.operator_env
  - module: theprotocol.operator.svid_info
"""

EXAMPLES = r"""
- name: Check the operator stack inputs before touching the host
  theprotocol.operator.operator_preflight:
    operator_name: acme
    registry_name: acme
    trust_domain: example.com
    registry_did: did:web:registry.acme.example
    spire_server_address: spire.frame.example.com
    spire_server_port: 8081
    x509pop_cert: "{{ lookup('ansible.builtin.file', 'files/acme/x509pop.crt.pem') }}"
    x509pop_key: "{{ acme_x509pop_key_pem }}"
    trust_bundle: "{{ lookup('ansible.builtin.file', 'files/acme/bundle.pem') }}"
    settings:
      MINTING_AUTHORITY: disabled
      EVENTSTORE_MTLS_REQUIRED: "true"
    x509pop_min_remaining_days: 14
  delegate_to: localhost
  register: preflight

- name: Show the agent SPIFFE ID the frame will see
  ansible.builtin.debug:
    msg: "{{ preflight.x509pop_agent_spiffe_id }} expires in {{ preflight.x509pop_remaining_days }} days"
"""

RETURN = r"""
problems:
  description: Every problem found, each saying what to do. Empty on success; on failure the message lists them too.
  returned: always
  type: list
  elements: str
  sample: []
valid:
  description: V(true) when RV(problems) is empty.
  returned: always
  type: bool
  sample: true
registry_spiffe_id:
  description: SPIFFE ID of the registry workload; V(null) when the trust domain or operator name is invalid.
  returned: always
  type: str
  sample: spiffe://example.com/service/registry-acme
x509pop_agent_spiffe_id:
  description:
    - SPIFFE ID that SPIRE's x509pop attestor gives the agent by default,
      C(spiffe://<trust_domain>/spire/agent/x509pop/<sha1 of the certificate>).
    - V(null) when the certificate or the trust domain is unusable.
  returned: always
  type: str
  sample: spiffe://example.com/spire/agent/x509pop/0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33
x509pop_not_after:
  description: End of the validity window of the x509pop certificate; V(null) when it does not parse.
  returned: always
  type: str
  sample: '2027-06-04T12:00:00Z'
x509pop_remaining_days:
  description: Whole days until RV(x509pop_not_after) (negative once expired); V(null) when the certificate does not
    parse.
  returned: always
  type: int
  sample: 364
x509pop_sha1_fingerprint:
  description: Lowercase hex SHA-1 fingerprint of the x509pop certificate; V(null) when it does not parse.
  returned: always
  type: str
  sample: 0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33
onboarding_registration:
  description: What the parent frame registered, read from O(onboarding); V(null) when O(onboarding) is not given.
  returned: always
  type: dict
  sample:
    operator_name: acme
    registry_name: acme-registry
    trust_domain: example.com
    registry_spiffe_id: spiffe://example.com/service/registry-acme
    x509pop_sha1_fingerprint: 0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33
trust_bundle_ca_count:
  description: Number of CA certificates in the trust bundle; V(null) when it does not parse.
  returned: always
  type: int
  sample: 1
trust_bundle_trust_domains:
  description: Trust domains of the SPIFFE IDs that the bundle's CA certificates carry.
  returned: always
  type: list
  elements: str
  sample: [example.com]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.theprotocol.operator.plugins.module_utils import _preflight
from ansible_collections.theprotocol.operator.plugins.module_utils import _x509 as x509u


def main():
    module = AnsibleModule(
        argument_spec=dict(
            operator_name=dict(type='str'),
            registry_name=dict(type='str'),
            trust_domain=dict(type='str', default=x509u.DEFAULT_TRUST_DOMAIN),
            registry_did=dict(type='str'),
            spire_server_address=dict(type='str'),
            spire_server_port=dict(type='int', default=_preflight.DEFAULT_SPIRE_SERVER_PORT),
            x509pop_cert=dict(type='str'),
            x509pop_key=dict(type='str', no_log=True),
            x509pop_intermediates=dict(type='str'),
            trust_bundle=dict(type='str'),
            settings=dict(type='dict', default={}),
            images=dict(type='dict'),
            federation_bind_address=dict(type='str'),
            extra_hosts=dict(type='list', elements='str'),
            x509pop_min_remaining_days=dict(type='int', default=0),
            onboarding=dict(type='dict'),
            check_onboarding_material=dict(type='bool', default=True),
        ),
        supports_check_mode=True,
    )
    if not x509u.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography >= %s' % x509u.MINIMAL_CRYPTOGRAPHY_VERSION),
                         exception=x509u.CRYPTOGRAPHY_IMP_ERR)
    params = module.params
    if params['x509pop_min_remaining_days'] < 0:
        module.fail_json(msg='x509pop_min_remaining_days must be 0 or more, got %d.' % params['x509pop_min_remaining_days'])
    # A token in the EventStore URL (refused below) stays out of the invocation shown with the result.
    settings = params['settings'] or {}
    module.no_log_values.update(_preflight.url_secrets(settings.get('EVENTSTORE_URL')))
    result = _preflight.preflight(**dict((name, params[name]) for name in module.argument_spec))
    if result['problems']:
        module.fail_json(msg=_preflight.format_problems(result['problems']), changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == '__main__':
    main()
