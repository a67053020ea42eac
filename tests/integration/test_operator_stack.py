"""Issue 3 proof: site.yml deploys the guide's stack on lab-host1; the guide's own commands
work as written; mTLS is enforced; idempotence and check mode; nothing secret leaks."""

from __future__ import annotations

import json
import re
import urllib.parse

import pytest
from cryptography import x509

from conftest import (STACK_DIR, STACK_HOST, STACK_OPERATOR, STACK_REGISTRY, put_file, recap, run_playbook,
                      server_cli, sh, wait_for)

from ansible_collections.theprotocol.operator.plugins.module_utils import _x509

# Lab host of this module: host1. make integration runs modules in parallel (one worker per
# module); modules that share a host must not disturb each other.

HOST, REGISTRY, OPERATOR = STACK_HOST, STACK_REGISTRY, STACK_OPERATOR
SERVICES = ["spire-agent", "cert-writer", "nginx-federation", "registry", "db", "redis"]
ENDPOINTS = [("POST", "/api/v1/events/"), ("GET", "/api/v1/federation/agent-cards"),
             ("POST", "/api/v1/federation/sync-request"), ("POST", "/internal/federation/query"),
             ("POST", "/api/v1/cross-teg/transfer")]


@pytest.fixture(scope="module")
def host(dkr, lab, deployed):
    return dkr.containers.get(lab["hosts"][HOST]["container"])


@pytest.fixture(scope="module")
def env_values(host) -> dict:
    text = sh(host, ["cat", f"{STACK_DIR}/.env.operator"])[1]
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def _inspect(host, name):
    return json.loads(sh(host, ["docker", "inspect", name])[1])[0]


def _curl(host, *args):
    """Status code of a curl from the lab host to its nginx-federation."""
    return sh(host, ["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", *args], check=False)[1].strip()


def _served_cert(host) -> x509.Certificate:
    out = sh(host, "openssl s_client -connect localhost:8443 -servername localhost </dev/null 2>/dev/null"
                   " | openssl x509")[1]
    return x509.load_pem_x509_certificate(out.encode())


def test_six_containers_run_healthy_under_the_guides_names(host):
    for svc in SERVICES:
        state = _inspect(host, f"{REGISTRY}-{svc}")["State"]
        assert state["Status"] == "running", (svc, state)
        assert state.get("Health", {}).get("Status") == "healthy", (svc, state.get("Health"))


def test_guide_commands_work_as_written(host):
    # docker exec ${REGISTRY_NAME}-spire-agent /opt/spire/bin/spire-agent healthcheck
    out = sh(host, ["docker", "exec", f"{REGISTRY}-spire-agent", "/opt/spire/bin/spire-agent", "healthcheck"])[1]
    assert out.strip() == "Agent is healthy."
    # docker logs ${REGISTRY_NAME}-cert-writer --tail 5  (should show recent SVID fetch)
    logs = sh(host, f"docker logs {REGISTRY}-cert-writer --tail 5 2>&1")[1]
    assert f"fetched SVID spiffe_id=spiffe://example.com/service/registry-{OPERATOR}" in logs, logs
    # curl -k https://localhost:<federation-port>/health
    assert _curl(host, "https://localhost:8443/health") == "200"
    # docker compose -f docker-compose.operator.yml restart ... works from the stack dir (.env link)
    code, out = sh(host, f"cd {STACK_DIR} && docker compose -f docker-compose.operator.yml ps --format json",
                   check=False)
    assert code == 0, out
    assert "required variable" not in out


def test_served_certificate_is_the_registry_svid_and_follows_rotation(host):
    first = _served_cert(host)
    assert _x509.svid_spiffe_id(first)[0] == f"spiffe://example.com/service/registry-{OPERATOR}"
    # Lab SVID TTL is 120 s: the agent renews at half-life, the cert-writer writes within 15 s,
    # nginx reloads within 5 s of the swap.
    rotated = wait_for("nginx-federation to serve a rotated SVID",
                       lambda: (c := _served_cert(host)).serial_number != first.serial_number and c,
                       timeout=150, interval=5)
    assert _x509.svid_spiffe_id(rotated)[0] == _x509.svid_spiffe_id(first)[0]
    assert rotated.not_valid_after_utc > first.not_valid_after_utc


@pytest.fixture(scope="module")
def peer_svid(dkr, lab, host):
    """A valid SVID of another registry of the federation, minted by the frame."""
    server = dkr.containers.get(lab["spire_server"]["container"])
    sh(server, "rm -rf /tmp/peer && mkdir -p /tmp/peer")
    server_cli(dkr, lab, "x509", "mint", "-spiffeID", "spiffe://example.com/service/registry-peer",
               "-ttl", "1h", "-write", "/tmp/peer")
    for name in ("svid.pem", "key.pem"):
        data = sh(server, ["cat", f"/tmp/peer/{name}"])[1].encode()
        put_file(host, f"/root/peer/{name}", data, 0o600)
    return "/root/peer/svid.pem", "/root/peer/key.pem"


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_federation_endpoints_refuse_requests_without_client_cert(host, method, path):
    code = _curl(host, "-X", method, f"https://localhost:8443{path}")
    assert code == "403", (path, code)


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_legacy_license_header_gets_403(host, peer_svid, method, path):
    assert _curl(host, "-X", method, "-H", "X-Federation-License: legacy-key", f"https://localhost:8443{path}") == "403"
    cert, key = peer_svid
    assert _curl(host, "-X", method, "-H", "X-Federation-License: legacy-key", "--cert", cert, "--key", key,
                 f"https://localhost:8443{path}") == "403"


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_peer_with_valid_svid_gets_through(host, peer_svid, method, path):
    cert, key = peer_svid
    body = '{"event_type":"TokensTransferred"}'
    code = _curl(host, "-X", method, "--cert", cert, "--key", key, "-H", "Content-Type: application/json",
                 "-d", body, f"https://localhost:8443{path}") if method == "POST" else \
        _curl(host, "--cert", cert, "--key", key, f"https://localhost:8443{path}")
    assert code.startswith("2"), (path, code)


def test_forged_client_cert_header_never_reaches_the_registry(host, peer_svid):
    cert_pem = sh(host, ["cat", peer_svid[0]])[1]
    forged = urllib.parse.quote(cert_pem)
    assert _curl(host, "-H", f"X-SSL-Client-Cert: {forged}", "https://localhost:8443/api/v1/federation/agent-cards") == "403"


# --------------------------------------------------------------------------- federation authorisation (issue 12)

PROBE_DIR = "/root/federation-probes"
DENIED = "federation peer not allowed"


def _mint(dkr, lab, host, name, spiffe_id):
    """An SVID minted by the lab frame (chains to the bundle), copied to the lab host; returns (cert, key) paths."""
    server = dkr.containers.get(lab["spire_server"]["container"])
    sh(server, f"rm -rf /tmp/{name} && mkdir -p /tmp/{name}")
    server_cli(dkr, lab, "x509", "mint", "-spiffeID", spiffe_id, "-ttl", "1h", "-write", f"/tmp/{name}")
    paths = []
    for src, dst in (("svid.pem", f"{name}.pem"), ("key.pem", f"{name}.key")):
        put_file(host, f"{PROBE_DIR}/{dst}", sh(server, ["cat", f"/tmp/{name}/{src}"])[1].encode(), 0o600)
        paths.append(f"{PROBE_DIR}/{dst}")
    return tuple(paths)


@pytest.fixture(scope="module")
def probe_certs(dkr, lab, host):
    """Client certificates of the probe matrix, on the lab host: name -> (cert, key)."""
    from ansible_collections.theprotocol.operator.plugins.module_utils import _probe_certs as pc

    registry_id = f"spiffe://example.com/service/registry-{OPERATOR}"
    made = {"self_signed": pc.self_signed(registry_id), "foreign_ca": pc.foreign_ca(registry_id)}
    agent_dir = f"/var/lib/docker/volumes/{REGISTRY}_spire-agent-data/_data"
    chain, key, agent_id = pc.agent_svid(sh(host, ["cat", f"{agent_dir}/agent-data.json"])[1].encode(),
                                         sh(host, ["cat", f"{agent_dir}/keys.json"])[1].encode())
    assert agent_id.startswith("spiffe://example.com/spire/agent/x509pop/"), agent_id
    made["agent_svid"] = (chain, key)
    out = {}
    for name, (cert_pem, key_pem) in made.items():
        put_file(host, f"{PROBE_DIR}/{name}.pem", cert_pem, 0o600)
        put_file(host, f"{PROBE_DIR}/{name}.key", key_pem, 0o600)
        out[name] = (f"{PROBE_DIR}/{name}.pem", f"{PROBE_DIR}/{name}.key")
    out["not_a_registry"] = _mint(dkr, lab, host, "not-a-registry", "spiffe://example.com/service/not-a-registry")
    out["registry_other"] = _mint(dkr, lab, host, "registry-other", "spiffe://example.com/service/registry-other")
    own = f"/var/lib/docker/volumes/{REGISTRY}_certs/_data"
    out["own"] = (f"{own}/svid.pem", f"{own}/svid_key.pem")
    out["agent_id"] = agent_id
    return out


def _request(host, method, path, cert=None, headers=(), body=True):
    """(status, body) of one request to nginx-federation from the lab host."""
    args = ["curl", "-sk", "-m", "10", "-X", method, "-w", "\n%{http_code}"]
    if cert:
        args += ["--cert", cert[0], "--key", cert[1]]
    for header in headers:
        args += ["-H", header]
    if method == "POST" and body:
        args += ["-H", "Content-Type: application/json", "-d", "{}"]
    out = sh(host, args + [f"https://localhost:8443{path}"], check=False)[1]
    text, dummy, code = out.rpartition("\n")
    return code.strip(), text


def test_probe_matrix_on_all_five_endpoints(host, probe_certs):
    """Every attack of the issue on every federation endpoint, each with its status code."""
    forged = "X-SSL-Client-Cert: " + urllib.parse.quote(sh(host, ["cat", probe_certs["registry_other"][0]])[1])
    probes = {
        "no certificate": dict(),
        "self-signed, registry SPIFFE ID": dict(cert=probe_certs["self_signed"]),
        "another CA, registry SPIFFE ID": dict(cert=probe_certs["foreign_ca"]),
        "SPIRE agent SVID": dict(cert=probe_certs["agent_svid"]),
        "workload SVID not-a-registry": dict(cert=probe_certs["not_a_registry"]),
        "legacy X-Federation-License (valid registry SVID)": dict(cert=probe_certs["registry_other"],
                                                                  headers=["X-Federation-License: legacy-key"]),
        "forged X-SSL-Client-Cert, no certificate": dict(headers=[forged]),
        "forged X-SSL-Client-Cert + agent SVID": dict(cert=probe_certs["agent_svid"], headers=[forged]),
        "second registry's SVID (registry-other)": dict(cert=probe_certs["registry_other"]),
        "our own registry SVID": dict(cert=probe_certs["own"]),
    }
    matrix = dict((name, dict((f"{m} {p}", _request(host, m, p, **kwargs)[0]) for m, p in ENDPOINTS))
                  for name, kwargs in probes.items())
    print(json.dumps(matrix, indent=1))  # the matrix, for the record (pytest -s)
    for name, row in matrix.items():
        expected = "200" if name in ("second registry's SVID (registry-other)", "our own registry SVID") else "403"
        assert set(row.values()) == {expected}, (name, row)


def test_refusals_say_why(host, probe_certs):
    code, text = _request(host, "GET", "/api/v1/federation/agent-cards", probe_certs["agent_svid"])
    body = json.loads(text)
    assert code == "403" and body["error"] == DENIED, text
    assert probe_certs["agent_id"] in body["reason"] and "allow-list" in body["reason"]
    assert body["allowed"] == ["spiffe://example.com/service/registry-*"]
    code, text = _request(host, "GET", "/api/v1/federation/agent-cards", probe_certs["self_signed"])
    assert code == "403" and "trust domain required" in json.loads(text)["error"], text
    code, text = _request(host, "GET", "/api/v1/federation/agent-cards", probe_certs["registry_other"])
    assert code == "200" and json.loads(text)["peer_spiffe_id"] == "spiffe://example.com/service/registry-other"
    logs = sh(host, f"docker logs --tail 20 {REGISTRY}-nginx-federation 2>&1")[1]
    assert f'verify="SUCCESS" spiffe_id="{probe_certs["agent_id"]}"' in logs, logs


def test_njs_reads_the_module_from_the_image_like_the_official_one(host):
    """The image ships njs at the official image's path and loads it only when configured (federation.conf)."""
    image = sh(host, ["docker", "inspect", "-f", "{{.Config.Image}}", f"{REGISTRY}-nginx-federation"])[1].strip()
    out = sh(host, ["docker", "run", "--rm", "--entrypoint", "sh", image, "-c",
                    "ls /etc/nginx/modules/ngx_http_js_module.so; cat /etc/nginx/modules-enabled/* 2>/dev/null; "
                    "grep -c load_module /etc/nginx/nginx.conf; true"])[1]
    assert "/etc/nginx/modules/ngx_http_js_module.so" in out and out.strip().endswith("0"), out
    conf = sh(host, ["cat", f"{STACK_DIR}/nginx/federation.conf"])[1]
    assert "load_module /etc/nginx/modules/ngx_http_js_module.so;" in conf
    assert '"~^spiffe://example\\.com/service/registry-[A-Za-z0-9._-]*$" 1;' in conf


def test_njs_refuses_certificates_without_exactly_one_spiffe_id(host):
    """Hostile shapes of a certificate that DOES chain to the trusted CA: a throwaway nginx-federation (the
    deployed configuration and njs module, a test CA as the bundle) on the lab host's Docker."""
    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import datetime

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "njs test CA")])
    ca = (cx509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(cx509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(hours=2))
          .add_extension(cx509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))

    def issue(name, sans):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (cx509.CertificateBuilder().subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(ca_name).public_key(key.public_key()).serial_number(cx509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(hours=1)))
        if sans:
            builder = builder.add_extension(cx509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return (cert.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))

    uri, dns = cx509.UniformResourceIdentifier, cx509.DNSName
    cases = {
        "two_uris": [uri("spiffe://example.com/service/registry-a"), uri("spiffe://example.com/service/registry-b")],
        "no_san": [],
        "dns_only": [dns("registry-a.example.com")],
        "https_uri": [uri("https://example.com/service/registry-a")],
        "dotdot": [uri("spiffe://example.com/service/../service/registry-a")],
        "upper_td": [uri("spiffe://EXAMPLE.com/service/registry-a")],
        "nested": [uri("spiffe://example.com/service/registry-a/extra")],
        "ok": [dns("x.example.com"), uri("spiffe://example.com/service/registry-a")],
    }
    d = "/root/njs-probe"
    sh(host, f"rm -rf {d} && mkdir -p {d}/certs")
    server_pem, server_key = issue("server", [dns("localhost")])
    put_file(host, f"{d}/certs/svid.pem", server_pem)
    put_file(host, f"{d}/certs/svid_key.pem", server_key, 0o600)
    put_file(host, f"{d}/certs/bundle.pem", ca.public_bytes(serialization.Encoding.PEM))
    for name, sans in cases.items():
        cert_pem, key_pem = issue(name, sans)
        put_file(host, f"{d}/certs/{name}.pem", cert_pem)
        put_file(host, f"{d}/certs/{name}.key", key_pem, 0o600)
    image = sh(host, ["docker", "inspect", "-f", "{{.Config.Image}}", f"{REGISTRY}-nginx-federation"])[1].strip()
    sh(host, "docker rm -f njs-probe >/dev/null 2>&1; true")
    sh(host, ["docker", "run", "-d", "--name", "njs-probe", "--network", "none",
              "-v", f"{STACK_DIR}/nginx/federation.conf:/etc/nginx/nginx.conf:ro",
              "-v", f"{STACK_DIR}/nginx/federation_authz.js:/etc/nginx/njs/federation_authz.js:ro",
              "-v", f"{d}/certs:/certs:ro", image])
    try:
        health = ["docker", "exec", "njs-probe", "curl", "-sk", "https://localhost:8443/health"]
        wait_for("the throwaway nginx to answer",
                 lambda: sh(host, health, check=False)[1].strip() == '{"status":"ok"}', timeout=60)
        got = {}
        for name in cases:
            out = sh(host, ["docker", "exec", "njs-probe", "curl", "-sk", "-m", "3", "-o", "/dev/null", "-w",
                            "%{http_code}", "--cert", f"/certs/{name}.pem", "--key", f"/certs/{name}.key",
                            "https://localhost:8443/api/v1/federation/agent-cards"], check=False)[1].strip()
            got[name] = out
        logs = sh(host, "docker logs njs-probe 2>&1")[1]
    finally:
        sh(host, "docker rm -f njs-probe >/dev/null 2>&1; true")
    # "ok" passes the allow-list (then fails to reach a registry: --network none), the others are refused.
    assert all(code == "403" for name, code in got.items() if name != "ok"), got
    assert got["ok"] != "403", got
    assert "2 URI SANs (an X.509-SVID has exactly one)" in logs and "URI SAN is not a SPIFFE ID" in logs, logs


def test_invalid_allow_list_is_refused_before_anything_changes(host):
    before = sh(host, ["sha256sum", f"{STACK_DIR}/nginx/federation.conf"])[1]
    rc, out = run_playbook("playbooks/site.yml", "-l", HOST, "-e",
                           json.dumps({"operator_stack_federation_allowed_spiffe_ids":
                                       ["spiffe://example.com/service/registry-*", 'spiffe://example.com/x"; }']}),
                           structured=False)
    assert rc != 0
    assert "operator_stack_federation_allowed_spiffe_ids" in out and "spiffe://example.com/x" in out, out[-3000:]
    assert sh(host, ["sha256sum", f"{STACK_DIR}/nginx/federation.conf"])[1] == before


def test_widened_allow_list_lets_any_svid_of_the_trust_domain_through(host, probe_certs):
    """The real fault of the non-registry probe: with ** the agent's and any workload's SVID get through."""
    wide = json.dumps({"operator_stack_federation_allowed_spiffe_ids": ["spiffe://example.com/**"]})
    rc, out = run_playbook("playbooks/site.yml", "-l", HOST, "-e", wide, structured=False)
    assert rc == 0, out[-3000:]
    try:
        wait_for("nginx to reload the widened allow-list",
                 lambda: _request(host, "GET", "/api/v1/federation/agent-cards", probe_certs["agent_svid"])[0] == "200",
                 timeout=30)
        for method, path in ENDPOINTS:
            assert _request(host, method, path, probe_certs["not_a_registry"])[0] == "200", path
    finally:
        rc, out = run_playbook("playbooks/site.yml", "-l", HOST, structured=False)
        assert rc == 0, out[-3000:]
    wait_for("the default allow-list back",
             lambda: _request(host, "GET", "/api/v1/federation/agent-cards", probe_certs["agent_svid"])[0] == "403",
             timeout=30)


def test_registry_writes_to_the_eventstore(host):
    def writes():
        logs = sh(host, f"docker logs {REGISTRY}-registry 2>&1")[1]
        return re.findall(r"eventstore write event=TokensTransferred status=201", logs)
    assert wait_for("a successful EventStore write in the registry log", writes, timeout=60, interval=3)


def test_registry_environment_is_the_guides(host):
    env = dict(e.split("=", 1) for e in _inspect(host, f"{REGISTRY}-registry")["Config"]["Env"])
    assert env["EVENTSTORE_MTLS_REQUIRED"] == "true"
    assert env["MINTING_AUTHORITY"] == "disabled"


def test_env_file_mode_and_no_secret_in_compose_file_inspect_or_output(host, env_values, deployed):
    stat = sh(host, ["stat", "-c", "%a %U", f"{STACK_DIR}/.env.operator"])[1].split()
    assert stat == ["600", "root"]
    secrets = {k: v for k, v in env_values.items() if k in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "INTERNAL_API_KEY")}
    assert len(secrets) == 3 and all(len(v) >= 32 for v in secrets.values())
    compose = sh(host, ["cat", f"{STACK_DIR}/docker-compose.operator.yml"])[1]
    inspect = sh(host, "docker inspect $(docker ps -aq)")[1]
    for key, value in secrets.items():
        assert value not in compose, f"{key} in the compose file"
        assert value not in deployed, f"{key} in the -vvv output of site.yml"
        assert value not in inspect, f"{key} in docker inspect"


def test_second_run_changes_nothing(deployed):
    rc, result = run_playbook("playbooks/site.yml", "-l", f"frame,{HOST}")
    assert rc == 0, result
    stats = recap(result)
    assert stats[HOST]["changed"] == 0 and stats["frame"]["changed"] == 0, stats


def test_check_mode_on_converged_host_changes_nothing(deployed):
    rc, result = run_playbook("playbooks/site.yml", "-l", f"frame,{HOST}", "--check")
    assert rc == 0, result
    stats = recap(result)
    assert stats[HOST]["changed"] == 0 and stats["frame"]["changed"] == 0, stats


def test_tls_protocols_are_modern(host):
    code, out = sh(host, "openssl s_client -connect localhost:8443 -tls1_1 </dev/null 2>&1", check=False)
    assert code != 0, out  # TLS 1.1 refused: only TLS 1.2 and 1.3 are configured
    code, out = sh(host, "openssl s_client -connect localhost:8443 -tls1_2 </dev/null 2>&1", check=False)
    assert code == 0 and "TLSv1.2" in out, out
