#!/usr/bin/python
# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


DOCUMENTATION = r"""
module: notify_mail
short_description: Send a mail with attachments over SMTP, verifying the server's TLS certificate
version_added: 0.1.0
description:
  - Sends a plain text mail, with files attached, through an SMTP server.
  - Unlike M(community.general.mail), the TLS connection is verified by default; the server's certificate must chain
    to O(ca_path) (or the system CAs) and name O(host). An evidence bundle does not go to a server that impersonates
    the real one.
  - With O(secure=starttls) (the default) the task fails when the server does not offer STARTTLS; it never falls back
    to plain text. O(secure=always) speaks implicit TLS from the first byte (usually port 465).
  - A password is only sent over TLS. O(username) and O(password) with O(secure=never) are refused.
  - Nothing is sent when the task fails. Error messages say what to do next and never contain the password.
author:
  - TheProtocol operator collection contributors (!UNKNOWN)
extends_documentation_fragment:
  - theprotocol.operator._attributes
attributes:
  check_mode:
    support: full
    details:
      - Builds the message (so unreadable attachments and bad addresses fail) but does not connect and sends nothing;
        reports a change.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - Every run sends a mail.
options:
  host:
    description: The SMTP server (name or address) to send through. With O(validate_certs), its certificate must name it.
    type: str
    default: localhost
  port:
    description: The SMTP server's port. Usually 587 or 25 for O(secure=starttls), 465 for O(secure=always).
    type: int
    default: 25
  secure:
    description:
      - V(starttls) connects in plain text and upgrades with STARTTLS before anything else is sent; fails when the
        server does not offer STARTTLS.
      - V(always) speaks TLS from the first byte (implicit TLS, SMTPS).
      - V(never) sends in plain text; only for a trusted local relay, and without O(username).
    type: str
    choices: [starttls, always, never]
    default: starttls
  validate_certs:
    description:
      - Verify the server's certificate (chain to O(ca_path) or the system CAs, and O(host) in its names).
      - Set to V(false) only for a test server; the connection is then encrypted but anyone on the path can read it.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file (or C(c_rehash) directory) with the CA certificates to verify the server's certificate with.
      - Default is the system CA store.
    type: path
  username:
    description: User to log in as (AUTH PLAIN or LOGIN, after TLS). Without it, the client does not log in.
    type: str
  password:
    description: Password for O(username).
    type: str
  timeout:
    description: Timeout in seconds for the connection and each SMTP command.
    type: int
    default: 30
  sender:
    description: The From address, C(user@example.com) or C(Name <user@example.com>); also the envelope sender.
    type: str
    required: true
  to:
    description: Recipients (To), one address per item.
    type: list
    elements: str
    required: true
  cc:
    description: Recipients (Cc), one address per item.
    type: list
    elements: str
    default: []
  subject:
    description: The subject, on one line.
    type: str
    required: true
  body:
    description: The text body (UTF-8).
    type: str
    default: ''
  attach:
    description:
      - Files to attach, read where the module runs (the controller with C(delegate_to=localhost)).
      - The MIME type is guessed from the name (C(.tar.gz) is C(application/gzip)); unknown ones are
        C(application/octet-stream).
    type: list
    elements: path
    default: []
  local_hostname:
    description:
      - Name to greet the server with (EHLO) and the domain of the C(Message-ID).
      - Default is the fully qualified name of the host for EHLO and the sender's domain for the C(Message-ID).
    type: str
notes:
  - Run it on the controller (C(delegate_to=localhost)) when the attachments are there.
seealso:
  - module: community.general.mail
"""

EXAMPLES = r"""
- name: Mail the escalation with the evidence bundle, verified against a private CA
  theprotocol.operator.notify_mail:
    host: smtp.example.com
    port: 587
    secure: starttls
    ca_path: /etc/ssl/private-ca/mail-ca.pem
    username: incident
    password: "{{ smtp_password }}"
    sender: Incident response <incident-response@example.com>
    to:
      - security@example.com
    subject: "[TheProtocol incident] registry5: revoked"
    body: "{{ lookup('ansible.builtin.file', 'summary.txt') }}"
    attach:
      - /var/tmp/incident-registry5.tar.gz
  delegate_to: localhost
  register: mail

- name: Show how the mail went
  ansible.builtin.debug:
    msg: "{{ mail.message_id }} to {{ mail.recipients | join(', ') }} over {{ mail.tls.version }}"

- name: Implicit TLS (SMTPS) with the system CAs
  theprotocol.operator.notify_mail:
    host: smtp.example.com
    port: 465
    secure: always
    sender: ops@example.com
    to: [oncall@example.com]
    cc: [security@example.com]
    subject: Nightly checklist failed
    body: See the attached report.
    attach: [/var/tmp/fleet.md]
  delegate_to: localhost
"""

RETURN = r"""
message_id:
  description: The C(Message-ID) header of the mail (in check mode, of the mail that was built and not sent).
  returned: always
  type: str
  sample: <172905125012.4242.1234567890123456789@example.com>
sender:
  description: The envelope sender.
  returned: always
  type: str
  sample: incident-response@example.com
recipients:
  description: The envelope recipients (O(to), then O(cc), each address once).
  returned: always
  type: list
  elements: str
  sample: [security@example.com, ops@example.com]
refused:
  description:
    - Recipients the server refused while it accepted the others, with its reply. The task then warns.
    - When the server refuses every recipient the task fails instead.
  returned: success
  type: dict
  sample: {nobody@example.com: "550 5.1.1 No such user"}
tls:
  description: The TLS connection the mail went over; V(null) with O(secure=never) and in check mode.
  returned: always
  type: dict
  contains:
    version:
      description: The negotiated TLS version.
      type: str
      sample: TLSv1.3
    cipher:
      description: The negotiated cipher suite.
      type: str
      sample: TLS_AES_256_GCM_SHA384
    verified:
      description: Whether the server's certificate was verified (chain and host name), that is O(validate_certs).
      type: bool
      sample: true
    ca:
      description: What it was verified against, O(ca_path) or V(system); V(null) when not verified.
      type: str
      sample: /etc/ssl/private-ca/mail-ca.pem
  sample:
    version: TLSv1.3
    cipher: TLS_AES_256_GCM_SHA384
    verified: true
    ca: /etc/ssl/private-ca/mail-ca.pem
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.theprotocol.operator.plugins.module_utils import _mail


def main():
    module = AnsibleModule(
        argument_spec=dict(
            host=dict(type='str', default='localhost'),
            port=dict(type='int', default=25),
            secure=dict(type='str', default='starttls', choices=list(_mail.SECURE_CHOICES)),
            validate_certs=dict(type='bool', default=True),
            ca_path=dict(type='path'),
            username=dict(type='str'),
            password=dict(type='str', no_log=True),
            timeout=dict(type='int', default=30),
            sender=dict(type='str', required=True),
            to=dict(type='list', elements='str', required=True),
            cc=dict(type='list', elements='str', default=[]),
            subject=dict(type='str', required=True),
            body=dict(type='str', default=''),
            attach=dict(type='list', elements='path', default=[]),
            local_hostname=dict(type='str'),
        ),
        supports_check_mode=True,
    )
    params = module.params
    if params['ca_path'] and not params['validate_certs'] and params['secure'] != 'never':
        module.warn('ca_path is ignored: validate_certs=false does not verify the SMTP server\'s certificate.')

    try:
        msg = _mail.build_message(params['sender'], params['to'], params['subject'], body=params['body'],
                                  cc=params['cc'], attach=params['attach'], local_hostname=params['local_hostname'])
    except _mail.MailError as exc:
        module.fail_json(msg=str(exc))
    sender, recipients = _mail.envelope(msg)

    if module.check_mode:
        module.exit_json(changed=True, message_id=str(msg['Message-ID']), sender=sender, recipients=recipients,
                         tls=None, msg='Check mode: the mail was not sent.')

    try:
        result = _mail.send(msg, params['host'], port=params['port'], secure=params['secure'],
                            validate_certs=params['validate_certs'], ca_path=params['ca_path'],
                            username=params['username'], password=params['password'], timeout=params['timeout'],
                            local_hostname=params['local_hostname'])
    except _mail.MailError as exc:
        module.fail_json(msg=str(exc))
    for rcpt, reply in sorted(result['refused'].items()):
        module.warn('The SMTP server refused the recipient %s (%s); the others got the mail.' % (rcpt, reply))
    module.exit_json(changed=True, **result)


if __name__ == '__main__':
    main()
