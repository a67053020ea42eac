#!/usr/bin/python
# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: svid_info
short_description: Inspect the X.509-SVID, key and trust bundle written by cert-writer
version_added: 0.1.0
description:
  - Reads the SVID certificate (with any intermediates), its private key and the SPIRE trust bundle from a directory
    on the target, typically the certs volume that the C(cert-writer) sidecar fills.
  - Reports the SPIFFE ID and trust domain, whether the chain leads to a CA of the bundle (signatures, validity windows,
    CA constraints; no hostname policy), whether the key belongs to the certificate, and how much time is left.
  - The C(spire-agent healthcheck) command also reports healthy when the agent holds no identity, so a security
    checklist should check the SVID files with this module as well.
  - Findings such as an expired SVID or a broken chain are returned, not raised; the module fails only when its input
    is unusable (missing or unparseable files, invalid options, missing C(cryptography) library).
  - Never returns key material.
author:
  - TheProtocol operator collection contributors (!UNKNOWN)
extends_documentation_fragment:
  - theprotocol.operator._attributes
  - theprotocol.operator._attributes.info_module
requirements:
  - cryptography >= 38.0 on the target (Debian 12 package python3-cryptography)
options:
  path:
    description:
      - Directory on the target that holds the SVID files.
    type: path
    required: true
  svid_file:
    description:
      - File name of the SVID, relative to O(path). Leaf certificate first, then any intermediates, PEM.
    type: str
    default: svid.pem
  key_file:
    description:
      - File name of the SVID private key (unencrypted PEM), relative to O(path).
    type: str
    default: svid_key.pem
  bundle_file:
    description:
      - File name of the SPIRE trust bundle (one or more CA certificates, PEM), relative to O(path).
    type: str
    default: bundle.pem
  expected_spiffe_id:
    description:
      - The SPIFFE ID the SVID must carry, for example V(spiffe://example.com/service/registry-acme).
      - When set, RV(expected_spiffe_id_matches) tells whether it does, and a mismatch is listed in RV(problems).
    type: str
  min_remaining_seconds:
    description:
      - The SVID must stay valid for at least this many seconds; otherwise RV(remaining_sufficient=false) and a problem
        is listed in RV(problems).
    type: int
    default: 0
notes:
  - All timestamps are ISO-8601 in UTC, for example V(2026-06-04T12:00:00Z).
seealso:
  - module: community.crypto.x509_certificate_info
"""

EXAMPLES = r"""
- name: Inspect the SVID that cert-writer wrote
  theprotocol.operator.svid_info:
    path: /var/lib/docker/volumes/acme_certs/_data
    expected_spiffe_id: spiffe://example.com/service/registry-acme
    min_remaining_seconds: 600
  register: svid

- name: Fail when the SVID is not usable for federation
  ansible.builtin.assert:
    that:
      - svid.valid
    fail_msg: "SVID problems: {{ svid.problems | join('; ') }}"

- name: Read files with non-default names
  theprotocol.operator.svid_info:
    path: /srv/certs
    svid_file: cert.pem
    key_file: key.pem
    bundle_file: ca.pem
  register: svid
"""

RETURN = r"""
valid:
  description: V(true) when no problem was found (see RV(problems)).
  returned: success
  type: bool
  sample: true
problems:
  description: Human-readable findings, each saying what is wrong and what to do. Empty when RV(valid=true).
  returned: success
  type: list
  elements: str
  sample: []
spiffe_id:
  description: The SPIFFE ID of the SVID (its single URI SAN), or V(null) when it has none or it is invalid.
  returned: success
  type: str
  sample: spiffe://example.com/service/registry-acme
trust_domain:
  description: Trust domain part of RV(spiffe_id).
  returned: success
  type: str
  sample: example.com
spiffe_path:
  description: Path part of RV(spiffe_id).
  returned: success
  type: str
  sample: /service/registry-acme
serial:
  description: Serial number of the SVID, lowercase hexadecimal.
  returned: success
  type: str
  sample: 5f3a9c0e1b2d4f6a8c7e9b1d3f5a7c9e
not_before:
  description: Start of the SVID validity window.
  returned: success
  type: str
  sample: '2026-06-04T12:00:00Z'
not_after:
  description: End of the SVID validity window.
  returned: success
  type: str
  sample: '2026-06-04T13:00:00Z'
remaining_seconds:
  description: Seconds until RV(not_after); negative once expired.
  returned: success
  type: int
  sample: 3412
expired:
  description: Whether the SVID has expired.
  returned: success
  type: bool
  sample: false
not_yet_valid:
  description: Whether the SVID validity window has not started yet.
  returned: success
  type: bool
  sample: false
remaining_sufficient:
  description: Whether RV(remaining_seconds) is at least O(min_remaining_seconds).
  returned: success
  type: bool
  sample: true
chain_valid:
  description: Whether the SVID chains through its intermediates to a CA of the trust bundle, every certificate being
    within its validity window.
  returned: success
  type: bool
  sample: true
chain_error:
  description: Why the chain is not valid; V(null) when RV(chain_valid=true).
  returned: success
  type: str
  sample: null
key_matches:
  description: Whether the private key belongs to the SVID certificate.
  returned: success
  type: bool
  sample: true
digital_signature:
  description: Whether the SVID key usage includes digitalSignature, as X.509-SVIDs require.
  returned: success
  type: bool
  sample: true
expected_spiffe_id_matches:
  description: Whether RV(spiffe_id) equals O(expected_spiffe_id); V(null) when O(expected_spiffe_id) is not set.
  returned: success
  type: bool
  sample: true
bundle_ca_count:
  description: Number of CA certificates in the trust bundle.
  returned: success
  type: int
  sample: 1
intermediate_count:
  description: Number of intermediate certificates after the leaf in the SVID file.
  returned: success
  type: int
  sample: 1
certificate:
  description: Public facts about the SVID leaf certificate.
  returned: success
  type: dict
  contains:
    subject:
      description: Subject, RFC 4514.
      type: str
      sample: O=SPIRE,C=US
    issuer:
      description: Issuer, RFC 4514.
      type: str
      sample: O=SPIRE,C=US,CN=intermediate
    serial:
      description: Serial number, lowercase hexadecimal.
      type: str
      sample: 5f3a9c0e1b2d4f6a8c7e9b1d3f5a7c9e
    not_before:
      description: Start of the validity window.
      type: str
      sample: '2026-06-04T12:00:00Z'
    not_after:
      description: End of the validity window.
      type: str
      sample: '2026-06-04T13:00:00Z'
    remaining_seconds:
      description: Seconds until RV(certificate.not_after).
      type: int
      sample: 3412
    is_ca:
      description: Whether basicConstraints says CA.
      type: bool
      sample: false
    spiffe_id:
      description: The SPIFFE ID when exactly one spiffe URI SAN is present.
      type: str
      sample: spiffe://example.com/service/registry-acme
    spiffe_ids:
      description: All spiffe URI SANs.
      type: list
      elements: str
      sample: [spiffe://example.com/service/registry-acme]
    sha1_fingerprint:
      description: SHA-1 of the DER encoding, lowercase hexadecimal.
      type: str
      sample: 0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33
    sha256_fingerprint:
      description: SHA-256 of the DER encoding, lowercase hexadecimal.
      type: str
      sample: 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
"""

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.theprotocol.operator.plugins.module_utils import _x509 as x509u


def _read(module, directory, name, what):
    path = os.path.join(directory, name)
    try:
        with open(path, 'rb') as handle:
            return handle.read()
    except FileNotFoundError:
        module.fail_json(msg='The %s %s does not exist. Check path and the file name options, and that cert-writer '
                             'is running and has written its files.' % (what, path))
    except OSError as exc:
        module.fail_json(msg='Cannot read the %s %s: %s. Run the task with enough privileges (become) to read the '
                             'certs volume.' % (what, path, exc.strerror or exc))
    return None  # not reached


def inspect_svid(svid_pem, key_pem, bundle_pem, expected_spiffe_id=None, min_remaining_seconds=0, now=None,
                 labels=x509u.SVID_LABELS):
    """Return the module result for the given PEM data (raises X509Error on unusable input)."""
    svid = x509u.svid_verdict(svid_pem, key_pem, bundle_pem, expected_spiffe_id, min_remaining=min_remaining_seconds,
                              now=now, labels=labels)
    for unusable in (svid['error'], svid['key_error'], svid['bundle_error']):
        if unusable:
            raise x509u.X509Error(unusable)
    problems = []
    if svid['spiffe_id_error']:
        problems.append(svid['spiffe_id_error'])
    if expected_spiffe_id is not None and not svid['spiffe_id_matches']:
        problems.append('The SVID carries %s, not the expected %s. Check the registration entry on the parent '
                        "frame's SPIRE server and the operator name."
                        % (svid['spiffe_id'] or 'no SPIFFE ID', expected_spiffe_id))
    if svid['chain_error']:
        problems.append(svid['chain_error'])
    if not svid['key_matches']:
        problems.append('The SVID key does not belong to the SVID certificate: cert-writer wrote them from different '
                        'fetches or the files were mixed up. Restart cert-writer so it writes a matching pair.')
    if not svid['digital_signature']:
        problems.append('The SVID key usage lacks digitalSignature, which X.509-SVIDs require for TLS.')
    if svid['is_ca']:
        problems.append('The SVID leaf is a CA certificate; an X.509-SVID leaf must have CA:FALSE. '
                        'Check that svid_file points at the SVID, not the bundle.')
    remaining = svid['remaining_seconds']
    if not svid['expired'] and not svid['not_yet_valid'] and remaining < min_remaining_seconds:
        problems.append('The SVID expires in %d s, less than the required %d s. SVIDs should rotate well before '
                        'expiry: check spire-agent health and that cert-writer fetches every cycle.'
                        % (int(remaining), min_remaining_seconds))
    return dict(
        changed=False,
        valid=not problems,
        problems=problems,
        spiffe_id=svid['spiffe_id'],
        trust_domain=svid['trust_domain'],
        spiffe_path=svid['spiffe_path'],
        serial=svid['serial'],
        not_before=svid['not_before'],
        not_after=svid['not_after'],
        remaining_seconds=remaining,
        expired=svid['expired'],
        not_yet_valid=svid['not_yet_valid'],
        remaining_sufficient=svid['remaining_sufficient'],
        chain_valid=svid['chain_ok'],
        chain_error=svid['chain_error'],
        key_matches=svid['key_matches'],
        digital_signature=svid['digital_signature'],
        expected_spiffe_id_matches=svid['spiffe_id_matches'],
        bundle_ca_count=svid['bundle_ca_count'],
        intermediate_count=svid['intermediate_count'],
        certificate=svid['certificate'],
    )


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type='path', required=True),
            svid_file=dict(type='str', default='svid.pem'),
            key_file=dict(type='str', default='svid_key.pem'),
            bundle_file=dict(type='str', default='bundle.pem'),
            expected_spiffe_id=dict(type='str'),
            min_remaining_seconds=dict(type='int', default=0),
        ),
        supports_check_mode=True,
    )
    if not x509u.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib('cryptography >= %s' % x509u.MINIMAL_CRYPTOGRAPHY_VERSION),
                         exception=x509u.CRYPTOGRAPHY_IMP_ERR)

    params = module.params
    if params['min_remaining_seconds'] < 0:
        module.fail_json(msg='min_remaining_seconds must be 0 or more, got %d.' % params['min_remaining_seconds'])
    if params['expected_spiffe_id'] is not None:
        try:
            x509u.parse_spiffe_id(params['expected_spiffe_id'])
        except x509u.X509Error as exc:
            module.fail_json(msg='Option expected_spiffe_id: %s' % exc)
    directory = params['path']
    if not os.path.isdir(directory):
        module.fail_json(msg='The path %s is not a directory. Point it at the certs volume that cert-writer writes to.'
                             % directory)

    svid_pem = _read(module, directory, params['svid_file'], 'SVID file')
    key_pem = _read(module, directory, params['key_file'], 'SVID key file')
    bundle_pem = _read(module, directory, params['bundle_file'], 'trust bundle file')
    try:
        result = inspect_svid(svid_pem, key_pem, bundle_pem,
                              expected_spiffe_id=params['expected_spiffe_id'],
                              min_remaining_seconds=params['min_remaining_seconds'],
                              labels=(
                                  'SVID file %s' % os.path.join(directory, params['svid_file']),
                                  'SVID key file %s' % os.path.join(directory, params['key_file']),
                                  'trust bundle file %s' % os.path.join(directory, params['bundle_file']),
                              ))
    except x509u.X509Error as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
