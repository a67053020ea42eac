"""Posts a TokensTransferred event to the EventStore over mTLS every EVENT_INTERVAL s.

The SVID files are re-read for every event (the cert-writer rotates them under our
feet).  The EventStore's server certificate is an SVID of the same trust domain with a
DNS SAN equal to the URL host, so ordinary hostname checking applies.  Each attempt
logs exactly one line:

    eventstore write event=TokensTransferred status=201
    eventstore write event=TokensTransferred status=403 forbidden
    eventstore write event=TokensTransferred status=error reason=tls_handshake_failed detail=...
"""

import datetime
import http.client
import json
import logging
import socket
import ssl
import threading
import urllib.parse
import uuid

import registry_svid

EVENT_TYPE = "TokensTransferred"
HTTP_TIMEOUT = 5.0

log = logging.getLogger("registry")


def _reason_for(exc):
    """(reason, detail) tokens for a transport failure; never secret-bearing text."""
    if isinstance(exc, FileNotFoundError):
        return "svid_unavailable", "file_missing"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "tls_handshake_failed", "server_cert_verify_failed"
    if isinstance(exc, ssl.SSLError):
        text = str(getattr(exc, "reason", "") or "").lower()
        if "key_values_mismatch" in text or "pem" in text or "no_start_line" in text:
            return "svid_unavailable", "svid_unusable"
        if "certificate_required" in text:
            return "tls_handshake_failed", "client_cert_required"
        if "certificate_expired" in text:
            return "tls_handshake_failed", "client_cert_expired"
        if "unknown_ca" in text or "bad_certificate" in text or "certificate_unknown" in text:
            return "tls_handshake_failed", "client_cert_rejected"
        return "tls_handshake_failed", None
    if isinstance(exc, ConnectionRefusedError):
        return "connection_refused", None
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        # A peer rejecting our client certificate often just drops the connection.
        return "connection_reset", None
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timeout", None
    if isinstance(exc, socket.gaierror):
        return "dns_failed", None
    if isinstance(exc, http.client.HTTPException):
        return "bad_http_response", None
    if isinstance(exc, OSError):
        return "connection_error", None
    return "internal_error", type(exc).__name__


class EventEmitter:
    def __init__(self, settings, backends, stop_event=None):
        self.settings = settings
        self.backends = backends
        self.stop_event = stop_event or threading.Event()
        self.thread = None
        parts = urllib.parse.urlsplit(settings.eventstore_url)
        self.host = parts.hostname
        self.port = parts.port or 443
        self.path = parts.path or "/"

    def ssl_context(self):
        s = self.settings
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(s.svid_path, s.svid_key_path)
        context.load_verify_locations(cafile=s.bundle_path)
        return context

    def _payload(self):
        own = registry_svid.load_chain_file(self.settings.svid_path)
        source = None
        if own:
            try:
                source = registry_svid.spiffe_id_of(own[0], self.settings.trust_domain)
            except registry_svid.SVIDRejected:
                source = None
        return {
            "event_id": str(uuid.uuid4()),
            "event_type": EVENT_TYPE,
            "registry_did": self.settings.registry_did,
            "operator": self.settings.operator_name,
            "source_spiffe_id": source,
            "occurred_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "payload": {"from_agent": "lab-agent-a", "to_agent": "lab-agent-b", "amount": 1},
        }

    def post_event(self):
        """One POST; returns the HTTP status (int).  Raises on transport errors."""
        context = self.ssl_context()
        body = json.dumps(self._payload()).encode("utf-8")
        conn = http.client.HTTPSConnection(self.host, self.port, context=context,
                                           timeout=HTTP_TIMEOUT)
        try:
            conn.request("POST", self.path, body=body, headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "theprotocol-lab-registry",
            })
            response = conn.getresponse()
            response.read(64 * 1024)
            return response.status
        finally:
            conn.close()

    def emit_once(self):
        """Post, log one line, record the outcome in PostgreSQL and Redis.

        Returns the status (int) or ``"error:<reason>"``.
        """
        try:
            status = self.post_event()
        except Exception as exc:  # pylint: disable=broad-except
            reason, detail = _reason_for(exc)
            if detail:
                log.info("eventstore write event=%s status=error reason=%s detail=%s",
                         EVENT_TYPE, reason, detail)
            else:
                log.info("eventstore write event=%s status=error reason=%s", EVENT_TYPE, reason)
            outcome, db_status = "error:" + reason, None
        else:
            suffix = ""
            if status == 401:
                suffix = " unauthorized"
            elif status == 403:
                suffix = " forbidden"
            elif not 200 <= status < 300:
                suffix = " failed"
            log.info("eventstore write event=%s status=%d%s", EVENT_TYPE, status, suffix)
            outcome, db_status = status, status
        self._record(db_status, outcome)
        return outcome

    def _record(self, db_status, outcome):
        try:
            try:
                self.backends.insert_event(EVENT_TYPE, db_status)
            except Exception as exc:  # pylint: disable=broad-except
                # The table is missing when db came up after our start-up window.
                if type(exc).__name__ != "UndefinedTable":
                    raise
                self.backends.ensure_schema()
                self.backends.insert_event(EVENT_TYPE, db_status)
        except Exception as exc:  # pylint: disable=broad-except
            log.info("events insert failed error=%s", type(exc).__name__)
        try:
            self.backends.set_last_event_status(str(outcome))
        except Exception as exc:  # pylint: disable=broad-except
            log.info("redis write failed key=registry:last_event_status error=%s",
                     type(exc).__name__)

    def run(self):
        while not self.stop_event.is_set():
            try:
                self.emit_once()
            except Exception as exc:  # pylint: disable=broad-except
                log.info("event emitter error=%s", type(exc).__name__)
            self.stop_event.wait(self.settings.event_interval)

    def start(self):
        self.thread = threading.Thread(target=self.run, name="event-emitter", daemon=True)
        self.thread.start()
        return self.thread

    def stop(self, timeout=None):
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout)
