"""playbooks/incident_response.yml on lab-host5 (registry5/operator5) against real faults:
agent killed, cert-writer stopped, agent banned on the lab SPIRE server, x509pop certificate
expired; a healthy stack; --check; no secret in any output or bundle. Every test restores
host5 to healthy. About 6 minutes in all (the agent-killed case waits the guide's 60 s)."""

from __future__ import annotations

import datetime as dt
import email
import json
import sys
import tarfile
import time

import pytest
import lab_registry
from conftest import REPO, put_file, recap, run_playbook, server_cli, sh, wait_for

# Lab host of this module: host5. make integration runs modules in parallel (one worker per
# module); modules that share a host must not disturb each other.

sys.path.insert(0, str(REPO / "lab"))

HOST = "host5"
REGISTRY = "registry5"
OPERATOR = "operator5"
STACK_DIR = f"/opt/theprotocol/{REGISTRY}"
SERVICES = ("spire-agent", "cert-writer", "nginx-federation", "registry", "db", "redis")
PUBLIC_KEYS = {"OPERATOR_NAME", "REGISTRY_NAME", "REGISTRY_DID", "TRUST_DOMAIN", "POSTGRES_USER", "POSTGRES_DB",
               "EVENTSTORE_URL", "EVENT_INTERVAL", "CERT_WRITER_INTERVAL", "FEDERATION_PORT", "MINTING_AUTHORITY",
               "EVENTSTORE_MTLS_REQUIRED"}
OUTPUTS: list[str] = []  # every playbook output, for the secret-leak test


def parse_ts(text: str) -> dt.datetime:
    base, dummy, frac = text.rstrip("Z").partition(".")
    return dt.datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(
        microsecond=int((frac or "0")[:6].ljust(6, "0")), tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def host(dkr, lab):
    if HOST not in lab["hosts"]:
        pytest.skip(f"the lab has no {HOST}: make lab-up LAB_HOSTS=5")
    return dkr.containers.get(lab["hosts"][HOST]["container"])


def inspect(host, service: str) -> dict:
    return json.loads(sh(host, ["docker", "inspect", f"{REGISTRY}-{service}"])[1])[0]


def started(host, service: str) -> dt.datetime:
    return parse_ts(inspect(host, service)["State"]["StartedAt"])


def all_healthy(host) -> bool:
    for service in SERVICES:
        state = inspect(host, service)["State"]
        if not state.get("Running") or state.get("Health", {}).get("Status") != "healthy":
            raise AssertionError(f"{service}: {state.get('Status')} {state.get('Health', {}).get('Status')}")
    return True


def wait_stack_healthy(host, timeout=240):
    wait_for(f"the {REGISTRY} stack to be healthy", lambda: all_healthy(host), timeout=timeout, interval=3)


@pytest.fixture(scope="module")
def smtp(dkr, lab):
    import labctl
    if "smtp_sink" in lab:
        return lab["smtp_sink"]
    return labctl.ensure_smtp_sink(dkr, lab["subnet"])


@pytest.fixture(scope="module")
def stack(host, lab, tmp_path_factory):
    """registry5 deployed by site.yml (only when missing) and healthy; returns the bundle dir."""
    if sh(host, ["test", "-f", f"{STACK_DIR}/docker-compose.operator.yml"], check=False)[0] != 0 or \
            sh(host, ["docker", "inspect", f"{REGISTRY}-spire-agent"], check=False)[0] != 0:
        rc, out = run_playbook("playbooks/site.yml", "-l", f"frame,{HOST}", structured=False)
        assert rc == 0, out[-4000:]
    wait_stack_healthy(host)
    bundles = tmp_path_factory.mktemp("incident-bundles")
    # A first run installs the module's Debian requirements if they are missing.
    rc, out = run_playbook("playbooks/incident_response.yml", "-l", HOST, "-e", f"incident_response_bundle_dir={bundles}",
                           structured=False)
    assert rc == 0, out[-4000:]
    return bundles


def respond(stack, *args, structured=True):
    rc, result = run_playbook("playbooks/incident_response.yml", "-l", HOST,
                              "-e", f"incident_response_bundle_dir={stack}", *args, structured=structured)
    OUTPUTS.append(result if isinstance(result, str) else json.dumps(result))
    return rc, result


def task_results(result: dict, name: str) -> list:
    return [res for play in result.get("plays", []) for task in play.get("tasks", [])
            if task["task"]["name"].split(" : ", 1)[-1] == name for res in task["hosts"].values()]


def classification(result: dict) -> dict:
    res = task_results(result, "Collect the evidence (logs, auth failures, agent health, container states, SVID) and classify")
    return res[0]["classification"]


def ran(result: dict, name: str) -> bool:
    return any(not r.get("skipped") for r in task_results(result, name))


# The recovery's verification task (roles/incident_response/tasks/recover_verify.yml): the evidence and the
# checklist of one observation per attempt. The role waits for the checks the plan names; these tests ask more of
# the lab stack: every check passes.
VERIFY = "Verify (agent healthy, fresh SVID written, nginx-federation serving it, the checks that prove the recovery pass)"


def verified_checklist(result: dict) -> dict:
    """The checklist of the recovery's verification (its last attempt), with the number of attempts."""
    res = task_results(result, VERIFY)
    assert res and not res[0].get("skipped") and "summary" in res[0].get("checklist", {}), res
    return dict(res[0]["checklist"], attempts=res[0].get("attempts", 1))


def checklist_green(result: dict) -> dict:
    """The recovery's checklist verification: ran, no check failed, all checks evaluated."""
    summary = verified_checklist(result)["summary"]
    from ansible_collections.theprotocol.operator.plugins.module_utils import _checklist
    assert summary["failed"] == [] and summary["total"] == len(_checklist.CHECK_IDS), summary
    assert "security checklist green: " in json.dumps(result)
    return summary


def test_healthy_stack_changes_nothing(host, stack):
    # The checklist's eventstore_writes_ok looks at the last 300 s of the registry log: a fault that a
    # previous run of this module left there (403s while the agent was banned) is not this stack's state.
    wait_for("no EventStore refusal in the registry's last 300 s", lambda: not [
        line for line in sh(host, ["docker", "logs", "--since", "300s", f"{REGISTRY}-registry"])[1].splitlines()
        if "eventstore write" in line and ("status=401" in line or "status=403" in line)], timeout=330, interval=10)
    rc, result = respond(stack)
    assert rc == 0, result
    assert classification(result)["category"] == "healthy"
    # Step 1 in one call (issue 14): the checklist of the same observation as the evidence.
    evidence_checklist = task_results(result, "Collect the evidence (logs, auth failures, agent health, container "
                                              "states, SVID) and classify")[0]["checklist"]
    assert evidence_checklist["summary"]["status"] == "pass", evidence_checklist["summary"]
    assert "Security checklist: PASS" in json.dumps(result)
    assert recap(result)[HOST]["changed"] == 0
    assert "healthy - nothing to do, nothing was changed" in json.dumps(result)
    assert not list(stack.iterdir())


def test_cert_writer_stopped_check_mode_then_only_cert_writer_restarted(host, stack):
    sh(host, ["docker", "stop", f"{REGISTRY}-cert-writer"])
    before = {s: inspect(host, s)["State"]["StartedAt"] for s in SERVICES}
    # --check: the plan, nothing touched.
    rc, result = respond(stack, "--check")
    assert rc == 0, result
    c = classification(result)
    assert c["category"] == "local_fault" and c["faults"] == ["cert_writer"]
    assert "would restart cert-writer -> verify; nothing was changed" in json.dumps(result)
    assert recap(result)[HOST]["changed"] == 0
    assert {s: inspect(host, s)["State"]["StartedAt"] for s in SERVICES} == before
    assert inspect(host, "cert-writer")["State"]["Status"] == "exited"
    assert not list(stack.iterdir())
    # For real: only cert-writer restarted, verified.
    rc, result = respond(stack)
    assert rc == 0, result
    after = {s: inspect(host, s)["State"]["StartedAt"] for s in SERVICES}
    assert [s for s in SERVICES if after[s] != before[s]] == ["cert-writer"]
    assert not ran(result, "Restart spire-agent") and not ran(result, "Restart nginx-federation")
    verify = task_results(result, VERIFY)[0]
    assert verify["classification"]["category"] == "healthy"
    assert verify["svid"]["written_at"] >= verify["containers"]["cert-writer"]["started_at"]
    checklist_green(result)
    wait_stack_healthy(host)


def test_agent_killed_recovered_with_the_60s_wait(host, stack):
    sh(host, ["docker", "kill", f"{REGISTRY}-spire-agent"])
    wait_for("spire-agent to be down", lambda: not inspect(host, "spire-agent")["State"]["Running"], timeout=30)
    t0 = time.monotonic()
    rc, result = respond(stack)
    assert rc == 0, result
    c = classification(result)
    assert c["category"] == "local_fault" and "spire_agent" in c["faults"]
    agent, writer = started(host, "spire-agent"), started(host, "cert-writer")
    assert (writer - agent).total_seconds() >= 60, (agent, writer)
    verify = task_results(result, VERIFY)[0]
    assert verify["classification"]["category"] == "healthy"
    assert verify["agent_healthcheck"]["output"] == "Agent is healthy."
    assert verify["served"]["matches_svid"] is True
    assert verify["svid"]["written_at"] >= verify["containers"]["cert-writer"]["started_at"]
    checklist_green(result)
    print(f"agent killed -> recovered in {time.monotonic() - t0:.0f}s; cert-writer started "
          f"{(writer - agent).total_seconds():.1f}s after the agent")
    wait_stack_healthy(host)


def test_a_newer_image_in_the_registry_is_reported_not_escalated(host, stack, tmp_path):
    """Issue 14's case on the lab: the spire-agent killed while the lab registry holds a newer image of
    redis under the tag the stack runs (images_up_to_date fails: the incident did not cause it and a
    restart cannot fix it). The recovery restarts the agent, the cert-writer 60 s later, verifies the
    checks its plan names and ends recovered, not escalated; the report names images_up_to_date as
    reported. Before the recovery plan became data, the same stack retried until 248 s and escalated."""
    repo, tag = "theprotocol/redis", f"incident-{HOST}"
    with lab_registry.own_tag(repo, tag) as (manifest, media):
        lab_registry.deploy_with_tag(HOST, tmp_path, "redis", tag)
        try:
            wait_stack_healthy(host)
            lab_registry.push_newer(repo, tag, manifest, media, "org.theprotocol.lab.incident-newer")
            sh(host, ["docker", "kill", f"{REGISTRY}-spire-agent"])
            wait_for("spire-agent to be down", lambda: not inspect(host, "spire-agent")["State"]["Running"],
                     timeout=30)
            t0 = time.monotonic()
            rc, result = respond(stack, "-e", "incident_response_mail_enabled=false")
            text = json.dumps(result)
            assert rc == 0, text[-4000:]
            c = classification(result)
            assert c["category"] == "local_fault" and "spire_agent" in c["faults"], c
            green = verified_checklist(result)
            assert green["summary"]["failed"] == ["images_up_to_date"], green["summary"]
            assert "(reported, not escalated): images_up_to_date" in text
            assert "ESCALATED" not in text and "ESCALATION NOT DELIVERED" not in text
            assert recap(result)[HOST]["failures"] == 0
            print(f"agent killed with a newer redis image in the registry: recovered in "
                  f"{time.monotonic() - t0:.0f}s, checklist verified after {green.get('attempts', 1)} attempt(s)")
        finally:
            lab_registry.deploy_with_tag(HOST, tmp_path, "redis", "lab")
            wait_stack_healthy(host)
            for bundle in stack.glob("*.tar.gz"):
                bundle.unlink()


OLD_PASSWORD = "old-postgres-password-it-4711"
OLD_REDIS = "old-redis-password-it-4711"
BACKUP = f"{STACK_DIR}/.env.operator.20260101T000000Z.bak"


def _inject_hostile_log_lines(host) -> list[str]:
    """Old passwords (in a backup of .env.operator), URL user info and the live internal key in the
    logs of nginx-federation and the registry; returns the values that must not reach the bundle."""
    from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
    env = _envfile.EnvFile.from_bytes(sh(host, ["cat", f"{STACK_DIR}/.env.operator"])[1].encode())
    key = env.value("INTERNAL_API_KEY")
    put_file(host, BACKUP, f"POSTGRES_PASSWORD={OLD_PASSWORD}\nREDIS_PASSWORD={OLD_REDIS}\n".encode(), 0o600)
    lines = [f"db: password authentication failed for user registry (password={OLD_PASSWORD}) 401",
             f"redis: redis://:{OLD_REDIS}@redis:6379/0 refused 403",
             f"proxy: GET /internal/status X-Internal-Key: {key} 403",
             "emitter: POST https://ops:url-token-it-4711@eventstore.example.com/ 403"]
    # nginx-federation only: a 401/403 line in the registry's log would fail the checklist's
    # eventstore_writes_ok for the next 300 s (as a real refusal would).
    sh(host, ["docker", "exec", "-e", "L=" + "\n".join(lines), f"{REGISTRY}-nginx-federation", "sh", "-c",
              'printf "%s\\n" "$L" > /proc/1/fd/1'])
    assert OLD_REDIS in sh(host, ["docker", "logs", "--tail", "5", f"{REGISTRY}-nginx-federation"])[1]
    return [OLD_PASSWORD, OLD_REDIS, key, "url-token-it-4711"]


def test_restarts_that_leave_the_checklist_failing_are_escalated(host, stack):
    """cert-writer stopped (a local fault restarts fix) and .env.operator world-readable (one they don't):
    the restart works, the evidence says healthy, but the checklist is not green, so it escalates.
    The logs hold old passwords, URL user info and the internal key: the bundle holds none of them."""
    env = f"{STACK_DIR}/.env.operator"
    hostile = _inject_hostile_log_lines(host)
    sh(host, ["docker", "stop", f"{REGISTRY}-cert-writer"])
    sh(host, ["chmod", "0644", env])
    try:
        rc, result = respond(stack, "-e", "incident_response_mail_enabled=false",
                             "-e", "incident_response_verify_retries=2")
        assert rc != 0
        assert classification(result)["faults"] == ["cert_writer"]
        assert ran(result, "Restart cert-writer")
        verify = task_results(result, VERIFY)[0]
        assert verify["classification"]["category"] == "healthy"
        green = verified_checklist(result)
        assert green["summary"]["failed"] == ["env_file_permissions"], green["summary"]
        text = json.dumps(result)
        assert "security checklist NOT green, failing: env_file_permissions" in text
        # Mail off and no webhook: nobody was told, and the report says so (never "ESCALATED").
        assert ("ESCALATION NOT DELIVERED (local_fault): no channel delivered (mail (disabled), webhook (not configured))"
                in text), text[-3000:]
        assert "ESCALATED" not in text
        assert recap(result)[HOST]["failures"] == 1  # the escalation's own failure, no task error
        bundles = list(stack.glob("incident-registry5-*.tar.gz"))
        assert len(bundles) == 1
        with tarfile.open(bundles[0]) as tar:
            member = [n for n in tar.getnames() if n.endswith("/checklist.json")][0]
            checklists = json.loads(tar.extractfile(member).read())
        assert checklists["verify"]["summary"]["failed"] == ["env_file_permissions"]
        assert "env_file_permissions" in checklists["identify"]["summary"]["failed"]
        # grep the whole bundle (every member, and the compressed file itself) for the hostile values.
        with tarfile.open(bundles[0]) as tar:
            members = {m.name: tar.extractfile(m).read().decode("utf-8", "replace")
                       for m in tar.getmembers() if m.isfile()}
        nginx_log = [t for n, t in members.items() if n.endswith("logs/nginx-federation.log")][0]
        assert "redis://<redacted>@redis:6379/0" in nginx_log and "X-Internal-Key: <redacted> 403" in nginx_log
        assert "https://<redacted>@eventstore.example.com/ 403" in nginx_log
        for value in hostile:
            assert all(value not in text for text in members.values()), value
            assert value not in text
        OUTPUTS.extend(members.values())
    finally:
        sh(host, ["rm", "-f", BACKUP])
        sh(host, ["chmod", "0600", env])
        sh(host, ["docker", "start", f"{REGISTRY}-cert-writer"])
        wait_stack_healthy(host)
        for bundle in stack.glob("*.tar.gz"):
            bundle.unlink()


def test_spire_server_unreachable_is_escalated_without_restart(dkr, lab, host, stack):
    """host5 cut off the lab network (Ansible reaches it through Docker, not the network), the agent
    restarted without a cached workload SVID: classified server_unreachable, no restart, escalated."""
    network, address = dkr.networks.get(lab["network"]), lab["hosts"][HOST]["address"]
    network.disconnect(host)
    try:
        sh(host, ["docker", "restart", f"{REGISTRY}-spire-agent"])
        time.sleep(5)
        rc, result = respond(stack, "-e", "incident_response_mail_enabled=false")
        assert rc != 0
        c = classification(result)
        assert c["category"] == "server_unreachable" and c["escalate"] and not c["restart"], c
        assert any("does not accept TCP connections" in r for r in c["reasons"]), c["reasons"]
        assert not ran(result, "Restart spire-agent") and not ran(result, "Restart cert-writer")
        # The agent, unable to reach its server, exits and Docker's restart policy starts it again:
        # its StartedAt moves on its own. What must not happen is a restart by the playbook.
        assert "restarted (Docker State.StartedAt)" not in json.dumps(result)
        assert "ESCALATION NOT DELIVERED (server_unreachable)" in json.dumps(result)
        assert recap(result)[HOST]["failures"] == 1  # the escalation's own failure, no task error
        assert len(list(stack.glob("incident-registry5-*.tar.gz"))) == 1
    finally:
        network.reload()
        if host.id not in [c.id for c in network.containers]:
            network.connect(host, ipv4_address=address)
        sh(host, ["docker", "restart", f"{REGISTRY}-spire-agent"])
        restore_after_agent_restart(host, stack)


def restore_after_agent_restart(host, stack):
    """After a test restarted the agent: wait for it, restart cert-writer, wait for the stack, drop bundles."""
    wait_for("the agent to be healthy again", lambda: "Agent is healthy." in sh(
        host, ["docker", "exec", f"{REGISTRY}-spire-agent", "/opt/spire/bin/spire-agent", "healthcheck"],
        check=False)[1], timeout=120, interval=3)
    sh(host, ["docker", "restart", f"{REGISTRY}-cert-writer"])
    wait_stack_healthy(host)
    for bundle in stack.glob("*.tar.gz"):
        bundle.unlink()


def _mails(dkr, smtp) -> set:
    sink = dkr.containers.get(smtp["container"])
    return set(sh(sink, ["ls", smtp["spool"]])[1].split())


def test_agent_banned_is_escalated_by_mail_without_restart(dkr, lab, host, stack, smtp):
    crt = sh(host, ["cat", f"{STACK_DIR}/spire/x509pop.crt"])[1]
    from ansible_collections.theprotocol.operator.plugins.module_utils import _x509
    agent_id = _x509.x509pop_agent_spiffe_id(lab["trust_domain"], _x509.load_pem_chain(crt)[0])
    mails_before = _mails(dkr, smtp)
    writer_before = inspect(host, "cert-writer")["State"]["StartedAt"]
    server_cli(dkr, lab, "agent", "ban", "-spiffeID", agent_id)
    try:
        wait_for("the agent to log its ban",
                 lambda: "agent is banned" in sh(host, ["docker", "logs", "--tail", "20", f"{REGISTRY}-spire-agent"])[1],
                 timeout=120, interval=3)
        rc, out = respond(stack, "-vvv", "-e", f"incident_response_smtp_host={smtp['address']}",
                          "-e", f"incident_response_smtp_port={smtp['port']}",
                          "-e", f"incident_response_smtp_username={smtp['user']}",
                          "-e", f"incident_response_smtp_password={smtp['password']}",
                          "-e", f"incident_response_smtp_ca_path={smtp['ca_cert']}", structured=False)
        assert rc != 0, out[-3000:]
        assert "ESCALATED (revoked) by mail (not delivered: webhook (not configured))" in out
        assert "registry5: revoked" in out
        assert "TASK [theprotocol.operator.incident_response : Restart spire-agent]" not in out
        assert "TASK [theprotocol.operator.incident_response : Restart cert-writer]" not in out
        assert inspect(host, "cert-writer")["State"]["StartedAt"] == writer_before
        bundles = list(stack.glob("incident-registry5-*.tar.gz"))
        assert len(bundles) == 1
        with tarfile.open(bundles[0]) as tar:
            names = tar.getnames()
            summary = tar.extractfile([n for n in names if n.endswith("summary.txt")][0]).read().decode()
        for part in ("summary.txt", "timeline.json", "evidence.json", "versions.json", "logs/spire-agent.log",
                     "logs/cert-writer.log", "logs/nginx-federation.log", "logs/registry-auth-failures.log"):
            assert any(n.endswith(part) for n in names), (part, names)
        assert "Operator name:   operator5" in summary and "did:web:registry5.lab.example.com" in summary
        assert "agent is banned" in summary and "@sha256:" in summary
        new = wait_for("the mail at the SMTP sink", lambda: _mails(dkr, smtp) - mails_before, timeout=30)
        assert len(new) == 1
        sink = dkr.containers.get(smtp["container"])
        raw = sh(sink, ["cat", f"{smtp['spool']}/{new.pop()}"])[1].encode()
        msg = email.message_from_bytes(raw)
        assert msg["X-Sink-TLS"] == "yes" and msg["X-Sink-Auth"] == "yes"
        assert "over TLSv1.3, server certificate verified" in out
        assert "security@example.com" in msg["X-Sink-Rcpt-To"] and "revoked" in msg["Subject"]
        attached = [p for p in msg.walk() if (p.get_filename() or "").endswith(".tar.gz")]
        assert [p.get_filename() for p in attached] == [bundles[0].name]
        assert attached[0].get_payload(decode=True) == bundles[0].read_bytes()
        OUTPUTS.append(bundles[0].read_bytes().decode("latin-1"))
        with tarfile.open(bundles[0]) as tar:
            for member in tar.getmembers():
                if member.isfile():
                    OUTPUTS.append(tar.extractfile(member).read().decode("utf-8", "replace"))
    finally:
        # Restore: remove the banned agent entry (evict), then the agent re-attests with the same certificate.
        server_cli(dkr, lab, "agent", "evict", "-spiffeID", agent_id)
        sh(host, ["docker", "restart", f"{REGISTRY}-spire-agent"])
        restore_after_agent_restart(host, stack)


def _reset_agent(host, image: str):
    """Wipe the agent's data volume (no cached SVID), so that it attests at start."""
    sh(host, ["docker", "stop", f"{REGISTRY}-spire-agent"])
    sh(host, ["docker", "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", "-v",
              f"{REGISTRY}_spire-agent-data:/d", image, "-c", "rm -rf /d/* /d/.[!.]*"])
    sh(host, ["docker", "start", f"{REGISTRY}-spire-agent"])


@pytest.fixture
def webhook():
    """An HTTP receiver on the controller (the role posts from there): records each POST's headers and JSON."""
    import http.server
    import threading
    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append({"headers": dict(self.headers), "path": self.path, "json": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()


def test_x509pop_expired_is_escalated(host, lab, stack, webhook):
    import labpki
    from cryptography.hazmat.primitives import serialization
    ca, ca_key = labpki.load_cert(lab["frame_ca_cert"]), labpki.load_key(lab["frame_ca_key"])
    now = dt.datetime.now(dt.timezone.utc)
    cert, key = labpki.issue_x509pop(ca, ca_key, f"operator-{OPERATOR}", not_before=now - dt.timedelta(days=2),
                                     not_after=now - dt.timedelta(hours=1))
    original_crt = sh(host, ["cat", f"{STACK_DIR}/spire/x509pop.crt"])[1].encode()
    original_key = sh(host, ["cat", f"{STACK_DIR}/spire/x509pop.key"])[1].encode()
    image = inspect(host, "spire-agent")["Config"]["Image"]
    writer_before = inspect(host, "cert-writer")["State"]["StartedAt"]
    put_file(host, f"{STACK_DIR}/spire/x509pop.crt", cert.public_bytes(serialization.Encoding.PEM))
    put_file(host, f"{STACK_DIR}/spire/x509pop.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), 0o600)
    try:
        _reset_agent(host, image)
        wait_for("the agent to fail attestation", lambda: "certificate has expired" in sh(
            host, ["docker", "logs", "--tail", "20", f"{REGISTRY}-spire-agent"])[1], timeout=60, interval=2)
        url, received = webhook
        token = "lab-webhook-token-" + str(time.time_ns())
        url_token = "lab-url-token-" + str(time.time_ns())
        # Mail enabled towards a port that refuses: the failed mail must not stop the webhook, whose
        # URL carries a token too (never shown, -vvv included).
        rc, out = respond(stack, "-vvv", "-e", "incident_response_smtp_host=127.0.0.1",
                          "-e", "incident_response_smtp_port=1", "-e", "incident_response_smtp_timeout=5",
                          "-e", json.dumps({"incident_response_webhook_url": f"{url}?token={url_token}",
                                            "incident_response_webhook_headers": {"Authorization": f"Bearer {token}"}}),
                          structured=False)
        assert rc != 0
        assert token not in out and url_token not in out
        assert len(received) == 1 and received[0]["headers"]["Authorization"] == f"Bearer {token}"
        assert received[0]["path"] == f"/hook?token={url_token}"
        assert "ESCALATED (x509pop_expired) by webhook (not delivered: mail (failed))" in out, out[-3000:]
        assert "mail NOT sent via 127.0.0.1" in out
        hook = received[0]["json"]
        assert hook["category"] == "x509pop_expired" and hook["registry_did"] == "did:web:registry5.lab.example.com"
        assert hook["bundle"].startswith("incident-registry5-") and hook["bundle"].endswith(".tar.gz")
        assert any(e["event"] == "escalating (step 3): not recoverable by restarts" for e in hook["timeline"])
        rc, result = respond(stack, "-e", "incident_response_mail_enabled=false")
        assert rc != 0
        c = classification(result)
        assert c["category"] == "x509pop_expired" and c["escalate"] and not c["restart"]
        # rc != 0 because of the escalation itself (fail_on_escalation), not of a task error
        assert "ESCALATION NOT DELIVERED (x509pop_expired)" in json.dumps(result)
        assert recap(result)[HOST]["failures"] == 1
        assert not ran(result, "Restart spire-agent") and not ran(result, "Restart cert-writer")
        assert inspect(host, "cert-writer")["State"]["StartedAt"] == writer_before
        assert len(list(stack.glob("incident-registry5-*.tar.gz"))) == 2
    finally:
        put_file(host, f"{STACK_DIR}/spire/x509pop.crt", original_crt)
        put_file(host, f"{STACK_DIR}/spire/x509pop.key", original_key, 0o600)
        _reset_agent(host, image)
        restore_after_agent_restart(host, stack)


def test_no_env_value_in_any_output_or_bundle(host):
    from ansible_collections.theprotocol.operator.plugins.module_utils import _envfile
    env = _envfile.EnvFile.from_bytes(sh(host, ["cat", f"{STACK_DIR}/.env.operator"])[1].encode())
    secrets = [env.value(k) for k in env.keys() if k not in PUBLIC_KEYS and env.value(k)]
    assert len(secrets) >= 3 and len(OUTPUTS) >= 5
    for text in OUTPUTS:
        for value in secrets:
            assert value not in text
