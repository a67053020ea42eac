# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# PRIVATE to this collection: may change at any time, do not use from elsewhere.

"""Build a mail and send it over SMTP with a verified TLS connection.

No Ansible imports; the module ``notify_mail`` is a thin wrapper around
:func:`build_message` and :func:`send`, and the unit tests import this file directly.

Unlike ``smtplib`` used without an SSL context (``community.general.mail``), every TLS
connection here is made with ``ssl.create_default_context()``: the server's certificate
must chain to ``ca_path`` (or the system CAs) and name the host that was connected to.
Only ``validate_certs=False`` turns that off. ``secure=starttls`` fails when the server
does not offer STARTTLS instead of falling back to plain text, and a password is only
ever sent over TLS unless the caller explicitly allows otherwise with ``secure=never``.

Every failure is a :class:`MailError` whose message says what to do next and never
contains the password (nor its base64 forms, as sent by AUTH PLAIN and AUTH LOGIN).
"""

from __future__ import annotations

import base64
import email.utils
import io
import mimetypes
import os
import smtplib
import socket
import ssl
from email.generator import BytesGenerator
from email.message import EmailMessage

SECURE_CHOICES = ('starttls', 'always', 'never')

# Compressed files: mimetypes reports the container type plus an encoding ('.tar.gz' is
# ('application/x-tar', 'gzip')); what is attached is the compressed file.
_ENCODING_TYPES = {
    'gzip': 'application/gzip',
    'bzip2': 'application/x-bzip2',
    'xz': 'application/x-xz',
    'compress': 'application/x-compress',
    'br': 'application/x-brotli',
}

# OpenSSL verify codes for a certificate that does not name the host connected to.
_X509_V_ERR_HOSTNAME_MISMATCH = 62
_X509_V_ERR_IP_ADDRESS_MISMATCH = 64


class MailError(Exception):
    """Building or sending the mail failed; the message says what to do next."""


# --------------------------------------------------------------------------------------
# The message
# --------------------------------------------------------------------------------------

def _addresses(values, what):
    """Parse ``values`` (each 'user@host' or 'Name <user@host>') into (header value, address) pairs."""
    parsed = []
    for value in values:
        if not isinstance(value, str) or not value.strip():
            raise MailError('%s: %r is not a mail address. Give addresses like user@example.com or '
                            '"Name <user@example.com>".' % (what, value))
        if '\n' in value or '\r' in value:
            raise MailError('%s: %r contains a line break. Give one address per list item.' % (what, value))
        pairs = email.utils.getaddresses([value])
        if len(pairs) != 1 or '@' not in pairs[0][1] or ' ' in pairs[0][1]:
            raise MailError('%s: %r is not one mail address. Give addresses like user@example.com or '
                            '"Name <user@example.com>", one per list item.' % (what, value))
        if not pairs[0][1].isascii():
            raise MailError('%s: %r is not an ASCII address. Give the address in ASCII (punycode for the domain); '
                            'the display name may hold any characters.' % (what, value))
        parsed.append((value.strip(), pairs[0][1]))
    return parsed


def _content_type(path):
    ctype, encoding = mimetypes.guess_type(path, strict=False)
    if encoding:
        return _ENCODING_TYPES.get(encoding, 'application/octet-stream')
    return ctype or 'application/octet-stream'


def _read_attachments(paths):
    attachments = []
    for path in paths:
        if not isinstance(path, str) or not path:
            raise MailError('attach: %r is not a file path. Give the paths of the files to attach.' % (path,))
        if not os.path.exists(path):
            raise MailError('attach: %s does not exist. Nothing was sent; check the path (it is read where the '
                            'task runs, usually the controller with delegate_to: localhost).' % path)
        if not os.path.isfile(path):
            raise MailError('attach: %s is not a regular file. Attach files only (pack a directory with '
                            'community.general.archive first).' % path)
        try:
            with open(path, 'rb') as handle:
                data = handle.read()
        except OSError as exc:
            raise MailError('attach: cannot read %s (%s). Nothing was sent; check its permissions.'
                            % (path, exc.strerror or exc)) from None
        attachments.append((path, data, _content_type(path)))
    return attachments


def _header_text(value, what):
    if value is None:
        return ''
    if not isinstance(value, str):
        value = str(value)
    if '\n' in value or '\r' in value:
        # A folded YAML scalar (">-") keeps no line break; a literal one would inject headers.
        raise MailError('%s contains a line break, which a mail header cannot hold. Put it on one line (in YAML use '
                        '">-" rather than "|").' % what)
    return value


def build_message(sender, to, subject, body='', cc=None, attach=None, local_hostname=None, date=None):
    """Return an ``EmailMessage``: text body, ``attach`` files read from their paths with a guessed MIME type.

    Raises :class:`MailError` for unusable input, before anything connects anywhere.
    ``date`` (a ``datetime``) is for tests; the default is now, in local time.
    """
    sender_pairs = _addresses([sender], 'sender')
    to_pairs = _addresses(list(to or []), 'to')
    cc_pairs = _addresses(list(cc or []), 'cc')
    if not to_pairs:
        raise MailError('No recipient: to is empty. Give at least one address in to.')
    subject = _header_text(subject, 'subject')
    if not subject.strip():
        raise MailError('subject is empty. Give a subject, so that the mail is not taken for spam or ignored.')
    attachments = _read_attachments(list(attach or []))

    msg = EmailMessage()
    msg['From'] = sender_pairs[0][0]
    msg['To'] = ', '.join(v for v, _a in to_pairs)
    if cc_pairs:
        msg['Cc'] = ', '.join(v for v, _a in cc_pairs)
    msg['Subject'] = subject
    msg['Date'] = email.utils.format_datetime(date) if date is not None else email.utils.formatdate(localtime=True)
    domain = local_hostname or sender_pairs[0][1].rpartition('@')[2] or 'localhost'
    msg['Message-ID'] = email.utils.make_msgid(domain=domain)
    body = body if body is not None else ''
    # Plain ASCII stays readable (7bit); anything else quoted-printable, since a server need not offer 8BITMIME.
    msg.set_content(body, cte=None if body.isascii() else 'quoted-printable')
    for path, data, ctype in attachments:
        maintype, _sep, subtype = ctype.partition('/')
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=os.path.basename(path))
    return msg


def envelope(msg):
    """The envelope sender and recipients (To, then Cc; each address once) of a message from :func:`build_message`."""
    sender = email.utils.getaddresses([str(msg['From'])])[0][1]
    recipients = []
    for header in ('To', 'Cc'):
        for _name, addr in email.utils.getaddresses([str(v) for v in msg.get_all(header, [])]):
            if addr and addr not in recipients:
                recipients.append(addr)
    return sender, recipients


def flatten(msg):
    """The bytes of ``msg`` as they go over the wire (CRLF line ends, before SMTP dot-stuffing)."""
    out = io.BytesIO()
    BytesGenerator(out, policy=msg.policy.clone(linesep='\r\n')).flatten(msg)
    return out.getvalue()


# --------------------------------------------------------------------------------------
# Sending
# --------------------------------------------------------------------------------------

def tls_context(validate_certs=True, ca_path=None):
    """The SSL context for the SMTP connection: verified (chain and host name) unless ``validate_certs`` is False."""
    if ca_path and not os.path.exists(ca_path):
        raise MailError('ca_path %s does not exist. Point it at the PEM file (or c_rehash directory) of the CA that '
                        'signed the SMTP server\'s certificate.' % ca_path)
    try:
        if ca_path and os.path.isdir(ca_path):
            context = ssl.create_default_context(capath=ca_path)
        else:
            context = ssl.create_default_context(cafile=ca_path or None)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise MailError('ca_path %s is not a usable CA file (%s). Give a PEM file with the CA certificate that signed '
                        'the SMTP server\'s certificate.' % (ca_path, exc)) from None
    if not validate_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Scrubber:
    """Removes the password, and the base64 forms AUTH PLAIN and LOGIN send it in, from a text."""

    def __init__(self, username, password):
        self.secrets = []
        if password:
            forms = [password, base64.b64encode(password.encode('utf-8')).decode('ascii')]
            if username is not None:
                forms.append(base64.b64encode(('\0%s\0%s' % (username, password)).encode('utf-8')).decode('ascii'))
            # Longest first, so that no part of a longer form is left behind.
            self.secrets = sorted(set(forms), key=len, reverse=True)

    def __call__(self, text):
        for secret in self.secrets:
            text = text.replace(secret, '********')
        return text


def _smtp_reply(exc):
    code = getattr(exc, 'smtp_code', None)
    reply = getattr(exc, 'smtp_error', b'')
    if isinstance(reply, bytes):
        reply = reply.decode('utf-8', 'replace')
    return ('%s %s' % (code, reply)).strip() if code is not None else str(exc)


def _certificate_error(exc, where, ca_path, host):
    reason = getattr(exc, 'verify_message', None) or getattr(exc, 'reason', None) or str(exc)
    trusted = ca_path or 'the system CA store'
    if getattr(exc, 'verify_code', None) in (_X509_V_ERR_HOSTNAME_MISMATCH, _X509_V_ERR_IP_ADDRESS_MISMATCH):
        return ('The SMTP server\'s certificate at %s does not name the host %s: %s. Nothing was sent. Set host to '
                'a name (or address) the certificate was issued for, or have the certificate reissued with %s in its '
                'subject alternative names; validate_certs=false only for a test server.' % (where, host, reason, host))
    return ('The SMTP server\'s certificate at %s did not verify against %s: %s. Nothing was sent. Set ca_path to the '
            'CA that signed it, or validate_certs=false only for a test server.' % (where, trusted, reason))


def _tls_info(smtp, validate_certs, ca_path):
    sock = smtp.sock
    if not isinstance(sock, ssl.SSLSocket):
        return None
    cipher = sock.cipher()
    return {'version': sock.version(), 'cipher': cipher[0] if cipher else None, 'verified': bool(validate_certs),
            'ca': (ca_path or 'system') if validate_certs else None}


def send(msg, host, port=25, secure='starttls', validate_certs=True, ca_path=None, username=None, password=None,
         timeout=30, local_hostname=None, allow_plaintext_auth=False):
    """Send ``msg`` (from :func:`build_message`) through the SMTP server ``host``:``port``.

    ``secure``: ``starttls`` (plain connection upgraded with STARTTLS, which the server must
    offer), ``always`` (implicit TLS from the first byte, usually port 465) or ``never``.
    With ``username``, the client logs in after TLS; over ``secure=never`` only when
    ``allow_plaintext_auth`` is True.

    Returns ``{'message_id', 'sender', 'recipients', 'refused', 'tls'}``; ``refused`` maps the
    recipients the server refused while accepting the others to its reply, ``tls`` is None
    without TLS, else ``{'version', 'cipher', 'verified', 'ca'}`` (``ca`` is ``ca_path``,
    ``system`` for the system CAs, None when not verified).
    Raises :class:`MailError`; nothing was sent when it is raised.
    """
    if secure not in SECURE_CHOICES:
        raise MailError('secure must be one of %s, got %r.' % (', '.join(SECURE_CHOICES), secure))
    if not host:
        raise MailError('host is empty. Give the SMTP server to send through.')
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise MailError('port must be 1 to 65535, got %r.' % (port,))
    if timeout is None or timeout <= 0:
        raise MailError('timeout must be more than 0 seconds, got %r.' % (timeout,))
    if password and not username:
        raise MailError('password is set without username. Set username as well, or remove password.')
    if username and not password:
        raise MailError('username %s is set without password. Set password as well, or remove username.' % username)
    if not (username or '').isascii() or not (password or '').isascii():
        # smtplib encodes AUTH PLAIN and LOGIN as ASCII and would fail half-way through the login.
        raise MailError('username and password must be ASCII for SMTP AUTH (PLAIN and LOGIN). Nothing was sent; '
                        'use an ASCII password for the mail account.')
    if username and secure == 'never' and not allow_plaintext_auth:
        raise MailError('Refusing to send the SMTP password in plain text (secure=never). Nothing was sent. Use '
                        'secure=starttls or secure=always, or remove username and password for a relay that needs no '
                        'login.')
    sender, recipients = envelope(msg)
    if not recipients:
        raise MailError('No recipient: the message has neither To nor Cc addresses.')
    context = tls_context(validate_certs, ca_path) if secure != 'never' else None
    scrub = _Scrubber(username, password)
    where = '%s:%d' % (host, port)

    smtp = error = None
    stage = 'connect'
    try:
        try:
            # The host goes to the constructor: smtplib keeps it (as the TLS server_hostname that the
            # certificate must name) only from there, not from a later connect().
            try:
                if secure == 'always':
                    smtp = smtplib.SMTP_SSL(host, port, local_hostname=local_hostname, timeout=timeout,
                                            context=context)
                else:
                    smtp = smtplib.SMTP(host, port, local_hostname=local_hostname, timeout=timeout)
            except smtplib.SMTPConnectError as exc:
                raise MailError('%s did not greet as an SMTP server (%s). Nothing was sent. Check host and port.'
                                % (where, _smtp_reply(exc))) from None
            stage = 'greet it'
            if smtp.ehlo()[0] != 250:
                smtp.helo()
            if secure == 'starttls':
                if not smtp.has_extn('starttls'):
                    raise MailError(
                        'The SMTP server %s does not offer STARTTLS, so the mail (and any password) would travel in '
                        'plain text. Nothing was sent. Check host and port (STARTTLS is usually on 587 or 25), use '
                        'secure=always for a server that speaks implicit TLS (usually port 465), or secure=never only '
                        'for a trusted local relay.' % where)
                stage = 'start TLS'
                smtp.starttls(context=context)
                stage = 'greet it over TLS'
                smtp.ehlo()
            tls = _tls_info(smtp, validate_certs, ca_path)
            if username:
                stage = 'log in'
                if not smtp.has_extn('auth'):
                    raise MailError('The SMTP server %s offers no AUTH%s, so it cannot check username %s. Nothing was '
                                    'sent. Remove username and password if it relays without a login, or check host '
                                    'and port (submission is usually 587).'
                                    % (where, ' after TLS' if tls else '', username))
                smtp.login(username, password)
            stage = 'send the mail'
            refused = smtp.sendmail(sender, recipients, flatten(msg))
        except MailError:
            raise
        except ssl.SSLCertVerificationError as exc:
            raise MailError(_certificate_error(exc, where, ca_path, host)) from None
        except ssl.SSLError as exc:
            hint = ('If the server expects STARTTLS on this port (usually 587 or 25), set secure=starttls.'
                    if secure == 'always' else
                    'Check that the server supports TLS 1.2 or later.')
            raise MailError('The TLS handshake with the SMTP server %s failed: %s. Nothing was sent. %s'
                            % (where, exc.reason or exc, hint)) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise MailError('The SMTP server %s refused the login of %s (%s). Nothing was sent. Check username and '
                            'password.' % (where, username, _smtp_reply(exc))) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise MailError('The SMTP server %s does not support what the client needed to %s (%s). Nothing was '
                            'sent.' % (where, stage, exc)) from None
        except smtplib.SMTPException as exc:
            if isinstance(exc, smtplib.SMTPSenderRefused):
                what = 'refused the sender %s (%s). Use a sender address the server accepts for this login' % (
                    sender, _smtp_reply(exc))
            elif isinstance(exc, smtplib.SMTPRecipientsRefused):
                what = 'refused every recipient (%s). Check the addresses in to and cc, and whether the server relays ' \
                       'for them (a login may be needed)' % '; '.join(
                           '%s: %s %s' % (rcpt, code, reply.decode('utf-8', 'replace') if isinstance(reply, bytes)
                                          else reply) for rcpt, (code, reply) in exc.recipients.items())
            elif isinstance(exc, smtplib.SMTPDataError):
                what = 'refused the message (%s). Check its size and the server\'s policy' % _smtp_reply(exc)
            elif isinstance(exc, smtplib.SMTPServerDisconnected):
                what = 'closed the connection when the client tried to %s (%s). Check host, port and secure' % (
                    stage, exc)
            elif isinstance(exc, smtplib.SMTPResponseException):
                what = 'answered %s when the client tried to %s. Check host, port and secure' % (
                    _smtp_reply(exc), stage)
            else:
                what = 'failed: %s' % exc
            raise MailError('The SMTP server %s %s. Nothing was sent.' % (where, what)) from None
        except socket.gaierror as exc:
            raise MailError('Cannot resolve the SMTP server name %s (%s). Check host.' % (host, exc.strerror or exc)) \
                from None
        except (socket.timeout, TimeoutError):
            raise MailError('Timed out after %s s when trying to %s (SMTP server %s). Nothing was sent. Check host, '
                            'port and firewalls, or raise timeout.' % (timeout, stage, where)) from None
        except OSError as exc:
            if stage == 'connect':
                raise MailError('Cannot connect to the SMTP server %s: %s. Nothing was sent. Check host and port, and '
                                'that the server runs.' % (where, exc.strerror or exc)) from None
            raise MailError('Lost the connection to the SMTP server %s when trying to %s: %s. Nothing was sent. '
                            'Check host, port and secure.' % (where, stage, exc.strerror or exc)) from None
    except MailError as exc:
        if smtp is not None:
            smtp.close()
        error = scrub(str(exc))
    if error is not None:
        # Raised outside the handler: no chained exception keeps an unscrubbed server reply.
        raise MailError(error)

    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()  # the message was accepted already: a failed QUIT changes nothing
    return {
        'message_id': str(msg['Message-ID']),
        'sender': sender,
        'recipients': recipients,
        'refused': {rcpt: '%s %s' % (code, reply.decode('utf-8', 'replace') if isinstance(reply, bytes) else reply)
                    for rcpt, (code, reply) in (refused or {}).items()},
        'tls': tls,
    }
