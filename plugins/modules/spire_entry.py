#!/usr/bin/python
# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: spire_entry
short_description: Manage one SPIRE registration entry idempotently
version_added: 0.1.0
description:
  - Ensures that exactly one registration entry with a given SPIFFE ID and parent ID exists on a SPIRE server, with
    the given selectors, X.509-SVID TTL and DNS names, or that none exists.
  - Runs the C(spire-server) CLI on the SPIRE server host over its admin socket and reads only its C(-output json)
    answers, never its human-readable output.
  - An entry is found by SPIFFE ID and parent ID. A missing entry is created (C(entry create)); an entry whose
    selectors, X.509-SVID TTL or DNS names differ is updated in place (C(entry update -entryID)), keeping its entry ID
    and every field this module does not manage (JWT-SVID TTL, federation, admin, downstream, expiry, hint). An entry
    is never added next to an existing one; several existing entries for the same SPIFFE ID and parent are an error.
  - With O(node=true) the entry is a node entry (an alias for the nodes its selectors match, such as
    V(x509pop:subject:cn:operator-acme)), whose parent is the SPIRE server itself, C(spiffe://<trust domain>/spire/server).
author:
  - TheProtocol operator collection contributors (!UNKNOWN)
extends_documentation_fragment:
  - theprotocol.operator._attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads the existing entries and reports what would change, without creating, updating or deleting anything.
  diff_mode:
    support: full
  idempotent:
    support: full
requirements:
  - The C(spire-server) binary on the target, with access to the server's admin socket (usually as root).
options:
  spiffe_id:
    description:
      - SPIFFE ID of the entry, for example V(spiffe://example.com/service/registry-acme).
    type: str
    required: true
  parent_id:
    description:
      - SPIFFE ID of the parent, for example a node alias V(spiffe://example.com/node/operator-acme) or an agent ID.
      - Required unless O(node=true); must not be set together with O(node=true).
    type: str
  node:
    description:
      - Manage a node entry (C(entry create -node)). Its parent is C(spiffe://<trust domain of spiffe_id>/spire/server).
    type: bool
    default: false
  selectors:
    description:
      - Selectors in the C(type:value) form, for example V(docker:label:com.docker.compose.service:cert-writer).
      - Compared as a set; required with O(state=present).
    type: list
    elements: str
  x509_svid_ttl:
    description:
      - Lifetime in seconds of the X.509-SVIDs issued for the entry. V(0) leaves it to the server's default.
    type: int
    default: 0
  dns_names:
    description:
      - DNS names to put into the SVIDs issued for the entry, in this order (the first one becomes the subject CN).
    type: list
    elements: str
    default: []
  state:
    description:
      - V(present) creates or updates the entry; V(absent) deletes every entry with O(spiffe_id) and the parent.
    type: str
    choices: [present, absent]
    default: present
  spire_server_bin:
    description:
      - Path of the C(spire-server) binary on the target.
    type: path
    default: /opt/spire/bin/spire-server
  socket_path:
    description:
      - Path of the SPIRE server admin socket. When unset, the CLI's default (C(/tmp/spire-server/private/api.sock)).
    type: path
notes:
  - Entries are looked up with C(spire-server entry show -spiffeID ... -parentID ...), which lists only entries that
    are not C(downstream).
seealso:
  - name: SPIRE server CLI reference
    description: The C(entry) commands of C(spire-server).
    link: https://spiffe.io/docs/latest/deploying/spire_server/
"""

EXAMPLES = r"""
- name: Node alias for an operator's x509pop attestation certificates (survives certificate renewal)
  theprotocol.operator.spire_entry:
    spiffe_id: spiffe://example.com/node/operator-acme
    node: true
    selectors:
      - x509pop:subject:cn:operator-acme

- name: Registry workload of the operator, parented to the alias
  theprotocol.operator.spire_entry:
    spiffe_id: spiffe://example.com/service/registry-acme
    parent_id: spiffe://example.com/node/operator-acme
    selectors:
      - docker:label:com.docker.compose.project:acme
      - docker:label:com.docker.compose.service:cert-writer
    x509_svid_ttl: 3600
    dns_names:
      - registry.acme.example
  register: registry_entry

- name: Remove the workload entry again
  theprotocol.operator.spire_entry:
    spiffe_id: spiffe://example.com/service/registry-acme
    parent_id: spiffe://example.com/node/operator-acme
    state: absent
"""

RETURN = r"""
action:
  description: What the module did (or would do in check mode).
  returned: always
  type: str
  choices: [create, update, delete, none]
  sample: create
entry_id:
  description: ID of the entry; V(null) when there is none, and in check mode for an entry that would be created.
  returned: always
  type: str
  sample: 6b2f8f2e-1b7a-4a43-9d0e-7d8c2e8f9a10
differences:
  description: Managed fields that differed from the wanted state (empty when nothing changes).
  returned: always
  type: list
  elements: str
  sample: [selectors, x509_svid_ttl]
deleted_entry_ids:
  description: IDs of the entries deleted (or that would be deleted) with O(state=absent).
  returned: always
  type: list
  elements: str
  sample: []
entry:
  description: The entry after the change (as predicted in check mode); V(null) with O(state=absent).
  returned: always
  type: dict
  contains:
    id:
      description: Entry ID (empty in check mode before creation).
      type: str
      sample: 6b2f8f2e-1b7a-4a43-9d0e-7d8c2e8f9a10
    spiffe_id:
      description: SPIFFE ID.
      type: str
      sample: spiffe://example.com/service/registry-acme
    parent_id:
      description: Parent SPIFFE ID.
      type: str
      sample: spiffe://example.com/node/operator-acme
    selectors:
      description: Selectors, C(type:value), sorted.
      type: list
      elements: str
      sample: [docker:label:com.docker.compose.project:acme, docker:label:com.docker.compose.service:cert-writer]
    x509_svid_ttl:
      description: X.509-SVID TTL in seconds (V(0) is the server default).
      type: int
      sample: 3600
    jwt_svid_ttl:
      description: JWT-SVID TTL in seconds (not managed by this module).
      type: int
      sample: 0
    dns_names:
      description: DNS names.
      type: list
      elements: str
      sample: []
    federates_with:
      description: Trust domains the entry federates with (not managed by this module).
      type: list
      elements: str
      sample: []
    admin:
      description: Whether the entry grants admin access to the server APIs (not managed by this module).
      type: bool
      sample: false
    downstream:
      description: Whether the entry is for a downstream SPIRE server (not managed by this module).
      type: bool
      sample: false
    store_svid:
      description: Whether SVIDs are stored through an SVIDStore plugin (not managed by this module).
      type: bool
      sample: false
    expires_at:
      description: Expiry of the entry, seconds since the epoch; V(0) when it does not expire.
      type: int
      sample: 0
    hint:
      description: Entry hint.
      type: str
      sample: ''
    revision_number:
      description: Revision of the entry on the server.
      type: int
      sample: 1
    created_at:
      description: Creation time, seconds since the epoch.
      type: int
      sample: 1780574400
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.theprotocol.operator.plugins.module_utils import _spire_cli as spire


class _Runner:
    def __init__(self, module):
        self.module = module
        self.server_bin = module.params['spire_server_bin']
        self.socket_path = module.params['socket_path']

    def run(self, argv, what):
        rc, out, err = self.module.run_command(argv)
        if rc != 0:
            # A JSON error on stdout is the server's own message; stderr holds CLI usage errors.
            try:
                spire.parse_show(out)
            except spire.SpireCliError as exc:
                detail = str(exc)
            else:
                detail = ''
            self.module.fail_json(
                msg='spire-server %s failed (exit %d): %s. Check that the SPIRE server runs on this host and that '
                    'spire_server_bin and socket_path are right.' % (what, rc, (err or '').strip() or detail),
                rc=rc, cmd=argv)
        return out

    def show(self, spiffe_id, parent_id):
        return spire.parse_show(self.run(spire.show_argv(self.server_bin, self.socket_path, spiffe_id, parent_id),
                                         'entry show'))

    def batch(self, argv, what):
        try:
            return spire.parse_batch(self.run(argv, what), what)
        except spire.SpireCliError as exc:
            self.module.fail_json(msg=str(exc), cmd=argv)
        return None  # not reached


def _diff(before, after):
    keep = ('spiffe_id', 'parent_id') + spire.MANAGED_FIELDS
    return {
        'before': {k: before[k] for k in keep} if before else {},
        'after': {k: after[k] for k in keep} if after else {},
    }


def main():
    module = AnsibleModule(
        argument_spec=dict(
            spiffe_id=dict(type='str', required=True),
            parent_id=dict(type='str'),
            node=dict(type='bool', default=False),
            selectors=dict(type='list', elements='str'),
            x509_svid_ttl=dict(type='int', default=0),
            dns_names=dict(type='list', elements='str', default=[]),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            spire_server_bin=dict(type='path', default=spire.DEFAULT_SERVER_BIN),
            socket_path=dict(type='path'),
        ),
        mutually_exclusive=[('parent_id', 'node')],
        required_if=[('state', 'present', ('selectors',)), ('node', False, ('parent_id',))],
        supports_check_mode=True,
    )
    params = module.params
    try:
        trust_domain = spire.trust_domain_of(params['spiffe_id'])
        parent_id = spire.server_id(trust_domain) if params['node'] else params['parent_id']
        spire.trust_domain_of(parent_id)
    except spire.SpireCliError as exc:
        module.fail_json(msg=str(exc))

    runner = _Runner(module)
    try:
        entries = runner.show(params['spiffe_id'], parent_id)
    except spire.SpireCliError as exc:
        module.fail_json(msg=str(exc))
    result = dict(changed=False, action='none', entry_id=None, differences=[], deleted_entry_ids=[], entry=None)

    if params['state'] == 'absent':
        ids = [e['id'] for e in entries if e['spiffe_id'] == params['spiffe_id'] and e['parent_id'] == parent_id]
        if ids:
            result.update(changed=True, action='delete', deleted_entry_ids=ids)
            if module._diff:
                result['diff'] = _diff(entries[0], None)
            if not module.check_mode:
                for entry_id in ids:
                    runner.batch(spire.delete_argv(runner.server_bin, runner.socket_path, entry_id), 'entry delete')
        module.exit_json(**result)

    try:
        desired = spire.desired_entry(params['spiffe_id'], parent_id, params['selectors'],
                                      params['x509_svid_ttl'], params['dns_names'])
        action, existing, diffs = spire.plan(entries, desired)
    except spire.SpireCliError as exc:
        module.fail_json(msg=str(exc))

    after = existing if action == 'none' else spire.predicted(existing, desired)
    result.update(action=action, differences=diffs if action != 'none' else [], entry=after,
                  entry_id=(existing or {}).get('id') or None, changed=action != 'none')
    if module._diff and action != 'none':
        result['diff'] = _diff(existing, after)
    if module.check_mode or action == 'none':
        module.exit_json(**result)

    if action == 'create':
        argv = spire.create_argv(runner.server_bin, runner.socket_path, desired, node=params['node'])
        created = runner.batch(argv, 'entry create')
        result['entry'] = created
        result['entry_id'] = created.get('id') or None
    else:
        argv = spire.update_argv(runner.server_bin, runner.socket_path, existing, desired)
        result['entry'] = runner.batch(argv, 'entry update')
        result['entry_id'] = existing['id']
    module.exit_json(**result)


if __name__ == '__main__':
    main()
