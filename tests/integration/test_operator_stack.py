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
