# Copyright (c) TheProtocol operator collection contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_mail against a real SMTP server in a thread, with a real CA and server certificates.

Nothing of ours is mocked: the server below speaks SMTP (EHLO, STARTTLS, AUTH PLAIN and
LOGIN, MAIL, RCPT, DATA, QUIT) over real sockets and does real TLS handshakes with
certificates made by ``cryptography`` (the helpers of tests/unit/conftest.py).
"""

from __future__ import annotations

import base64
import datetime
import email
import email.policy
import email.utils
import ipaddress
import socket
import socketserver
import ssl
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ansible_collections.theprotocol.operator.plugins.module_utils import _mail as m

PASSWORD = 'S3cret-password+/='  # base64-ish characters: its base64 forms must be scrubbed too
USER = 'incident'
TIMEOUT = 10

# --------------------------------------------------------------------------------------
# Certificates (real validity: the conftest's fixed NOW is not today's date)
# --------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def certs(pki, tmp_path_factory):
    now = datetime.datetime.now(datetime.timezone.utc)
    validity = dict(not_before=now - datetime.timedelta(hours=1), not_after=now + datetime.timedelta(days=1))
    out = tmp_path_factory.mktemp('mail-pki')

    def write(name, data):
        path = out / name
        path.write_bytes(data)
        return str(path)

    def leaf(ca, ca_key, sans):
        key = pki.make_key()
        cert = pki.make_cert(key, 'smtp', issuer=(ca, ca_key), **validity)
        # conftest.make_cert knows DNS and URI SANs only: add an IP SAN by re-issuing with the same builder inputs.
        if sans:
            builder = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(cert.issuer)
                       .public_key(key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(validity['not_before']).not_valid_after(validity['not_after']))
            for ext in cert.extensions:
                builder = builder.add_extension(ext.value, critical=ext.critical)
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            cert = builder.sign(ca_key, hashes.SHA256())
        return cert, key

    ca_key = pki.make_key()
    ca = pki.make_cert(ca_key, 'mail test CA', ca=True, **validity)
    other_ca_key = pki.make_key()
    other_ca = pki.make_cert(other_ca_key, 'another CA', ca=True, **validity)
    good = leaf(ca, ca_key, [x509.DNSName('localhost'), x509.IPAddress(ipaddress.ip_address('127.0.0.1'))])
    foreign = leaf(other_ca, other_ca_key, [x509.DNSName('localhost'), x509.IPAddress(ipaddress.ip_address('127.0.0.1'))])
    wrong_name = leaf(ca, ca_key, [x509.DNSName('mail.example.net')])
    pair = {}
    for name, (cert, key) in (('good', good), ('foreign', foreign), ('wrong_name', wrong_name)):
        pair[name] = (write(name + '.crt', pki.cert_pem(cert)), write(name + '.key', pki.key_pem(key)))
    return {'ca': write('ca.crt', pki.cert_pem(ca)), 'other_ca': write('other-ca.crt', pki.cert_pem(other_ca)), **pair}


# --------------------------------------------------------------------------------------
# A small SMTP server
# --------------------------------------------------------------------------------------


class _Handler(socketserver.StreamRequestHandler):
    timeout = TIMEOUT

    def setup(self):
        super().setup()
        self.tls = False
        self.user = None

    def _rewrap(self, sock):
        self.request = self.connection = sock
        self.rfile = sock.makefile('rb')
        self.wfile = socketserver._SocketWriter(sock)  # pylint: disable=protected-access

    def reply(self, line):
        self.wfile.write(line.encode('utf-8') + b'\r\n')

    def readline(self):
        line = self.rfile.readline(65536)
        if not line:
            raise EOFError
        return line.rstrip(b'\r\n').decode('utf-8', 'replace')

    def handle(self):
        sink = self.server.sink
        try:
            if sink.implicit_tls:
                self._rewrap(sink.context.wrap_socket(self.request, server_side=True))
                self.tls = True
            self.reply('220 localhost test ESMTP')
            mail_from, rcpts = None, []
            while True:
                line = self.readline()
                verb, _sep, arg = line.partition(' ')
                verb = verb.upper()
                sink.commands.append(verb)
                if verb == 'EHLO':
                    caps = ['localhost', '8BITMIME']
                    if sink.starttls and not self.tls:
                        caps.append('STARTTLS')
                    if sink.users and (self.tls or not sink.require_tls):
                        caps.append('AUTH ' + ' '.join(sink.mechanisms))
                    for cap in caps[:-1]:
                        self.reply('250-' + cap)
                    self.reply('250 ' + caps[-1])
                elif verb == 'HELO':
                    self.reply('250 localhost')
                elif verb == 'STARTTLS' and sink.starttls and not self.tls:
                    self.reply('220 Ready to start TLS')
                    self._rewrap(sink.context.wrap_socket(self.request, server_side=True))
                    self.tls, mail_from, rcpts = True, None, []
                elif verb == 'AUTH' and sink.users:
                    self.auth(arg)
                elif verb == 'MAIL':
                    if sink.require_tls and not self.tls:
                        self.reply('530 5.7.0 Must issue a STARTTLS command first')
                    else:
                        mail_from, rcpts = arg.partition(':')[2].strip().split(' ')[0].strip('<>'), []
                        self.reply('250 OK')
                elif verb == 'RCPT':
                    rcpt = arg.partition(':')[2].strip().strip('<>')
                    if rcpt in sink.reject:
                        self.reply('550 5.1.1 No such user')
                    else:
                        rcpts.append(rcpt)
                        self.reply('250 OK')
                elif verb == 'DATA':
                    self.reply('354 End data with <CR><LF>.<CR><LF>')
                    data = bytearray()
                    while True:
                        raw = self.rfile.readline(1 << 20)
                        if raw in (b'.\r\n', b''):
                            break
                        data += raw[1:] if raw.startswith(b'.') else raw
                    sink.messages.append({'mail_from': mail_from, 'rcpt_tos': rcpts, 'data': bytes(data),
                                          'tls': self.tls, 'user': self.user})
                    self.reply('250 Message accepted')
                elif verb in ('RSET', 'NOOP'):
                    self.reply('250 OK')
                elif verb == 'QUIT':
                    self.reply('221 Bye')
                    return
                else:
                    self.reply('502 5.5.2 Command not implemented')
        except (EOFError, OSError):
            return  # a client that gave up (e.g. after refusing our certificate) or a failed handshake

    def auth(self, arg):
        sink = self.server.sink
        mech, _sep, initial = arg.partition(' ')
        mech = mech.upper()
        if mech not in sink.mechanisms:
            self.reply('504 5.5.4 Unrecognized authentication type')
            return
        if mech == 'PLAIN':
            blob = initial or (self.reply('334 ') or self.readline())
            _authz, user, password = base64.b64decode(blob).decode('utf-8').split('\0')
            sent = blob
        else:
            user_b64 = initial or (self.reply('334 VXNlcm5hbWU6') or self.readline())
            self.reply('334 UGFzc3dvcmQ6')
            sent = self.readline()
            user, password = base64.b64decode(user_b64).decode('utf-8'), base64.b64decode(sent).decode('utf-8')
        if sink.users.get(user) == password:
            self.user = user
            self.reply('235 2.7.0 Authentication successful')
        elif sink.echo_auth:  # a careless server that quotes what it got, and the password in clear
            self.reply('535 5.7.8 Authentication failed for %s (got %s, password %s)' % (user, sent, password))
        else:
            self.reply('535 5.7.8 Authentication credentials invalid')


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class Sink:
    """A real SMTP server on 127.0.0.1 in a thread; ``messages`` holds what it accepted."""

    def __init__(self, cert, starttls=True, implicit_tls=False, require_tls=True, users=None,
                 mechanisms=('PLAIN', 'LOGIN'), echo_auth=False, reject=()):
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(*cert)
        self.starttls, self.implicit_tls, self.require_tls = starttls, implicit_tls, require_tls
        self.users, self.mechanisms, self.echo_auth, self.reject = users or {}, mechanisms, echo_auth, set(reject)
        self.messages, self.commands = [], []
        self.server = _Server(('127.0.0.1', 0), _Handler)
        self.server.sink = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={'poll_interval': 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


@pytest.fixture
def bundle(tmp_path):
    path = tmp_path / 'incident-registry5-20260101T000000Z.tar.gz'
    path.write_bytes(bytes(range(256)) * 64 + b'\r\n.\r\n..\n\x00end')  # binary, with SMTP-hostile sequences
    return path


def _message(attach=(), **kwargs):
    args = dict(sender='Incident response <incident-response@ops.example.com>',
                to=['security@example.com'], subject='[TheProtocol incident] registry5 (operator5): revoked',
                body='Registry: registry5\nCategory: revoked\n.\nA line with only a dot above.\n')
    args.update(kwargs)
    return m.build_message(attach=[str(p) for p in attach], **args)


def _send(msg, sink, **kwargs):
    args = dict(host='localhost', port=sink.port, timeout=TIMEOUT)
    args.update(kwargs)
    return m.send(msg, **args)


def _attachments(raw):
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    return {part.get_filename(): part for part in parsed.iter_attachments()}, parsed


# --------------------------------------------------------------------------------------
# Delivery
# --------------------------------------------------------------------------------------


def test_starttls_verified_delivers_attachment_byte_for_byte(certs, bundle):
    msg = _message(attach=[bundle], cc=['Ops <ops@example.com>'])
    with Sink(certs['good']) as sink:
        result = _send(msg, sink, ca_path=certs['ca'])
    assert len(sink.messages) == 1
    got = sink.messages[0]
    assert got['tls'] is True and got['mail_from'] == 'incident-response@ops.example.com'
    assert got['rcpt_tos'] == ['security@example.com', 'ops@example.com']
    assert got['data'] == m.flatten(msg)  # exactly what was sent, after dot-unstuffing
    attachments, parsed = _attachments(got['data'])
    assert list(attachments) == [bundle.name]
    assert attachments[bundle.name].get_content_type() == 'application/gzip'
    assert attachments[bundle.name].get_content() == bundle.read_bytes()
    assert parsed['Message-ID'] == result['message_id'] and parsed['Date']
    assert parsed['Subject'] == '[TheProtocol incident] registry5 (operator5): revoked'
    assert parsed.get_body(('plain',)).get_content().replace('\r\n', '\n') == \
        'Registry: registry5\nCategory: revoked\n.\nA line with only a dot above.\n'
    assert result['recipients'] == ['security@example.com', 'ops@example.com']
    assert result['refused'] == {}
    assert result['tls']['verified'] is True and result['tls']['ca'] == certs['ca']
    assert result['tls']['version'] in ('TLSv1.2', 'TLSv1.3')
    assert sink.commands.index('STARTTLS') < sink.commands.index('MAIL')


def test_implicit_tls_always(certs, bundle):
    with Sink(certs['good'], starttls=False, implicit_tls=True) as sink:
        result = _send(_message(attach=[bundle]), sink, secure='always', ca_path=certs['ca'])
    assert [msg['tls'] for msg in sink.messages] == [True]
    assert 'STARTTLS' not in sink.commands
    assert result['tls']['verified'] is True


def test_ip_address_host_is_checked_against_ip_san(certs):
    with Sink(certs['good']) as sink:
        result = _send(_message(), sink, host='127.0.0.1', ca_path=certs['ca'])
    assert len(sink.messages) == 1 and result['tls']['verified'] is True


def test_ca_path_directory(certs, tmp_path):
    # A c_rehash-style directory: <subject hash>.0
    import subprocess
    try:
        subject_hash = subprocess.run(['openssl', 'x509', '-hash', '-noout', '-in', certs['ca']], check=True,
                                      capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip('openssl CLI not available to compute the subject hash')
    (tmp_path / (subject_hash + '.0')).write_bytes(open(certs['ca'], 'rb').read())
    with Sink(certs['good']) as sink:
        _send(_message(), sink, ca_path=str(tmp_path))
    assert len(sink.messages) == 1


# --------------------------------------------------------------------------------------
# Refusals: nothing delivered, and a message saying what to do
# --------------------------------------------------------------------------------------


def test_certificate_from_another_ca_is_refused(certs):
    with Sink(certs['foreign']) as sink:
        with pytest.raises(m.MailError) as exc:
            _send(_message(), sink, ca_path=certs['ca'])
    assert sink.messages == [] and 'MAIL' not in sink.commands
    text = str(exc.value)
    assert "The SMTP server's certificate at localhost:%d did not verify against %s" % (sink.port, certs['ca']) in text
    assert 'unable to get local issuer certificate' in text
    assert 'Set ca_path to the CA that signed it, or validate_certs=false only for a test server.' in text


def test_system_cas_refuse_a_private_ca(certs):
    with Sink(certs['good']) as sink:
        with pytest.raises(m.MailError, match='did not verify against the system CA store'):
            _send(_message(), sink)
    assert sink.messages == []


def test_hostname_mismatch_is_refused(certs):
    with Sink(certs['wrong_name']) as sink:
        with pytest.raises(m.MailError) as exc:
            _send(_message(), sink, ca_path=certs['ca'])
    assert sink.messages == []
    text = str(exc.value)
    assert 'does not name the host localhost' in text and 'Hostname mismatch' in text
    assert 'Set host to a name (or address) the certificate was issued for' in text


def test_validate_certs_false_delivers(certs):
    with Sink(certs['foreign']) as sink:
        result = _send(_message(), sink, validate_certs=False, ca_path=certs['ca'])
    assert len(sink.messages) == 1 and sink.messages[0]['tls'] is True
    assert result['tls']['verified'] is False and result['tls']['ca'] is None


def test_starttls_not_offered_fails_without_plaintext_fallback(certs):
    with Sink(certs['good'], starttls=False, require_tls=False, users={USER: PASSWORD}) as sink:
        with pytest.raises(m.MailError) as exc:
            _send(_message(), sink, ca_path=certs['ca'], username=USER, password=PASSWORD)
    assert sink.messages == []
    assert sink.commands == ['EHLO']  # no AUTH, no MAIL: the client hung up
    assert 'does not offer STARTTLS' in str(exc.value) and 'Nothing was sent' in str(exc.value)
    assert 'secure=always' in str(exc.value)


def test_never_sends_in_plain_text_when_asked(certs):
    with Sink(certs['good'], starttls=False, require_tls=False) as sink:
        result = _send(_message(), sink, secure='never')
    assert [msg['tls'] for msg in sink.messages] == [False]
    assert result['tls'] is None


def test_implicit_tls_against_a_starttls_port_says_so(certs):
    with Sink(certs['good']) as sink:
        with pytest.raises(m.MailError, match='TLS handshake with the SMTP server .* failed.*set secure=starttls'):
            _send(_message(), sink, secure='always', ca_path=certs['ca'])
    assert sink.messages == []


def test_connection_refused():
    port = _free_port()
    with pytest.raises(m.MailError, match=r'Cannot connect to the SMTP server 127.0.0.1:%d: .*Check host and port'
                       % port):
        m.send(_message(), host='127.0.0.1', port=port, timeout=TIMEOUT)


def test_recipient_refusals(certs):
    with Sink(certs['good'], reject={'nobody@example.com'}) as sink:
        result = _send(_message(to=['security@example.com', 'nobody@example.com']), sink, ca_path=certs['ca'])
        assert result['refused'] == {'nobody@example.com': '550 5.1.1 No such user'}
        assert sink.messages[0]['rcpt_tos'] == ['security@example.com']
        with pytest.raises(m.MailError, match='refused every recipient .*nobody@example.com: 550'):
            _send(_message(to=['nobody@example.com']), sink, ca_path=certs['ca'])
    assert len(sink.messages) == 1


# --------------------------------------------------------------------------------------
# AUTH
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize('mechanism', ['PLAIN', 'LOGIN'])
def test_auth_over_starttls(certs, mechanism):
    with Sink(certs['good'], users={USER: PASSWORD}, mechanisms=(mechanism,)) as sink:
        result = _send(_message(), sink, ca_path=certs['ca'], username=USER, password=PASSWORD)
    assert sink.messages[0]['user'] == USER and sink.messages[0]['tls'] is True
    assert sink.commands.index('STARTTLS') < sink.commands.index('AUTH')
    assert PASSWORD not in repr(result)


def _secret_forms():
    return [PASSWORD, base64.b64encode(PASSWORD.encode()).decode(),
            base64.b64encode(('\0%s\0%s' % (USER, PASSWORD)).encode()).decode()]


@pytest.mark.parametrize('mechanism', ['PLAIN', 'LOGIN'])
@pytest.mark.parametrize('echo', [False, True])
def test_wrong_password_refused_and_never_in_the_message(certs, mechanism, echo):
    with Sink(certs['good'], users={USER: 'the-right-one'}, mechanisms=(mechanism,), echo_auth=echo) as sink:
        with pytest.raises(m.MailError) as exc:
            _send(_message(), sink, ca_path=certs['ca'], username=USER, password=PASSWORD)
    assert sink.messages == []
    text = str(exc.value)
    assert 'refused the login of incident' in text and 'Check username and password' in text
    for secret in _secret_forms():
        assert secret not in text
    if echo:
        assert '********' in text
    assert exc.value.__cause__ is None and exc.value.__context__ is None  # no unscrubbed reply chained


def test_password_not_in_certificate_error(certs):
    with Sink(certs['foreign'], users={USER: PASSWORD}) as sink:
        with pytest.raises(m.MailError) as exc:
            _send(_message(), sink, ca_path=certs['ca'], username=USER, password=PASSWORD)
    assert 'AUTH' not in sink.commands and sink.messages == []
    assert all(secret not in str(exc.value) for secret in _secret_forms())


def test_no_auth_offered(certs):
    with Sink(certs['good']) as sink:
        with pytest.raises(m.MailError, match='offers no AUTH after TLS, so it cannot check username incident'):
            _send(_message(), sink, ca_path=certs['ca'], username=USER, password=PASSWORD)
    assert sink.messages == []


def test_plaintext_login_refused_unless_allowed(certs):
    port = _free_port()  # nothing listens: the refusal comes before connecting
    with pytest.raises(m.MailError, match='Refusing to send the SMTP password in plain text') as exc:
        m.send(_message(), host='127.0.0.1', port=port, secure='never', username=USER, password=PASSWORD)
    assert PASSWORD not in str(exc.value)
    with Sink(certs['good'], starttls=False, require_tls=False, users={USER: PASSWORD}) as sink:
        m.send(_message(), host='127.0.0.1', port=sink.port, secure='never', username=USER, password=PASSWORD,
               allow_plaintext_auth=True, timeout=TIMEOUT)
    assert sink.messages[0]['user'] == USER and sink.messages[0]['tls'] is False


# --------------------------------------------------------------------------------------
# Bad input: a clear error before connecting
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize('kwargs, message', [
    (dict(to=[]), 'No recipient: to is empty'),
    (dict(to=['not-an-address']), "to: 'not-an-address' is not one mail address"),
    (dict(to=['a@example.com, b@example.com']), 'one per list item'),
    (dict(cc=['']), "cc: '' is not a mail address"),
    (dict(sender='nobody'), "sender: 'nobody' is not one mail address"),
    (dict(subject='hello\nBcc: evil@example.com'), 'subject contains a line break'),
    (dict(subject='  '), 'subject is empty'),
    (dict(to=['Ünïcode <süß@example.com>']), 'is not an ASCII address'),
])
def test_bad_message_input(kwargs, message):
    with pytest.raises(m.MailError, match=message):
        _message(**kwargs)


def test_missing_attachment(tmp_path):
    missing = tmp_path / 'nope.tar.gz'
    with pytest.raises(m.MailError, match='attach: %s does not exist. Nothing was sent' % missing):
        _message(attach=[missing])
    with pytest.raises(m.MailError, match='is not a regular file'):
        _message(attach=[tmp_path])


@pytest.mark.parametrize('kwargs, message', [
    (dict(secure='tls'), "secure must be one of starttls, always, never, got 'tls'"),
    (dict(port=0), 'port must be 1 to 65535'),
    (dict(host=''), 'host is empty'),
    (dict(timeout=0), 'timeout must be more than 0'),
    (dict(username=USER), 'username incident is set without password'),
    (dict(password=PASSWORD), 'password is set without username'),
    (dict(username=USER, password='pässword'), 'username and password must be ASCII'),
    (dict(ca_path='/nonexistent/ca.pem'), 'ca_path /nonexistent/ca.pem does not exist'),
])
def test_bad_send_input_before_connecting(kwargs, message):
    args = dict(host='127.0.0.1', port=_free_port(), timeout=TIMEOUT)
    args.update(kwargs)
    with pytest.raises(m.MailError, match=message) as exc:
        m.send(_message(), **args)
    assert PASSWORD not in str(exc.value)


def test_unusable_ca_file(tmp_path):
    bad = tmp_path / 'ca.pem'
    bad.write_text('not a certificate\n')
    with pytest.raises(m.MailError, match='is not a usable CA file'):
        m.tls_context(True, str(bad))


def test_message_headers_and_types(tmp_path):
    (tmp_path / 'report.txt').write_text('hello\n')
    (tmp_path / 'blob').write_bytes(b'\x00\x01')
    msg = _message(attach=[tmp_path / 'report.txt', tmp_path / 'blob'], body='Grüße\n', local_hostname='ctl.example')
    assert msg['Message-ID'].endswith('@ctl.example>')
    assert email.utils.parsedate_to_datetime(msg['Date']) is not None
    types = {part.get_filename(): part.get_content_type() for part in msg.iter_attachments()}
    assert types == {'report.txt': 'text/plain', 'blob': 'application/octet-stream'}
    assert msg.get_body(('plain',)).get_content() == 'Grüße\n'
    assert m.envelope(msg) == ('incident-response@ops.example.com', ['security@example.com'])
