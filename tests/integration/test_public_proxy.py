"""The public_proxy role on lab-host6 (operator guide, "mTLS Through Public Nginx"):
a public nginx with a lab wildcard certificate in front of the registry of the operator
stack, `ssl_verify_client optional_no_ca` on the federation locations, the federation
allow-list (SPIFFE ID of the client certificate) applied by nginx, the certificate passed
in X-SSL-Client-Cert and validated by the registry against the SPIRE trust bundle."""

from __future__ import annotations

import datetime
import http.client
import json
import re
import socket
import ssl
import time
import urllib.parse

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import failure_messages, put_file, recap, run_playbook, server_cli, sh, wait_for

# Lab host of this module: host6. make integration runs modules in parallel (one worker per
# module); modules that share a host must not disturb each other.

HOST = "host6"
REGISTRY = "registry6"
PUBLISH_PORT = 18080
SERVER_NAME = "registry6.lab.example.com"
WILDCARD = "*.lab.example.com"
SITE = "/etc/nginx/sites-available/theprotocol-public-proxy.conf"
FEDERATION = "/api/v1/federation/agent-cards"


# --------------------------------------------------------------------------- certificates

def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _cert(subject_cn, key, issuer=None, issuer_key=None, *, ca=False, dns=(), uri=None, days=30):
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer.subject if issuer else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=max(1, 1 - days)))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    sans = [x509.DNSName(d) for d in dns] + ([x509.UniformResourceIdentifier(uri)] if uri else [])
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if ca:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                        critical=True)
    else:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                                        critical=True)
    return builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A throwaway public CA with a wildcard certificate for *.lab.example.com, and client
    certificates that nginx accepts (optional_no_ca) but the registry must refuse."""
    d = tmp_path_factory.mktemp("public-proxy-pki")
    ca_key = _key()
    ca = _cert("lab public CA", ca_key, ca=True, days=30)
    wc_key = _key()
    wildcard = _cert(WILDCARD, wc_key, ca, ca_key, dns=[WILDCARD], days=30)
    (d / "ca.pem").write_bytes(_pem(ca))
    (d / "fullchain.pem").write_bytes(_pem(wildcard) + _pem(ca))
    (d / "privkey.pem").write_bytes(_pem_key(wc_key))
    (d / "privkey.pem").chmod(0o600)
    # Self-signed, claiming the federation's trust domain.
    ss_key = _key()
    (d / "selfsigned.pem").write_bytes(_pem(_cert("self-signed", ss_key, uri="spiffe://example.com/service/registry-evil")))
    (d / "selfsigned.key").write_bytes(_pem_key(ss_key))
    # A proper SVID chain, but of another trust domain.
    other_ca_key = _key()
    other_ca = _cert("other trust domain", other_ca_key, ca=True, uri="spiffe://other.example.org")
    other_key = _key()
    (d / "other.pem").write_bytes(_pem(_cert("other", other_key, other_ca, other_ca_key,
                                             uri="spiffe://other.example.org/service/registry-x")) + _pem(other_ca))
    (d / "other.key").write_bytes(_pem_key(other_key))
    # An unrelated key (mismatch) and an expired wildcard certificate.
    (d / "otherkey.pem").write_bytes(_pem_key(_key()))
    old_key = _key()
    (d / "expired.pem").write_bytes(_pem(_cert(WILDCARD, old_key, ca, ca_key, dns=[WILDCARD], days=-1)))
    (d / "expired.key").write_bytes(_pem_key(old_key))
    return d


def _minted_svid(dkr, lab, tmp_path_factory, spiffe_id, name):
    """An X.509-SVID for spiffe_id minted by the frame (it chains to the federation's bundle)."""
    server = dkr.containers.get(lab["spire_server"]["container"])
    sh(server, f"rm -rf /tmp/public-proxy-{name} && mkdir -p /tmp/public-proxy-{name}")
    server_cli(dkr, lab, "x509", "mint", "-spiffeID", spiffe_id, "-ttl", "1h", "-write", f"/tmp/public-proxy-{name}")
    d = tmp_path_factory.mktemp(name)
    for file in ("svid.pem", "key.pem"):
        (d / file).write_text(sh(server, ["cat", f"/tmp/public-proxy-{name}/{file}"])[1])
    return d / "svid.pem", d / "key.pem"


@pytest.fixture(scope="module")
def peer_svid(dkr, lab, tmp_path_factory):
    """A valid SVID of another registry of the federation, minted by the frame."""
    return _minted_svid(dkr, lab, tmp_path_factory, "spiffe://example.com/service/registry-peer", "peer")


@pytest.fixture(scope="module")
def workload_svid(dkr, lab, tmp_path_factory):
    """A valid SVID of the trust domain that is not a registry's (not on the allow-list)."""
    return _minted_svid(dkr, lab, tmp_path_factory, "spiffe://example.com/service/billing", "workload")


# --------------------------------------------------------------------------- deployment

def _vars_file(tmp_path, **extra) -> str:
    path = tmp_path / f"vars-{time.monotonic_ns()}.json"
    path.write_text(json.dumps({"theprotocol_public_server_name": SERVER_NAME,
                                "theprotocol_registry_publish_port": PUBLISH_PORT, **extra}))
    return "@" + str(path)


def _proxy(pki, tmp_path, *args, **extra):
    base = {"public_proxy_cert_file": str(pki / "fullchain.pem"), "public_proxy_key_file": str(pki / "privkey.pem")}
    return run_playbook("playbooks/public_proxy.yml", "-l", HOST, "-e", _vars_file(tmp_path, **{**base, **extra}),
                        *args)


@pytest.fixture(scope="module")
def host(dkr, lab):
    return dkr.containers.get(lab["hosts"][HOST]["container"])


@pytest.fixture(scope="module")
def proxy(lab, host, pki, tmp_path_factory):
    """The operator stack on host6 with the registry published on 127.0.0.1, then the public proxy."""
    tmp = tmp_path_factory.mktemp("public-proxy-vars")
    started = time.monotonic()
    rc, out = run_playbook("playbooks/site.yml", "-l", f"frame,{HOST}",
                           "-e", json.dumps({"operator_stack_registry_publish_port": PUBLISH_PORT}), structured=False)
    assert rc == 0, out[-6000:]
    rc, result = _proxy(pki, tmp)
    assert rc == 0, failure_messages(result) or result
    print(f"stack + public proxy deployed in {time.monotonic() - started:.0f}s")
    return {"address": lab["hosts"][HOST]["address"], "tmp": tmp}


# --------------------------------------------------------------------------- HTTP client

def _request(proxy, pki, method, path, *, cert=None, headers=None, body=None, port=443, tls=True):
    """(status, headers, body) of a request to the public nginx, verified against the lab public CA."""
    if tls:
        ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        if cert:
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        conn = http.client.HTTPSConnection(proxy["address"], port, context=ctx, timeout=15)
        # SNI and certificate check against the public server name (the wildcard covers it).
        conn.sock = ctx.wrap_socket(socket.create_connection((proxy["address"], port), timeout=15),
                                    server_hostname=SERVER_NAME)
    else:
        conn = http.client.HTTPConnection(proxy["address"], port, timeout=15)
    try:
        conn.request(method, path, body=body, headers={"Host": SERVER_NAME, **(headers or {})})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, dict(resp.getheaders()), data
    finally:
        conn.close()


def _json(data):
    try:
        return json.loads(data)
    except ValueError:
        return {"raw": data.decode(errors="replace")}


def _registry_log_since(host, since: str) -> str:
    return sh(host, f"docker logs --since {since} {REGISTRY}-registry 2>&1")[1]


def _now_docker(host) -> str:
    return sh(host, ["date", "-u", "+%Y-%m-%dT%H:%M:%S.%NZ"])[1].strip()


# --------------------------------------------------------------------------- tests

def test_served_certificate_is_the_wildcard_and_tls_is_modern(proxy, pki):
    status, headers, _body = _request(proxy, pki, "GET", "/health")
    assert status == 200
    assert headers.get("Strict-Transport-Security", "").startswith("max-age=")
    for version in ("TLSv1", "TLSv1_1"):
        version = getattr(ssl.TLSVersion, version)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.minimum_version = ctx.maximum_version = version
        try:
            ctx.set_ciphers("ALL:@SECLEVEL=0")
            with socket.create_connection((proxy["address"], 443), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname=SERVER_NAME):
                    pytest.fail(f"{version.name} was accepted")
        except (ssl.SSLError, OSError):
            pass


def test_http_redirects_to_https(proxy, pki):
    status, headers, _body = _request(proxy, pki, "GET", "/health?x=1", port=80, tls=False)
    assert status == 301
    assert headers["Location"] == f"https://{SERVER_NAME}/health?x=1"


def test_non_federation_paths_work_without_client_certificate(proxy, pki):
    status, _hdrs, body = _request(proxy, pki, "GET", "/health")
    assert status == 200 and _json(body)["status"] == "ok", body


def test_peer_with_valid_svid_gets_through(proxy, pki, peer_svid):
    status, _hdrs, body = _request(proxy, pki, "GET", FEDERATION, cert=peer_svid)
    assert status == 200, body
    assert _json(body)["peer_spiffe_id"] == "spiffe://example.com/service/registry-peer"
    status, _hdrs, body = _request(proxy, pki, "POST", "/api/v1/events/", cert=peer_svid,
                                   headers={"Content-Type": "application/json"},
                                   body=b'{"event_type":"TokensTransferred"}')
    assert status == 200 and _json(body)["status"] == "accepted", body


def _marked_registry_log(proxy, pki, host, since) -> str:
    """The registry's log since `since`, read once a marker request (GET /health) shows in it."""
    _request(proxy, pki, "GET", "/health")
    return wait_for("the marker in the registry's log",
                    lambda: (text := _registry_log_since(host, since)) and '"GET /health"' in text and text, timeout=20)


@pytest.mark.parametrize("path,method", [(FEDERATION, "GET"), ("/api/v1/events/", "POST"),
                                         ("/api/v1/cross-teg/transfer", "POST"),
                                         ("/internal/federation/query", "POST")])
def test_no_client_certificate_is_refused_by_the_allow_list_and_never_reaches_the_registry(
        proxy, pki, host, path, method):
    since = _now_docker(host)
    status, _hdrs, body = _request(proxy, pki, method, path, body=b"{}" if method == "POST" else None)
    assert status == 403, body
    assert _json(body) == {"error": "federation peer not allowed",
                           "reason": "the client certificate carries no single SPIFFE ID (spiffe:// URI SAN)"}, body
    log = _marked_registry_log(proxy, pki, host, since)
    assert path not in log, log


@pytest.mark.parametrize("path", [FEDERATION, "/api/v1/events/", "/api/v1/cross-teg/transfer"])
def test_forged_client_cert_header_never_reaches_the_registry(proxy, pki, host, peer_svid, path):
    # The forged value is a real, valid SVID certificate (certificates are public): if nginx
    # passed it on, the registry would accept it, as it does when sent to its port directly.
    forged = urllib.parse.quote(peer_svid[0].read_text())
    method, body = ("GET", None) if path == FEDERATION else ("POST", b'{"event_type":"TokensTransferred"}')
    _code, out = sh(host, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method,
                           "-H", f"X-SSL-Client-Cert: {forged}", "-H", "Content-Type: application/json",
                           *(["-d", body.decode()] if body else []), f"http://127.0.0.1:{PUBLISH_PORT}{path}"])
    assert out == "200", "control: the forged header is accepted when it reaches the registry"
    # The connection presents a self-signed certificate with an allowed registry ID (it passes the
    # allow-list): the registry must see that certificate, not the forged header, and refuse it.
    since = _now_docker(host)
    forged_headers = {"X-SSL-Client-Cert": forged, "Content-Type": "application/json"}
    status, _hdrs, resp = _request(proxy, pki, method, path, headers=forged_headers, body=body,
                                   cert=(pki / "selfsigned.pem", pki / "selfsigned.key"))
    assert status == 403 and _json(resp)["error"] == "client certificate rejected", resp
    log = wait_for("the registry's denial in its log", lambda: (
        (text := _registry_log_since(host, since)) and "auth denied" in text and text), timeout=20)
    assert re.search(r"federation auth denied status=403 reason=untrusted_chain path=" + re.escape(path), log), log
    assert f'"{method} {path}" 200' not in log, log


def test_plain_locations_drop_a_forged_header_too(proxy, pki, host, peer_svid):
    """With only the guide's /api/v1/federation/ location, /api/v1/events/ goes through the plain
    `location /`: a forged X-SSL-Client-Cert must not reach the registry there either."""
    rc, result = _proxy(pki, proxy["tmp"], public_proxy_federation_locations=["/api/v1/federation/"])
    assert rc == 0, failure_messages(result)
    try:
        forged = urllib.parse.quote(peer_svid[0].read_text())
        since = _now_docker(host)
        forged_headers = {"X-SSL-Client-Cert": forged, "Content-Type": "application/json"}
        status, _hdrs, resp = _request(proxy, pki, "POST", "/api/v1/events/", headers=forged_headers,
                                       body=b'{"event_type":"TokensTransferred"}')
        assert status == 401, resp
        assert wait_for("the registry's denial in its log", lambda: re.search(
            r"federation auth denied status=401 reason=no_client_cert path=/api/v1/events/",
            _registry_log_since(host, since)), timeout=20)
    finally:
        rc, result = _proxy(pki, proxy["tmp"])
        assert rc == 0, failure_messages(result)


def test_allowed_id_that_does_not_chain_passes_nginx_and_is_refused_by_the_registry(proxy, pki, host):
    since = _now_docker(host)
    status, _hdrs, body = _request(proxy, pki, "GET", FEDERATION, cert=(pki / "selfsigned.pem", pki / "selfsigned.key"))
    # 403 from the registry (nginx's allow-list answers "federation peer not allowed").
    assert status == 403, body
    assert _json(body)["error"] == "client certificate rejected", body
    assert wait_for("the registry's denial in its log", lambda: re.search(
        rf"federation auth denied status=403 reason=untrusted_chain path={FEDERATION}",
        _registry_log_since(host, since)), timeout=20)


def _direct_with_cert(host, path, cert_pem: str) -> str:
    """Status of the registry's loopback port given a certificate in X-SSL-Client-Cert (the control)."""
    return sh(host, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                     f"X-SSL-Client-Cert: {urllib.parse.quote(cert_pem)}", f"http://127.0.0.1:{PUBLISH_PORT}{path}"])[1]


@pytest.mark.parametrize("which", ["workload", "other"])
def test_ids_off_the_allow_list_are_refused_by_nginx_and_never_reach_the_registry(
        proxy, pki, host, workload_svid, which):
    cert, spiffe_id = {
        # Chains to the federation's bundle: only the allow-list stops it (the registry alone accepts it).
        "workload": (workload_svid, "spiffe://example.com/service/billing"),
        # A registry-looking ID of another trust domain, from another CA.
        "other": ((pki / "other.pem", pki / "other.key"), "spiffe://other.example.org/service/registry-x"),
    }[which]
    if which == "workload":
        assert _direct_with_cert(host, FEDERATION, cert[0].read_text()) == "200", \
            "control: the registry accepts a chaining SVID of any workload when it reaches it"
    since = _now_docker(host)
    status, _hdrs, body = _request(proxy, pki, "GET", FEDERATION, cert=cert)
    assert status == 403, body
    refusal = _json(body)
    assert refusal["error"] == "federation peer not allowed", body
    assert refusal["reason"] == f"SPIFFE ID {spiffe_id} is not on the federation allow-list of this registry", body
    assert refusal["allowed"] == ["spiffe://example.com/service/registry-*"], body
    log = _marked_registry_log(proxy, pki, host, since)
    assert FEDERATION not in log, log


def test_second_run_changes_nothing_and_check_mode_reports_nothing(proxy, pki):
    for args in ((), ("--check", "--diff")):
        rc, result = _proxy(pki, proxy["tmp"], *args)
        assert rc == 0, failure_messages(result)
        stats = recap(result)[HOST]
        assert stats["changed"] == 0, (args, [
            t["task"]["name"] for p in result["plays"] for t in p["tasks"] if t["hosts"].get(HOST, {}).get("changed")])


def test_key_file_is_private(proxy, host):
    out = sh(host, ["stat", "-c", "%a %U", f"/etc/nginx/tls/{SERVER_NAME}/privkey.pem"])[1].split()
    assert out == ["600", "root"]


def _site_state(host):
    site = sh(host, ["sha256sum", SITE])[1].split()[0]
    pid = sh(host, ["cat", "/run/nginx.pid"])[1].strip()
    return site, pid


def _assert_refused_and_intact(proxy, pki, host, before, result, *needles):
    msgs = "\n".join(failure_messages(result))
    assert "nginx -t refused the new configuration" in msgs, msgs or result
    assert "running nginx are unchanged" in msgs
    for needle in needles:
        assert needle in msgs, msgs
    assert _site_state(host) == before
    assert sh(host, ["nginx", "-t", "-q"], check=False)[0] == 0
    assert _request(proxy, pki, "GET", "/health")[0] == 200


def test_broken_configuration_is_refused_by_nginx_t_and_running_config_stays(proxy, pki, host):
    before = _site_state(host)
    rc, result = _proxy(pki, proxy["tmp"], public_proxy_extra_directives=["this_is_not_a_directive on;"])
    assert rc != 0
    _assert_refused_and_intact(proxy, pki, host, before, result, 'unknown directive "this_is_not_a_directive"')


def test_missing_certificate_file_is_refused_by_nginx_t_and_running_config_stays(proxy, pki, host):
    before = _site_state(host)
    missing = f"/etc/nginx/tls/{SERVER_NAME}/missing-fullchain.pem"
    rc, result = _proxy(pki, proxy["tmp"], public_proxy_cert_source="host", public_proxy_host_cert_path=missing,
                        public_proxy_host_key_path=f"/etc/nginx/tls/{SERVER_NAME}/privkey.pem")
    assert rc != 0
    _assert_refused_and_intact(proxy, pki, host, before, result, missing)


@pytest.mark.parametrize("extra,needle", [
    ({"public_proxy_key_file": "otherkey.pem"}, "the private key does not belong to it"),
    ({"public_proxy_cert_file": "expired.pem", "public_proxy_key_file": "expired.key"}, "it has expired"),
    ({"theprotocol_public_server_name": "registry6.example.net"}, "does not cover registry6.example.net"),
    ({"theprotocol_public_server_name": "a.registry6.lab.example.com"}, "does not cover a.registry6.lab.example.com"),
    ({"public_proxy_cert_file": "/nonexistent/fullchain.pem"}, "certificate /nonexistent/fullchain.pem"),
])
def test_preflight_refuses_bad_certificates_before_any_change(proxy, pki, host, extra, needle):
    before = _site_state(host)
    extra = {k: (str(pki / v) if k.endswith("_file") and not v.startswith("/") else v) for k, v in extra.items()}
    rc, result = _proxy(pki, proxy["tmp"], **extra)
    assert rc != 0
    msgs = "\n".join(failure_messages(result))
    assert needle in msgs, msgs
    assert recap(result)[HOST]["changed"] == 0
    assert _site_state(host) == before


# --------------------------------------------------------------------------- issue 12: internal endpoints closed

def _internal_key(host) -> str:
    from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
    env = _envfile.EnvFile.from_bytes(sh(host, ["cat", f"/opt/theprotocol/{REGISTRY}/.env.operator"])[1].encode())
    return env.value("INTERNAL_API_KEY")


def _direct(host, path, key=None, method="GET") -> str:
    """HTTP status of a request straight to the registry's loopback port (the control)."""
    return sh(host, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", method,
                     *(["-H", f"X-Internal-Key: {key}"] if key else []), f"http://127.0.0.1:{PUBLISH_PORT}{path}"])[1]


@pytest.mark.parametrize("path", ["/internal/status", "/internal/status/", "/internal/", "/api/v1/rows",
                                  "/api/v1/rows/", "/internal/federation/agents", "//internal/status",
                                  "/api/v1/../../internal/status"])
def test_internal_endpoints_are_refused_and_never_reach_the_registry(proxy, pki, host, path):
    key = _internal_key(host)
    if path in ("/internal/status", "/api/v1/rows"):
        assert _direct(host, path, key) == "200", "control: the key opens the endpoint when it reaches the registry"
    since = _now_docker(host)
    status, _hdrs, body = _request(proxy, pki, "GET", path, headers={"X-Internal-Key": key})
    assert status == 403, body
    assert _json(body) == {"error": "forbidden", "reason": "internal endpoint, not served publicly"}, body
    _request(proxy, pki, "GET", "/health")  # a marker request the registry does log
    log = wait_for("the marker in the registry's log",
                   lambda: (text := _registry_log_since(host, since)) and '"GET /health"' in text and text, timeout=20)
    assert "/internal/" not in log and "/api/v1/rows" not in log, log


def test_federation_query_goes_through_with_the_certificate_post_only(proxy, pki, host, peer_svid):
    path = "/internal/federation/query"
    status, _hdrs, body = _request(proxy, pki, "POST", path, cert=peer_svid,
                                   headers={"Content-Type": "application/json"}, body=b'{"q":"agents"}')
    assert status == 200, body
    assert _json(body)["peer_spiffe_id"] == "spiffe://example.com/service/registry-peer"
    assert _json(body)["endpoint"] == "POST /internal/federation/query"
    status, _hdrs, body = _request(proxy, pki, "POST", path, body=b"{}")
    assert status == 403 and _json(body)["error"] == "federation peer not allowed", body
    status, _hdrs, body = _request(proxy, pki, "GET", path, cert=peer_svid)
    assert status == 403, body  # limit_except POST, at nginx


def test_a_client_internal_key_never_reaches_the_registry(proxy, pki, host):
    """/api/v1/rows opened on purpose (internal locations: /internal/ only) and asked with the *real* key
    through the proxy: the registry logs the key as missing, so nginx removed the header."""
    key = _internal_key(host)
    assert _direct(host, "/api/v1/rows", key) == "200", "control: the real key opens /api/v1/rows"
    rc, result = _proxy(pki, proxy["tmp"], public_proxy_internal_locations=["/internal/"])
    assert rc == 0, failure_messages(result)
    try:
        for path, method in (("/api/v1/rows", "GET"), (FEDERATION, "GET")):
            since = _now_docker(host)
            status, _hdrs, body = _request(proxy, pki, method, path, headers={"X-Internal-Key": key})
            if path == "/api/v1/rows":
                assert status == 401, body
                log = wait_for("the registry's denial in its log", lambda: re.search(
                    r"internal auth denied status=401 reason=(\w+) path=/api/v1/rows", _registry_log_since(host, since)),
                    timeout=20)
                assert log.group(1) == "missing_key", log.group(0)
            else:
                assert status == 403, body  # the federation location: no certificate, key or not
                assert _json(body)["error"] == "federation peer not allowed", body
    finally:
        rc, result = _proxy(pki, proxy["tmp"])
        assert rc == 0, failure_messages(result)


def test_health_tells_nothing_about_the_database_and_redis(proxy, pki, host):
    status, _hdrs, body = _request(proxy, pki, "GET", "/health")
    assert status == 200 and _json(body) == {"status": "ok"}, body
    assert b"postgres" not in body and b"redis" not in body
    sh(host, ["docker", "stop", f"{REGISTRY}-redis"])
    try:
        direct = sh(host, ["curl", "-s", f"http://127.0.0.1:{PUBLISH_PORT}/health"])[1]
        assert '"redis": "failed"' in direct, "control: the registry's own /health shows the Redis state"
        for path in ("/health", "/health/"):
            status, _hdrs, body = _request(proxy, pki, "GET", path)
            assert status == 503 and _json(body) == {"status": "error"}, body
            assert b"redis" not in body and b"postgres" not in body and b"Error" not in body
    finally:
        sh(host, ["docker", "start", f"{REGISTRY}-redis"])
        assert wait_for("the public /health to be ok again",
                        lambda: _request(proxy, pki, "GET", "/health")[0] == 200, timeout=90)


def test_the_role_verifies_the_closed_endpoints_itself(proxy, pki):
    rc, result = _proxy(pki, proxy["tmp"])
    assert rc == 0, failure_messages(result)
    names = [t["task"]["name"] for p in result["plays"] for t in p["tasks"] if not t["hosts"].get(HOST, {}).get("skipped")]
    for wanted in ("GET /health answers the fixed body only", "Each internal location is refused by nginx",
                   "The federation locations and the federation query refuse a client without a SPIFFE ID"):
        assert any(wanted in n for n in names), (wanted, names)


GUIDE_SITE = "/etc/nginx/sites-enabled/000-guide-public-nginx.conf"


def _guide_site(host) -> bytes:
    """The guide's public nginx configuration ("mTLS Through Public Nginx") for this registry with the role's
    certificate: what an operator who followed the guide before the role still has enabled."""
    site = sh(host, ["cat", SITE])[1]
    cert = re.search(r"^\s*ssl_certificate\s+(\S+);", site, re.M).group(1)
    key = re.search(r"^\s*ssl_certificate_key\s+(\S+);", site, re.M).group(1)
    return f"""server {{
    listen 443 ssl;
    server_name {SERVER_NAME};
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_verify_client optional_no_ca;
    location /api/v1/federation/ {{
        proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
        proxy_pass http://localhost:{PUBLISH_PORT};
    }}
    location / {{
        proxy_pass http://localhost:{PUBLISH_PORT};
    }}
}}
""".encode()


def test_the_guides_site_left_enabled_fails_every_probe_of_the_role(proxy, pki, host):
    """The real fault behind the role's probes from outside: the guide's configuration for the same server name
    enabled next to the role's site. nginx loads it first and serves it (nginx -t only warns of the conflicting
    name), so /health tells the database and Redis state, and the internal and federation locations are proxied
    without the allow-list. The role reports every wrong answer at once; without the guide's site (the control)
    the same probes pass. A run that would change the role's site is refused before the reload."""
    put_file(host, GUIDE_SITE, _guide_site(host))
    try:
        sh(host, ["nginx", "-t", "-q"])
        sh(host, ["systemctl", "reload", "nginx"])

        def guide_site_answers():
            status, _hdrs, body = _request(proxy, pki, "GET", "/health")
            return status == 200 and b"redis" in body  # the registry's own /health, proxied as it is

        wait_for("the guide's site to answer /health", guide_site_answers, timeout=30)
        rc, result = _proxy(pki, proxy["tmp"])
        assert rc != 0, "the role's probes passed while the guide's site served the registry"
        [message] = failure_messages(result)
        assert "Every probe from outside got the answer it must get" in message, message
        assert "conflicting server name" in message, message
        wrong = {"/health": "the public health answer must tell nothing about the database and Redis",
                 "/internal/": "an internal location must be refused by nginx",
                 "/api/v1/rows": "an internal location must be refused by nginx",
                 "/internal/federation/query": "a client without a SPIFFE ID must be refused by the federation allow-list",
                 FEDERATION.rsplit("/", 1)[0] + "/": "a client without a SPIFFE ID must be refused by the federation allow-list",
                 "/api/v1/events/": "a client without a SPIFFE ID must be refused by the federation allow-list",
                 "/api/v1/cross-teg/": "a client without a SPIFFE ID must be refused by the federation allow-list"}
        for path, fault in wrong.items():
            assert f"{path}: {fault}" in message, (path, message)
        assert "7 wrong answer(s)" in message, message
        # A run that changes the role's site is refused before the reload: nginx -t of the candidate only warns of
        # the conflicting name, the role's check script refuses it, and the site stays as it was.
        site_before = sh(host, ["cat", SITE])[1]
        rc, result = _proxy(pki, proxy["tmp"], public_proxy_internal_locations=["/internal/"])
        assert rc != 0, "a site that another enabled site shadows was written"
        message = failure_messages(result)[-1]  # the rescue's report (the failed template task comes before it)
        assert "nginx -t refused the new configuration" in message, message
        assert f"another enabled site in /etc/nginx/sites-enabled also serves {SERVER_NAME} on the same port" \
            in message, message
        assert sh(host, ["cat", SITE])[1] == site_before
    finally:
        sh(host, ["rm", "-f", GUIDE_SITE])
        sh(host, ["systemctl", "reload", "nginx"])
    rc, result = _proxy(pki, proxy["tmp"])
    assert rc == 0, failure_messages(result)
    assert not failure_messages(result)
