#!/usr/bin/env python3
"""TheProtocol lab registry stand-in (runs behind nginx-federation).

Stdlib HTTP server plus Debian's python3-psycopg2 / python3-redis /
python3-cryptography.  See lab/images/registry/README.md for the contract.

Endpoints
  GET  /health                          new PostgreSQL + Redis connection each call
  GET  /internal/status                 X-Internal-Key (intra-stack)
  GET  /api/v1/rows                     X-Internal-Key; {"events": <row count>}
  POST /api/v1/events/                  federation (mTLS SVID via X-SSL-Client-Cert)
  GET  /api/v1/federation/agent-cards   federation
  POST /api/v1/federation/sync-request  federation
  POST /internal/federation/query       federation
  POST /api/v1/cross-teg/transfer       federation

Logging: one access line per request, ``<ISO time> <ip> "<METHOD> <path>" <status>``;
never header values, query strings, bodies or secrets.
"""

import datetime
import hmac
import http
import http.server
import json
import logging
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import registry_backends  # noqa: E402
import registry_emitter  # noqa: E402
import registry_settings  # noqa: E402
import registry_svid  # noqa: E402

log = logging.getLogger("registry")

MAX_BODY = 1024 * 1024

LICENSE_HEADER = "X-Federation-License"
CLIENT_CERT_HEADER = "X-SSL-Client-Cert"
INTERNAL_KEY_HEADER = "X-Internal-Key"

LICENSE_ERROR = "X-Federation-License is deactivated; use mTLS (EVENTSTORE_MTLS_REQUIRED=true)"
MINTING_ERROR = "TokensIssued rejected: minting is disabled (MINTING_AUTHORITY=disabled)"

# Normalised path (no trailing slash) -> (method, name shown in responses)
FEDERATION_ENDPOINTS = {
    "/api/v1/events": ("POST", "POST /api/v1/events/"),
    "/api/v1/federation/agent-cards": ("GET", "GET /api/v1/federation/agent-cards"),
    "/api/v1/federation/sync-request": ("POST", "POST /api/v1/federation/sync-request"),
    "/internal/federation/query": ("POST", "POST /internal/federation/query"),
    "/api/v1/cross-teg/transfer": ("POST", "POST /api/v1/cross-teg/transfer"),
}
LOCAL_ENDPOINTS = {
    "/health": "GET",
    "/internal/status": "GET",
    "/api/v1/rows": "GET",
}
MINTING_CHECKED = {"/api/v1/events", "/api/v1/cross-teg/transfer"}
EVENT_TYPE_KEYS = ("event_type", "eventType", "type")


class _IsoFormatter(logging.Formatter):
    def format(self, record):
        stamp = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        return "%s %s" % (stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                          record.getMessage())


def setup_logging(stream=None):
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(_IsoFormatter())
    handler.addFilter(registry_settings.RedactingFilter())
    log.handlers = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    return handler


def _safe_path(raw):
    """Path without query/fragment, printable, bounded -- for logs only."""
    path = (raw or "").split("?", 1)[0].split("#", 1)[0]
    out = []
    for char in path[:256]:
        code = ord(char)
        if 0x21 <= code <= 0x7E and char not in '"\\':
            out.append(char)
        else:
            out.append("%%%02X" % (code & 0xFF))
    return "".join(out) or "-"


def _event_types(document):
    items = document if isinstance(document, list) else [document]
    types = []
    for item in items:
        if isinstance(item, dict):
            for key in EVENT_TYPE_KEYS:
                value = item.get(key)
                if isinstance(value, str):
                    types.append(value)
    return types


class RegistryApp:
    """State shared by request handlers: settings and backends."""

    def __init__(self, settings, backends):
        self.settings = settings
        self.backends = backends

    def health(self):
        """(http status, body) from fresh PostgreSQL and Redis connections."""
        checks = (("postgres", self.backends.postgres_ping), ("redis", self.backends.redis_ping))
        results = {}

        def run(name, func):
            try:
                func()
                results[name] = None
            except Exception as exc:  # pylint: disable=broad-except
                results[name] = (type(exc).__name__, registry_backends.classify_error(exc))

        threads = [threading.Thread(target=run, args=c, daemon=True) for c in checks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        body = {"status": "ok"}
        for name, _func in checks:
            if name not in results:
                results[name] = ("Timeout", "timeout")
            if results[name] is None:
                body[name] = "ok"
                continue
            error, reason = results[name]
            body[name], body[name + "_error"] = "failed", error
            if reason:
                body[name + "_reason"] = reason
        failed = [n for n, _f in checks if body[n] != "ok"]
        if failed:
            body["status"] = "error"
            log.info("health failed %s", " ".join(
                "%s=%s%s" % (n, body[n + "_error"],
                             " %s_reason=%s" % (n, body[n + "_reason"])
                             if n + "_reason" in body else "") for n in failed))
            return 503, body
        return 200, body

    def internal_key_ok(self, given):
        if not given:
            return False
        try:
            expected = self.settings.secret("INTERNAL_API_KEY")
        except registry_settings.ConfigError:
            log.info("internal key unavailable (INTERNAL_API_KEY_FILE unreadable)")
            return False
        if not expected:
            return False
        return hmac.compare_digest(given.encode("latin-1", "replace"), expected.encode("utf-8"))

    def verify_peer(self, header_value):
        """SPIFFE ID of the forwarded client certificate (raises SVIDRejected /
        BundleUnavailable)."""
        bundle = registry_svid.load_bundle(self.settings.bundle_path)
        # nginx forwards only the leaf: our own SVID's intermediates (same SPIRE
        # server) are offered as extra candidates; they must still chain to the bundle.
        own = registry_svid.load_chain_file(self.settings.svid_path)[1:]
        pem = registry_svid.decode_forwarded_cert(header_value)
        return registry_svid.verify_svid(pem, bundle, self.settings.trust_domain, own)


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "registry"
    sys_version = ""
    timeout = 30
    _responded = False

    # -- logging: one access line, nothing from headers/query/body -----------------
    def log_request(self, code="-", size="-"):
        if isinstance(code, http.HTTPStatus):
            code = code.value
        log.info('%s "%s %s" %s', self.client_address[0], self.command or "-",
                 _safe_path(getattr(self, "path", "")), code)

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
        return

    def log_error(self, format, *args):  # pylint: disable=redefined-builtin
        return

    def send_error(self, code, message=None, explain=None):
        """JSON errors without echoing anything the client sent."""
        self.close_connection = True
        try:
            phrase = http.HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self._send_json(code, {"error": phrase.lower()})

    def _send_json(self, code, body, extra_headers=()):
        data = (json.dumps(body, sort_keys=True) + "\n").encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in extra_headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self._responded = True

    def _deny(self, code, body, kind, reason):
        log.info("%s %s auth denied status=%d reason=%s path=%s", self.client_address[0],
                 kind, code, reason, _safe_path(self.path))
        self._send_json(code, body)

    # -- request plumbing --------------------------------------------------------
    def do_GET(self):  # noqa: N802
        self._dispatch()

    def do_POST(self):  # noqa: N802
        self._dispatch()

    def do_PUT(self):  # noqa: N802
        self._dispatch()

    def do_DELETE(self):  # noqa: N802
        self._dispatch()

    def do_PATCH(self):  # noqa: N802
        self._dispatch()

    def _read_body(self):
        """Read (drain) the request body; None after an error response was sent."""
        if self.headers.get("Transfer-Encoding"):
            self.send_error(411)
            return None
        raw = self.headers.get("Content-Length")
        if raw is None or raw.strip() == "":
            return b""
        try:
            length = int(raw)
        except ValueError:
            self.send_error(400)
            return None
        if length < 0:
            self.send_error(400)
            return None
        if length > MAX_BODY:
            self.send_error(413)
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self):
        self._responded = False
        try:
            body = self._read_body()
            if body is None:
                return
            path = self.path.split("?", 1)[0].split("#", 1)[0]
            if len(path) > 1:
                path = path.rstrip("/") or "/"
            if path in FEDERATION_ENDPOINTS:
                method, name = FEDERATION_ENDPOINTS[path]
                if self.command != method:
                    self._send_json(405, {"error": "method not allowed"}, [("Allow", method)])
                    return
                self._federation(path, name, body)
            elif path in LOCAL_ENDPOINTS:
                method = LOCAL_ENDPOINTS[path]
                if self.command != method:
                    self._send_json(405, {"error": "method not allowed"}, [("Allow", method)])
                    return
                getattr(self, "_local_" + path.strip("/").replace("/", "_"))()
            else:
                self._send_json(404, {"error": "not found"})
        except Exception as exc:  # pylint: disable=broad-except
            log.info("request failed path=%s error=%s", _safe_path(self.path), type(exc).__name__)
            self.close_connection = True
            if not self._responded:
                try:
                    self._send_json(500, {"error": "internal error"})
                except Exception:  # pylint: disable=broad-except
                    pass

    @property
    def app(self):
        return self.server.app

    # -- local endpoints ---------------------------------------------------------
    def _local_health(self):
        code, body = self.app.health()
        self._send_json(code, body)

    def _internal_auth(self):
        given = self.headers.get(INTERNAL_KEY_HEADER)
        if self.app.internal_key_ok(given):
            return True
        reason = "missing_key" if not given else "bad_key"
        self._deny(401, {"error": "unauthorized"}, "internal", reason)
        return False

    def _local_internal_status(self):
        if self._internal_auth():
            settings = self.app.settings
            self._send_json(200, {"status": "ok", "operator": settings.operator_name,
                                  "registry_did": settings.registry_did})

    def _local_api_v1_rows(self):
        if not self._internal_auth():
            return
        try:
            count = self.app.backends.count_events()
        except Exception as exc:  # pylint: disable=broad-except
            log.info("rows count failed error=%s", type(exc).__name__)
            self._send_json(503, {"error": "database unavailable",
                                  "postgres_error": type(exc).__name__})
            return
        self._send_json(200, {"events": count})

    # -- federation endpoints ----------------------------------------------------
    def _federation_peer(self):
        """The verified peer SPIFFE ID, or None after an error response."""
        if self.headers.get(LICENSE_HEADER) is not None:
            self._deny(403, {"error": LICENSE_ERROR}, "federation", "license_header_deactivated")
            return None
        values = self.headers.get_all(CLIENT_CERT_HEADER) or []
        if len(values) > 1:
            self._deny(403, {"error": "client certificate rejected",
                             "reason": "more than one forwarded client certificate"},
                       "federation", "ambiguous_client_cert")
            return None
        if not values or not values[0].strip():
            self._deny(401, {"error": "client certificate required (mTLS via SPIRE SVID)"},
                       "federation", "no_client_cert")
            return None
        try:
            return self.app.verify_peer(values[0])
        except registry_svid.BundleUnavailable:
            log.info("trust bundle unavailable path=%s", _safe_path(self.path))
            self._send_json(503, {"error": "trust bundle unavailable"})
        except registry_svid.SVIDRejected as exc:
            self._deny(403, {"error": "client certificate rejected", "reason": exc.detail},
                       "federation", exc.reason)
        return None

    def _federation(self, path, name, body):
        peer = self._federation_peer()
        if peer is None:
            return
        settings = self.app.settings
        document = None
        if self.command == "POST" and body.strip():
            try:
                document = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                self._send_json(400, {"error": "request body must be JSON"})
                return
        if path in MINTING_CHECKED and "TokensIssued" in _event_types(document):
            self._deny(403, {"error": MINTING_ERROR}, "federation", "minting_disabled")
            return
        response = {
            "status": "ok",
            "endpoint": name,
            "peer_spiffe_id": peer,
            "registry_did": settings.registry_did,
            "operator": settings.operator_name,
        }
        if path == "/api/v1/federation/agent-cards":
            operator = settings.operator_name or "lab"
            response["agent_cards"] = [
                {"agent_id": "agent-%s-%d" % (operator, i), "registry_did": settings.registry_did,
                 "capabilities": ["transfer"]} for i in (1, 2)]
        elif path in MINTING_CHECKED:
            response["status"] = "accepted"
            response["event_types"] = _event_types(document)
        elif path == "/internal/federation/query":
            response["results"] = []
        self._send_json(200, response)


class RegistryServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, app):
        self.app = app
        super().__init__(address, Handler)

    def handle_error(self, request, client_address):
        # The default prints a traceback to stderr; keep only the class.
        exc = sys.exc_info()[1]
        log.info("connection error client=%s error=%s", client_address[0], type(exc).__name__)


def make_server(settings, backends, host=None, port=None):
    app = RegistryApp(settings, backends)
    address = (settings.bind if host is None else host, settings.port if port is None else port)
    return RegistryServer(address, app)


def ensure_schema_with_retry(backends, timeout, stop_event):
    deadline = time.monotonic() + timeout
    attempt = 0
    while not stop_event.is_set():
        attempt += 1
        try:
            backends.ensure_schema()
        except Exception as exc:  # pylint: disable=broad-except
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.info("postgres not ready after %ds (attempt %d, error=%s); events table "
                         "not ensured, will retry on first insert",
                         int(timeout), attempt, type(exc).__name__)
                return False
            log.info("postgres not ready (attempt %d, error=%s); retrying",
                     attempt, type(exc).__name__)
            stop_event.wait(min(2.0, remaining))
        else:
            log.info("postgres ready: events table ensured")
            return True
    return False


def main(environ=None):
    setup_logging()
    try:
        settings = registry_settings.Settings(environ)
    except registry_settings.ConfigError as exc:
        log.error("%s", exc)
        return 2

    stop = threading.Event()
    received = []

    def on_signal(signum, _frame):
        # Only set flags here: logging from a signal handler can deadlock.
        received.append(signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    backends = registry_backends.Backends(settings)
    try:
        server = make_server(settings, backends)
    except OSError as exc:
        log.error("cannot listen on port %d (%s)", settings.port, type(exc).__name__)
        return 1
    serve = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    serve.start()
    log.info("registry listening port=%d operator=%s did=%s trust_domain=%s eventstore=%s "
             "mtls_required=true minting=disabled", server.server_address[1],
             settings.operator_name or "-", settings.registry_did or "-",
             settings.trust_domain, settings.eventstore_display())
    if settings.secret("FEDERATION_LICENSE_KEY"):
        log.info("FEDERATION_LICENSE_KEY is set but not used for authentication (mTLS only)")

    ensure_schema_with_retry(backends, settings.db_startup_timeout, stop)

    emitter = None
    if settings.eventstore_url and not stop.is_set():
        emitter = registry_emitter.EventEmitter(settings, backends, stop)
        emitter.start()

    while not stop.wait(1.0):
        pass

    log.info("received %s, shutting down",
             signal.Signals(received[0]).name if received else "stop")
    server.shutdown()
    if emitter is not None:
        emitter.stop(registry_emitter.HTTP_TIMEOUT + 2)
    server.server_close()
    log.info("registry stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
