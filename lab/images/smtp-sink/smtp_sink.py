#!/usr/bin/env python3
"""Lab SMTP sink: accept every message and store it as <spool>/<UTC time>-<n>.eml.

STARTTLS with <tls dir>/server.crt and server.key; with SMTP_SINK_REQUIRE_TLS=true
(default) a client must start TLS before MAIL FROM. When SMTP_SINK_USER and
SMTP_SINK_PASSWORD are set, AUTH PLAIN/LOGIN is offered (after TLS) and checked.
Every stored message gets X-Sink-* headers: envelope sender and recipients, whether
TLS was used, whether the client authenticated.
"""

import asyncio
import datetime
import itertools
import os
import socket
import ssl
import sys

ENV = os.environ
PORT = int(ENV.get("SMTP_SINK_PORT", "2525"))
SPOOL = ENV.get("SMTP_SINK_SPOOL", "/var/spool/smtp-sink")
TLS_DIR = ENV.get("SMTP_SINK_TLS_DIR", "/etc/smtp-sink/tls")
REQUIRE_TLS = ENV.get("SMTP_SINK_REQUIRE_TLS", "true").lower() in ("1", "true", "yes")
USER = ENV.get("SMTP_SINK_USER", "")
PASSWORD = ENV.get("SMTP_SINK_PASSWORD", "")
_COUNTER = itertools.count(1)


def check() -> int:
    try:
        with socket.create_connection(("127.0.0.1", PORT), timeout=2) as sock:
            return 0 if sock.recv(64).startswith(b"220") else 1
    except OSError:
        return 1


class Handler:
    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        now = datetime.datetime.now(datetime.timezone.utc)
        name = "%s-%04d.eml" % (now.strftime("%Y%m%dT%H%M%S.%fZ"), next(_COUNTER))
        head = ("X-Sink-Mail-From: %s\r\nX-Sink-Rcpt-To: %s\r\nX-Sink-TLS: %s\r\nX-Sink-Auth: %s\r\n"
                "X-Sink-Received-At: %s\r\n" % (envelope.mail_from, ", ".join(envelope.rcpt_tos),
                                                "yes" if session.ssl is not None else "no",
                                                "yes" if getattr(session, "authenticated", False) else "no",
                                                now.isoformat()))
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode("utf-8")
        tmp = os.path.join(SPOOL, "." + name)
        with open(tmp, "wb") as fh:
            fh.write(head.encode() + content)
        os.replace(tmp, os.path.join(SPOOL, name))
        print("stored %s from=%s to=%s tls=%s size=%d" % (name, envelope.mail_from, ",".join(envelope.rcpt_tos),
                                                          session.ssl is not None, len(content)), flush=True)
        return "250 Message accepted for delivery"


def authenticator(server, session, envelope, mechanism, auth_data):
    from aiosmtpd.smtp import AuthResult, LoginPassword
    ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == USER and \
        auth_data.password.decode() == PASSWORD
    return AuthResult(success=ok, handled=False)


def main() -> int:
    if "--check" in sys.argv:
        return check()
    from aiosmtpd.smtp import SMTP
    os.makedirs(SPOOL, exist_ok=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(os.path.join(TLS_DIR, "server.crt"), os.path.join(TLS_DIR, "server.key"))
    kwargs = dict(tls_context=context, require_starttls=REQUIRE_TLS, hostname="lab-smtp-sink",
                  decode_data=False)
    if USER:
        kwargs.update(authenticator=authenticator, auth_require_tls=True, auth_required=False)
    else:
        kwargs.update(auth_require_tls=True)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(lambda: SMTP(Handler(), **kwargs), "0.0.0.0", PORT))
    print("smtp-sink listening on port %d (STARTTLS %s, AUTH %s), spool %s"
          % (PORT, "required" if REQUIRE_TLS else "offered", "checked" if USER else "off", SPOOL), flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
