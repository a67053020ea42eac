"""Tests of the lab registry stand-in (no PostgreSQL/Redis: backends are faked).

HTTP and auth logic run against a real ThreadingHTTPServer on 127.0.0.1 with real
certificates generated here (CA -> intermediate -> leaf with a SPIFFE URI SAN); the
event emitter runs against a real local TLS server that requires client certificates.
Works with cryptography 38 (Debian bookworm) and current releases.
"""

import datetime
import http.client
import http.server
import io
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

APP_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "app")
sys.path.insert(0, APP_DIR)

import registry_app  # noqa: E402
import registry_emitter  # noqa: E402
import registry_settings  # noqa: E402
import registry_svid  # noqa: E402

TD = "example.com"
PEER_ID = "spiffe://example.com/service/registry-peer"
OWN_ID = "spiffe://example.com/service/registry-lab"
ES_ID = "spiffe://example.com/service/eventstore"

SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret-Zq81xx",
    "REDIS_PASSWORD": "redis-secret-Kx22yy",
    "INTERNAL_API_KEY": "internal-secret-Mv93zz",
    "FEDERATION_LICENSE_KEY": "license-secret-Ty04ww",
}

ENDPOINTS = [
    ("POST", "/api/v1/events/"),
    ("GET", "/api/v1/federation/agent-cards"),
    ("POST", "/api/v1/federation/sync-request"),
    ("POST", "/internal/federation/query"),
    ("POST", "/api/v1/cross-teg/transfer"),
]

ACCESS_RE = re.compile(
    r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z 127\.0\.0\.1 "(GET|POST|PUT|DELETE|PATCH|-) \S+" \d{3}$')


# --------------------------------------------------------------------------- PKI
def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def new_key(kind="ec"):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def new_cert(cn, key, issuer=None, ca=False, path_len=None, uris=(), dns=(),
             not_before=None, not_after=None):
    """Certificate for ``key``; ``issuer`` is (cert, key) or None for self-signed."""
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lab"),
                         x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    issuer_name = subject if issuer is None else issuer[0].subject
    signing_key = key if issuer is None else issuer[1]
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer_name)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before or _now() - datetime.timedelta(minutes=5))
               .not_valid_after(not_after or _now() + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=path_len if ca else None),
                              critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=not ca, content_commitment=False,
                   key_encipherment=not ca and isinstance(key, rsa.RSAPrivateKey),
                   data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                   crl_sign=ca, encipher_only=False, decipher_only=False), critical=True))
    names = [x509.UniformResourceIdentifier(u) for u in uris] + [x509.DNSName(d) for d in dns]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    algorithm = None if isinstance(signing_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signing_key, algorithm)


def pem(*certs):
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def escaped(data):
    """What nginx's $ssl_client_escaped_cert looks like."""
    return urllib.parse.quote(data.decode("ascii"), safe="")


class PKI:
    def __init__(self, kind="ec"):
        self.root_key = new_key(kind)
        self.root = new_cert("root CA", self.root_key, ca=True)
        self.inter_key = new_key(kind)
        self.inter = new_cert("SPIRE server CA", self.inter_key, (self.root, self.root_key),
                              ca=True, path_len=0)

    def leaf(self, spiffe_id=PEER_ID, kind="ec", **kw):
        key = new_key(kind)
        uris = kw.pop("uris", (spiffe_id,) if spiffe_id else ())
        return new_cert("svid", key, (self.inter, self.inter_key), uris=uris, **kw), key


@pytest.fixture(scope="module")
def pki():
    return PKI()


@pytest.fixture(scope="module")
def other_pki():
    return PKI()


def write_certs(directory, pki, spiffe_id=OWN_ID, with_intermediate=True):
    leaf, key = pki.leaf(spiffe_id)
    chain = pem(leaf, pki.inter) if with_intermediate else pem(leaf)
    write_atomic(os.path.join(directory, "svid.pem"), chain)
    write_atomic(os.path.join(directory, "svid_key.pem"), key_pem(key))
    write_atomic(os.path.join(directory, "bundle.pem"), pem(pki.root))
    return leaf


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


# ----------------------------------------------------------------------- fakes
class FakeOperationalError(Exception):
    pass


class FakeBackends:
    def __init__(self):
        self.pg_error = None
        self.redis_error = None
        self.rows = []
        self.redis = {}
        self.schema_calls = 0

    def postgres_ping(self):
        if self.pg_error:
            raise self.pg_error

    def redis_ping(self):
        if self.redis_error:
            raise self.redis_error

    def ensure_schema(self):
        self.schema_calls += 1
        if self.pg_error:
            raise self.pg_error

    def insert_event(self, event_type, status):
        if self.pg_error:
            raise self.pg_error
        self.rows.append((event_type, status))

    def count_events(self):
        if self.pg_error:
            raise self.pg_error
        return len(self.rows)

    def set_last_event_status(self, value):
        if self.redis_error:
            raise self.redis_error
        self.redis["registry:last_event_status"] = value


def base_env(certs_dir, **extra):
    env = {
        "EVENTSTORE_MTLS_REQUIRED": "true",
        "MINTING_AUTHORITY": "disabled",
        "OPERATOR_NAME": "lab",
        "REGISTRY_DID": "did:example:registry-lab",
        "TRUST_DOMAIN": TD,
        "POSTGRES_USER": "registry",
        "POSTGRES_DB": "registry",
        "CERTS_DIR": str(certs_dir),
    }
    env.update(SECRETS)
    env.update(extra)
    return env


class Running:
    def __init__(self, server, backends, logbuf):
        self.server = server
        self.backends = backends
        self.logbuf = logbuf
        self.port = server.server_address[1]

    def request(self, method, path, headers=None, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            data = json.loads(raw)
        except ValueError:
            data = raw
        return response.status, data

    def logs(self):
        return self.logbuf.getvalue()


@pytest.fixture
def certs_dir(tmp_path, pki):
    directory = tmp_path / "certs"
    directory.mkdir()
    write_certs(str(directory), pki)
    return directory


@pytest.fixture
def running(certs_dir):
    logbuf = io.StringIO()
    registry_app.setup_logging(logbuf)
    settings = registry_settings.Settings(base_env(certs_dir))
    backends = FakeBackends()
    server = registry_app.make_server(settings, backends, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Running(server, backends, logbuf)
    server.shutdown()
    server.server_close()
    thread.join(5)


def peer_headers(pki, **kw):
    leaf, _key = pki.leaf(**kw)
    return {"X-SSL-Client-Cert": escaped(pem(leaf, pki.inter))}


def assert_no_secrets(text):
    for name, value in SECRETS.items():
        assert value not in text, "%s leaked" % name


# ------------------------------------------------------------ federation auth
@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_license_header_is_rejected_first(running, pki, method, path):
    headers = peer_headers(pki)  # even with a valid client certificate
    headers["X-Federation-License"] = SECRETS["FEDERATION_LICENSE_KEY"]
    status, body = running.request(method, path, headers, body={} if method == "POST" else None)
    assert status == 403
    assert body == {"error": "X-Federation-License is deactivated; use mTLS "
                             "(EVENTSTORE_MTLS_REQUIRED=true)"}
    status, _ = running.request(method, path, {"X-Federation-License": ""})
    assert status == 403
    assert "reason=license_header_deactivated" in running.logs()


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_no_client_cert_is_401(running, method, path):
    status, body = running.request(method, path)
    assert status == 401 and "client certificate required" in body["error"]
    status, _ = running.request(method, path, {"X-SSL-Client-Cert": ""})
    assert status == 401
    assert re.search(r'"%s %s" 401$' % (method, re.escape(path)), running.logs(), re.M)


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_valid_svid_chain_is_accepted(running, pki, method, path):
    status, body = running.request(method, path, peer_headers(pki),
                                   body={"event_type": "TokensTransferred"}
                                   if method == "POST" else None)
    assert status == 200, body
    assert body["peer_spiffe_id"] == PEER_ID
    assert body["endpoint"] == "%s %s" % (method, path)
    if path.endswith("agent-cards"):
        assert isinstance(body["agent_cards"], list) and body["agent_cards"]


def test_leaf_only_chains_through_own_intermediates(running, pki):
    # nginx forwards only the leaf; our own svid.pem carries the intermediate.
    leaf, _ = pki.leaf()
    status, body = running.request("GET", "/api/v1/federation/agent-cards",
                                   {"X-SSL-Client-Cert": escaped(pem(leaf))})
    assert status == 200 and body["peer_spiffe_id"] == PEER_ID


def test_leaf_only_without_known_intermediate_is_403(running, pki, certs_dir):
    write_certs(str(certs_dir), pki, with_intermediate=False)
    leaf, _ = pki.leaf()
    status, body = running.request("GET", "/api/v1/federation/agent-cards",
                                   {"X-SSL-Client-Cert": escaped(pem(leaf))})
    assert status == 403 and "trust bundle" in body["reason"]


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_rsa_and_ed25519_chains(tmp_path, kind):
    other = PKI(kind)
    write_certs(str(tmp_path), other)
    leaf, _ = other.leaf(kind=kind)
    bundle = registry_svid.load_bundle(str(tmp_path / "bundle.pem"))
    assert registry_svid.verify_svid(pem(leaf, other.inter), bundle, TD) == PEER_ID


def _reject_cases(pki, other_pki):
    past = _now() - datetime.timedelta(days=10)
    key = new_key()
    self_signed = new_cert("self", key, uris=(PEER_ID,))
    cases = {
        "self_signed": (pem(self_signed), "untrusted_chain"),
        "other_ca": (pem(*[other_pki.leaf()[0], other_pki.inter]), "untrusted_chain"),
        "other_trust_domain": (pem(pki.leaf("spiffe://evil.example.org/service/x")[0],
                                   pki.inter), "wrong_trust_domain"),
        "expired": (pem(pki.leaf(not_before=past,
                                 not_after=_now() - datetime.timedelta(days=1))[0], pki.inter),
                    "expired"),
        "not_yet_valid": (pem(pki.leaf(not_before=_now() + datetime.timedelta(days=1),
                                       not_after=_now() + datetime.timedelta(days=2))[0],
                              pki.inter), "not_yet_valid"),
        "non_spiffe_dns_only": (pem(pki.leaf(None, dns=("peer.example.com",))[0], pki.inter),
                                "no_spiffe_id"),
        "non_spiffe_https_uri": (pem(pki.leaf("https://example.com/service/x")[0], pki.inter),
                                 "no_spiffe_id"),
        "two_uri_sans": (pem(pki.leaf(uris=(PEER_ID, PEER_ID + "2"))[0], pki.inter),
                         "multiple_uri_sans"),
        "ca_as_leaf": (pem(pki.inter, pki.root), "leaf_is_ca"),
        "garbage": (b"this is not a certificate", "cert_unparseable"),
        "garbage_pem": (b"-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n",
                        "cert_unparseable"),
    }
    # An intermediate with the right name but the wrong key (forged chain).
    forged_key = new_key()
    forged_inter = new_cert("SPIRE server CA", forged_key, (pki.root, new_key()), ca=True)
    forged_leaf = new_cert("svid", new_key(), (forged_inter, forged_key), uris=(PEER_ID,))
    cases["forged_intermediate"] = (pem(forged_leaf, forged_inter), "untrusted_chain")
    # Expired intermediate.
    old_inter_key = new_key()
    old_inter = new_cert("old CA", old_inter_key, (pki.root, pki.root_key), ca=True,
                         not_before=past, not_after=_now() - datetime.timedelta(days=1))
    old_leaf = new_cert("svid", new_key(), (old_inter, old_inter_key), uris=(PEER_ID,))
    cases["expired_intermediate"] = (pem(old_leaf, old_inter), "expired")
    return cases


REJECT_NAMES = ["self_signed", "other_ca", "other_trust_domain", "expired", "not_yet_valid",
                "non_spiffe_dns_only", "non_spiffe_https_uri", "two_uri_sans", "ca_as_leaf",
                "garbage", "garbage_pem", "forged_intermediate", "expired_intermediate"]


@pytest.fixture(scope="module")
def reject_cases(pki, other_pki):
    return _reject_cases(pki, other_pki)


@pytest.mark.parametrize("case", REJECT_NAMES)
def test_bad_client_certs_are_403(running, reject_cases, case):
    data, reason = reject_cases[case]
    status, body = running.request("POST", "/api/v1/federation/sync-request",
                                   {"X-SSL-Client-Cert": escaped(data)}, body={})
    assert status == 403, body
    assert body["error"] == "client certificate rejected" and body["reason"]
    assert "reason=%s " % reason in running.logs()


def test_two_forwarded_cert_headers_are_rejected(running, pki):
    leaf, _ = pki.leaf()
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
    conn.putrequest("GET", "/api/v1/federation/agent-cards")
    conn.putheader("X-SSL-Client-Cert", escaped(pem(leaf)))
    conn.putheader("X-SSL-Client-Cert", escaped(pem(leaf)))
    conn.endheaders()
    assert conn.getresponse().status == 403
    conn.close()


def test_missing_bundle_fails_closed(running, pki, certs_dir):
    os.unlink(str(certs_dir / "bundle.pem"))
    status, body = running.request("GET", "/api/v1/federation/agent-cards", peer_headers(pki))
    assert status == 503 and body == {"error": "trust bundle unavailable"}


def test_bundle_rotation_is_picked_up(running, pki, other_pki, certs_dir):
    headers = peer_headers(other_pki)
    assert running.request("GET", "/api/v1/federation/agent-cards", headers)[0] == 403
    write_atomic(str(certs_dir / "bundle.pem"), pem(pki.root, other_pki.root))
    assert running.request("GET", "/api/v1/federation/agent-cards", headers)[0] == 200


@pytest.mark.parametrize("path", ["/api/v1/events/", "/api/v1/cross-teg/transfer"])
@pytest.mark.parametrize("doc", [
    {"event_type": "TokensIssued", "amount": 1000},
    {"type": "TokensIssued"},
    [{"event_type": "TokensTransferred"}, {"eventType": "TokensIssued"}],
])
def test_tokens_issued_is_forbidden(running, pki, path, doc):
    status, body = running.request("POST", path, peer_headers(pki), body=doc)
    assert status == 403
    assert "minting is disabled" in body["error"]
    assert "reason=minting_disabled" in running.logs()


def test_tokens_transferred_accepted_and_bad_json_400(running, pki):
    status, body = running.request("POST", "/api/v1/events/", peer_headers(pki),
                                   body={"event_type": "TokensTransferred"})
    assert status == 200 and body["event_types"] == ["TokensTransferred"]
    status, _ = running.request("POST", "/api/v1/events/", peer_headers(pki), body="{nope")
    assert status == 400


# ------------------------------------------------------------- internal key
def test_internal_key_right_wrong_missing(running):
    key = SECRETS["INTERNAL_API_KEY"]
    assert running.request("GET", "/internal/status", {"X-Internal-Key": key}) == (
        200, {"status": "ok", "operator": "lab", "registry_did": "did:example:registry-lab"})
    assert running.request("GET", "/internal/status", {"X-Internal-Key": key + "x"})[0] == 401
    assert running.request("GET", "/internal/status", {"X-Internal-Key": ""})[0] == 401
    assert running.request("GET", "/internal/status")[0] == 401
    logs = running.logs()
    assert "reason=bad_key" in logs and "reason=missing_key" in logs


def test_rows_counts_events_and_needs_key(running):
    running.backends.rows.extend([("TokensTransferred", 201)] * 3)
    key = {"X-Internal-Key": SECRETS["INTERNAL_API_KEY"]}
    assert running.request("GET", "/api/v1/rows", key) == (200, {"events": 3})
    assert running.request("GET", "/api/v1/rows")[0] == 401
    running.backends.pg_error = FakeOperationalError("boom " + SECRETS["POSTGRES_PASSWORD"])
    status, body = running.request("GET", "/api/v1/rows", key)
    assert status == 503 and body["postgres_error"] == "FakeOperationalError"
    assert_no_secrets(json.dumps(body))


def test_empty_internal_key_never_authenticates(tmp_path, pki):
    write_certs(str(tmp_path), pki)
    env = base_env(tmp_path, INTERNAL_API_KEY="")
    app = registry_app.RegistryApp(registry_settings.Settings(env), FakeBackends())
    assert not app.internal_key_ok("")
    assert not app.internal_key_ok(None)


# -------------------------------------------------------------------- health
def test_health_ok_and_failures(running):
    assert running.request("GET", "/health") == (
        200, {"status": "ok", "postgres": "ok", "redis": "ok"})
    running.backends.pg_error = FakeOperationalError(
        "password authentication failed " + SECRETS["POSTGRES_PASSWORD"])
    status, body = running.request("GET", "/health")
    assert status == 503
    assert body == {"status": "error", "postgres": "failed", "postgres_reason": "auth_failed",
                    "postgres_error": "FakeOperationalError", "redis": "ok"}
    running.backends.pg_error = None
    running.backends.redis_error = ConnectionError("WRONGPASS " + SECRETS["REDIS_PASSWORD"])
    status, body = running.request("GET", "/health")
    assert status == 503 and body["redis"] == "failed"
    assert body["redis_error"] == "ConnectionError" and body["postgres"] == "ok"
    assert body["redis_reason"] == "auth_failed"
    assert_no_secrets(running.logs())
    assert "health failed redis=ConnectionError redis_reason=auth_failed" in running.logs()


@pytest.mark.parametrize("exc,reason", [
    (FakeOperationalError('connection to server at "db", port 5432 failed: FATAL:  password '
                          'authentication failed for user "registry"'), "auth_failed"),
    (FakeOperationalError("WRONGPASS invalid username-password pair or user is disabled."),
     "auth_failed"),
    (FakeOperationalError('could not translate host name "db" to address'), "unreachable"),
    (ConnectionRefusedError(111, "Connection refused"), "unreachable"),
    (FakeOperationalError("timeout expired"), "timeout"),
    (TimeoutError(), "timeout"),
    (RuntimeError("something else"), None),
])
def test_backend_error_classification(exc, reason):
    import registry_backends
    assert registry_backends.classify_error(exc) == reason


def test_real_backends_use_fresh_connections_and_2s_timeouts(tmp_path, pki, monkeypatch):
    """Backends with fake driver modules: new connection per call, timeouts, closing."""
    import types
    import registry_backends

    calls = []

    class Cursor:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def execute(self, sql, params=None):
            calls.append(("sql", sql, params))

        def fetchone(self):
            return (1,)

    class Conn:
        def cursor(self):
            return Cursor()

        def commit(self):
            calls.append(("commit",))

        def close(self):
            calls.append(("close",))

    def connect(**kw):
        calls.append(("connect", kw))
        return Conn()

    class Redis:
        def __init__(self, **kw):
            calls.append(("redis", kw))

        def ping(self):
            return True

        def set(self, key, value):
            calls.append(("set", key, value))

        def close(self):
            calls.append(("redis_close",))

    monkeypatch.setitem(sys.modules, "psycopg2", types.SimpleNamespace(connect=connect))
    monkeypatch.setitem(sys.modules, "redis", types.SimpleNamespace(Redis=Redis))
    pw_file = tmp_path / "pgpw"
    pw_file.write_text("from-file-pw-1\n")
    env = base_env(tmp_path, POSTGRES_PASSWORD_FILE=str(pw_file))
    backends = registry_backends.Backends(registry_settings.Settings(env))
    backends.postgres_ping()
    pw_file.write_text("from-file-pw-2\n")
    backends.postgres_ping()
    connects = [c[1] for c in calls if c[0] == "connect"]
    assert [c["password"] for c in connects] == ["from-file-pw-1", "from-file-pw-2"]
    assert all(c["connect_timeout"] == 2 for c in connects)
    assert connects[0]["host"] == "db" and connects[0]["port"] == 5432
    assert [c for c in calls if c[0] == "close"] == [("close",)] * 2
    backends.ensure_schema()
    assert any(c[0] == "sql" and "CREATE TABLE IF NOT EXISTS events" in c[1] for c in calls)
    backends.insert_event("TokensTransferred", 201)
    assert ("sql", "INSERT INTO events (event_type, status) VALUES (%s, %s)",
            ("TokensTransferred", 201)) in calls
    backends.redis_ping()
    backends.set_last_event_status("201")
    redis_kw = [c[1] for c in calls if c[0] == "redis"]
    assert len(redis_kw) == 2
    assert redis_kw[0]["username"] == "default"
    assert redis_kw[0]["password"] == SECRETS["REDIS_PASSWORD"]
    assert redis_kw[0]["socket_connect_timeout"] == 2
    assert ("set", "registry:last_event_status", "201") in calls
    assert calls.count(("redis_close",)) == 2


# ------------------------------------------------------------------- plumbing
def test_unknown_path_405_and_access_log(running):
    assert running.request("GET", "/nope?token=" + SECRETS["INTERNAL_API_KEY"])[0] == 404
    assert running.request("GET", "/api/v1/events/")[0] == 405
    assert running.request("POST", "/health")[0] == 405
    lines = [l for l in running.logs().splitlines() if '"' in l]
    assert lines and all(ACCESS_RE.match(l) for l in lines), lines
    assert '"GET /nope" 404' in running.logs()
    assert "token=" not in running.logs()


def test_exception_is_500_without_detail(running, pki, monkeypatch):
    def boom(self, value):
        raise RuntimeError("secret detail " + SECRETS["POSTGRES_PASSWORD"])

    monkeypatch.setattr(registry_app.RegistryApp, "verify_peer", boom)
    status, body = running.request("GET", "/api/v1/federation/agent-cards", peer_headers(pki))
    assert status == 500 and body == {"error": "internal error"}
    assert "error=RuntimeError" in running.logs()
    assert_no_secrets(running.logs())


def test_oversized_body_413(running):
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=10)
    conn.putrequest("POST", "/api/v1/events/")
    conn.putheader("Content-Length", str(registry_app.MAX_BODY + 1))
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()


@pytest.mark.parametrize("line", [
    "GARBAGE /x%s",
    "GET /x?k=%s HTTP/1.1 extra",
    "GET /x?k=%s HTTP/7.0",
])
def test_malformed_request_line_logged_safely(running, line):
    request = (line % SECRETS["INTERNAL_API_KEY"]).encode() + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    assert b"\"error\"" in data
    assert SECRETS["INTERNAL_API_KEY"].encode() not in data and b"GARBAGE" not in data
    assert_no_secrets(running.logs())
    assert re.search(r'"(-|GET) (-|/x)" (400|505)$', running.logs(), re.M), running.logs()


# ------------------------------------------------------------ configuration
def _run_app(env, timeout=20):
    return subprocess.run([sys.executable, os.path.join(APP_DIR, "registry_app.py")],
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("override", [
    {"EVENTSTORE_MTLS_REQUIRED": "false"},
    {"EVENTSTORE_MTLS_REQUIRED": ""},
    {"MINTING_AUTHORITY": "enabled"},
    {"MINTING_AUTHORITY": ""},
])
def test_refuses_to_start_without_mtls_or_with_minting(tmp_path, override):
    env = dict(os.environ)
    env.update(base_env(tmp_path, REGISTRY_PORT="0"))
    env.update(override)
    result = _run_app(env)
    assert result.returncode == 2
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert "refusing to start" in lines[0] and list(override)[0] in lines[0]
    assert_no_secrets(result.stdout + result.stderr)


def test_file_secrets_win_and_are_reread(tmp_path, pki):
    key_file = tmp_path / "key"
    key_file.write_text("file-key-AAAA\n")
    env = base_env(tmp_path, INTERNAL_API_KEY="env-key-BBBB",
                   INTERNAL_API_KEY_FILE=str(key_file))
    settings = registry_settings.Settings(env)
    assert settings.secret("INTERNAL_API_KEY") == "file-key-AAAA"
    key_file.write_text("file-key-CCCC")
    assert settings.secret("INTERNAL_API_KEY") == "file-key-CCCC"
    app = registry_app.RegistryApp(settings, FakeBackends())
    assert app.internal_key_ok("file-key-CCCC")
    assert not app.internal_key_ok("env-key-BBBB")
    assert not app.internal_key_ok("file-key-AAAA")
    # Defaults and plain variables.
    assert settings.secret("REDIS_USERNAME") == "default"
    assert settings.secret("POSTGRES_PASSWORD") == SECRETS["POSTGRES_PASSWORD"]


def test_unreadable_secret_file_refuses_start_naming_only_the_variable(tmp_path):
    env = base_env(tmp_path, POSTGRES_PASSWORD_FILE=str(tmp_path / "missing"))
    with pytest.raises(registry_settings.ConfigError) as info:
        registry_settings.Settings(env)
    assert "POSTGRES_PASSWORD_FILE" in str(info.value)
    assert_no_secrets(str(info.value))


@pytest.mark.parametrize("override", [
    {"EVENTSTORE_URL": "http://eventstore:8443/api/v1/events/"},
    {"EVENTSTORE_URL": "https://user:pw@eventstore:8443/"},
    {"REGISTRY_PORT": "eighty"},
    {"EVENT_INTERVAL": "0"},
])
def test_bad_settings_refused(tmp_path, override):
    with pytest.raises(registry_settings.ConfigError):
        registry_settings.Settings(base_env(tmp_path, **override))


def test_redacting_filter():
    registry_settings.read_secret("INTERNAL_API_KEY", {"INTERNAL_API_KEY": "redact-me-QQQQ"})
    buf = io.StringIO()
    registry_app.setup_logging(buf)
    registry_app.log.info("value=%s", "redact-me-QQQQ")
    assert "redact-me-QQQQ" not in buf.getvalue() and "value=***" in buf.getvalue()


# ------------------------------------------------------------------ emitter
class EventStoreStub:
    """A stdlib TLS server that requires a client certificate from ``ca``."""

    def __init__(self, tmp_path, server_pki, client_ca_pem, statuses, dns="localhost"):
        self.statuses = list(statuses)
        self.seen = []
        leaf_key = new_key()
        leaf = new_cert("eventstore", leaf_key, (server_pki.inter, server_pki.inter_key),
                        uris=(ES_ID,), dns=(dns,))
        directory = tmp_path / "es"
        directory.mkdir(exist_ok=True)
        (directory / "chain.pem").write_bytes(pem(leaf, server_pki.inter))
        (directory / "key.pem").write_bytes(key_pem(leaf_key))
        (directory / "ca.pem").write_bytes(client_ca_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(directory / "chain.pem"), str(directory / "key.pem"))
        context.load_verify_locations(cafile=str(directory / "ca.pem"))
        context.verify_mode = ssl.CERT_REQUIRED
        stub = self

        class StubHandler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                return

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                cert = self.connection.getpeercert()
                uris = [v for k, v in cert.get("subjectAltName", ()) if k == "URI"]
                stub.seen.append({"uris": uris, "serial": cert.get("serialNumber"),
                                  "path": self.path, "body": body,
                                  "headers": dict(self.headers)})
                status = stub.statuses.pop(0) if stub.statuses else 201
                data = json.dumps({"status": status}).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StubHandler)
        self.httpd.daemon_threads = True
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "https://localhost:%d/api/v1/events/" % self.port

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def logbuf():
    buf = io.StringIO()
    registry_app.setup_logging(buf)
    return buf


def make_emitter(certs_dir, url, backends=None, **extra):
    settings = registry_settings.Settings(base_env(certs_dir, EVENTSTORE_URL=url, **extra))
    return registry_emitter.EventEmitter(settings, backends or FakeBackends())


def test_emitter_mtls_201_then_403(tmp_path, pki, certs_dir, logbuf):
    stub = EventStoreStub(tmp_path, pki, pem(pki.root), [201, 403, 401])
    try:
        emitter = make_emitter(certs_dir, stub.url)
        assert emitter.emit_once() == 201
        assert emitter.emit_once() == 403
        assert emitter.emit_once() == 401
    finally:
        stub.close()
    lines = [l.split(" ", 1)[1] for l in logbuf.getvalue().splitlines()]
    assert lines == ["eventstore write event=TokensTransferred status=201",
                     "eventstore write event=TokensTransferred status=403 forbidden",
                     "eventstore write event=TokensTransferred status=401 unauthorized"]
    assert emitter.backends.rows == [("TokensTransferred", 201), ("TokensTransferred", 403),
                                     ("TokensTransferred", 401)]
    assert emitter.backends.redis["registry:last_event_status"] == "401"
    seen = stub.seen[0]
    assert seen["uris"] == [OWN_ID] and seen["path"] == "/api/v1/events/"
    assert seen["body"]["event_type"] == "TokensTransferred"
    assert seen["body"]["source_spiffe_id"] == OWN_ID
    assert not any(k.lower() in ("x-federation-license", "x-internal-key") for k in seen["headers"])
    assert_no_secrets(json.dumps(stub.seen))


def test_emitter_rereads_rotated_svid(tmp_path, pki, certs_dir, logbuf):
    stub = EventStoreStub(tmp_path, pki, pem(pki.root), [201, 201])
    try:
        emitter = make_emitter(certs_dir, stub.url)
        first = write_certs(str(certs_dir), pki)
        emitter.emit_once()
        second = write_certs(str(certs_dir), pki)
        emitter.emit_once()
    finally:
        stub.close()
    serials = [int(s["serial"], 16) for s in stub.seen]
    assert serials == [first.serial_number, second.serial_number]


def test_emitter_client_cert_rejected_is_tls_error(tmp_path, pki, other_pki, certs_dir, logbuf):
    # The EventStore only trusts other_pki: our SVID is refused in the handshake.
    stub = EventStoreStub(tmp_path, pki, pem(other_pki.root), [201])
    try:
        emitter = make_emitter(certs_dir, stub.url)
        outcome = emitter.emit_once()
    finally:
        stub.close()
    assert outcome in ("error:tls_handshake_failed", "error:connection_reset")
    assert re.search(r"eventstore write event=TokensTransferred status=error "
                     r"reason=(tls_handshake_failed|connection_reset)", logbuf.getvalue())
    assert emitter.backends.rows == [("TokensTransferred", None)]
    assert emitter.backends.redis["registry:last_event_status"] == outcome
    assert not stub.seen


def test_emitter_server_hostname_mismatch(tmp_path, pki, certs_dir, logbuf):
    stub = EventStoreStub(tmp_path, pki, pem(pki.root), [201], dns="eventstore.other")
    try:
        emitter = make_emitter(certs_dir, stub.url)
        assert emitter.emit_once() == "error:tls_handshake_failed"
    finally:
        stub.close()
    assert ("status=error reason=tls_handshake_failed detail=server_cert_verify_failed"
            in logbuf.getvalue())


def test_emitter_untrusted_server_and_missing_svid(tmp_path, pki, other_pki, certs_dir, logbuf):
    stub = EventStoreStub(tmp_path, other_pki, pem(pki.root), [201])
    try:
        emitter = make_emitter(certs_dir, stub.url)
        assert emitter.emit_once() == "error:tls_handshake_failed"
        os.unlink(str(certs_dir / "svid_key.pem"))
        assert emitter.emit_once() == "error:svid_unavailable"
    finally:
        stub.close()


def test_emitter_connection_refused_and_db_failure(tmp_path, certs_dir, logbuf):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backends = FakeBackends()
    backends.pg_error = FakeOperationalError("no " + SECRETS["POSTGRES_PASSWORD"])
    emitter = make_emitter(certs_dir, "https://localhost:%d/api/v1/events/" % port, backends)
    assert emitter.emit_once() == "error:connection_refused"
    logs = logbuf.getvalue()
    assert "status=error reason=connection_refused" in logs
    assert "events insert failed error=FakeOperationalError" in logs
    assert_no_secrets(logs)


def test_emitter_thread_runs_on_interval_and_stops(tmp_path, pki, certs_dir, logbuf):
    stub = EventStoreStub(tmp_path, pki, pem(pki.root), [])
    try:
        emitter = make_emitter(certs_dir, stub.url, EVENT_INTERVAL="0.1")
        emitter.start()
        deadline = time.time() + 10
        while len(emitter.backends.rows) < 3 and time.time() < deadline:
            time.sleep(0.05)
        emitter.stop(5)
        assert not emitter.thread.is_alive()
    finally:
        stub.close()
    assert len(emitter.backends.rows) >= 3
    assert all(r == ("TokensTransferred", 201) for r in emitter.backends.rows)


# ------------------------------------------------- whole process, no secrets
def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_process_end_to_end_sigterm_and_no_secret_logged(tmp_path, pki, certs_dir):
    stub = EventStoreStub(tmp_path, pki, pem(pki.root), [201, 403])
    port = _free_port()
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    (secret_dir / "redis").write_text(SECRETS["REDIS_PASSWORD"] + "\n")
    env = dict(os.environ)
    env.update(base_env(certs_dir, REGISTRY_PORT=str(port), REGISTRY_BIND="127.0.0.1",
                        POSTGRES_HOST="127.0.0.1", POSTGRES_PORT=str(_free_port()),
                        REDIS_HOST="127.0.0.1", REDIS_PORT=str(_free_port()),
                        REDIS_PASSWORD="", REDIS_PASSWORD_FILE=str(secret_dir / "redis"),
                        DB_STARTUP_TIMEOUT="0.5", EVENT_INTERVAL="0.2",
                        EVENTSTORE_URL=stub.url))
    proc = subprocess.Popen([sys.executable, os.path.join(APP_DIR, "registry_app.py")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 20
        while len(stub.seen) < 2 and time.time() < deadline:
            time.sleep(0.1)
        client = Running.__new__(Running)
        client.port = port
        status, body = client.request("GET", "/health")
        assert status == 503 and body["status"] == "error"
        assert client.request("GET", "/internal/status",
                              {"X-Internal-Key": SECRETS["INTERNAL_API_KEY"]})[0] == 200
        assert client.request("GET", "/internal/status",
                              {"X-Internal-Key": SECRETS["REDIS_PASSWORD"]})[0] == 401
        assert client.request("POST", "/api/v1/events/",
                              {"X-Federation-License": SECRETS["FEDERATION_LICENSE_KEY"]},
                              body={})[0] == 403
        assert client.request("POST", "/api/v1/events/", peer_headers(pki),
                              body={"event_type": "TokensIssued"})[0] == 403
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    finally:
        stub.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    assert len(stub.seen) >= 2
    assert "eventstore write event=TokensTransferred status=201" in output
    assert "eventstore write event=TokensTransferred status=403 forbidden" in output
    assert "received SIGTERM, shutting down" in output and "registry stopped" in output
    assert "FEDERATION_LICENSE_KEY is set but not used" in output
    assert '"GET /health" 503' in output and '"GET /internal/status" 401' in output
    assert "Traceback" not in output
    assert_no_secrets(output)
    assert "***" not in output  # nothing even tried to log a secret
