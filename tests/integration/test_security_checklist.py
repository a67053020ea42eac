"""The security checklist on the lab: every check passes on the healthy stack, and each real fault
makes exactly its check fail (or warn) with evidence saying why. Each fault is undone before the
next one; the stack ends healthy and converged (site.yml changed=0). The federation side (nginx,
served certificate, mTLS probe matrix, images) is test_security_checklist_federation.py on host11.

CHECKLIST_HOST (default host7, deployed by this module) picks the lab host to run on."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import secrets as secrets_module
import shlex
import xml.etree.ElementTree as ET

import pytest

from checklist_stack import ALL, WINDOW, ChecklistHost, assert_only, statuses  # noqa: F401
from conftest import STATE, recap, run_playbook, sh, put_file, server_cli, wait_for

# Lab host of this module: host7. make integration runs modules in parallel (one worker per
# module); modules that share a host must not disturb each other.

CK = ChecklistHost(os.environ.get("CHECKLIST_HOST", "host7"))
HOST, N, REG, OPERATOR, STACK, COMPOSE = CK.name, CK.n, CK.reg, CK.operator, CK.stack, CK.compose
stack = CK.fixture()
verify, wait_all_pass, env_secrets, cert_writer_data_dir = CK.verify, CK.wait_all_pass, CK.env_secrets, \
    CK.cert_writer_data_dir


# --------------------------------------------------------------------------- healthy, reports, check mode

def test_healthy_stack_passes_and_reports_parse_without_secrets(stack, tmp_path):
    wait_all_pass(tmp_path, timeout=120)
    results, text, out = verify(tmp_path, "-vvv")
    assert sorted(results) == sorted(ALL)
    assert set(statuses(results).values()) == {"pass"}
    fleet = json.loads((out / "fleet.json").read_text())
    assert fleet["hosts"][0]["host"] == HOST
    for xml in ("fleet.xml", f"{HOST}.xml"):
        suites = ET.parse(out / xml).getroot()
        cases = suites.findall("./testsuite/testcase")
        assert len(cases) == len(ALL) and not suites.findall(".//failure")
    table = (out / "fleet.md").read_text()
    assert f"| {HOST} | {REG} | PASS |" in table
    secrets = env_secrets(stack)
    assert len(secrets) >= 3
    blobs = [text] + [p.read_text() for p in out.iterdir()]
    for secret in secrets:
        for blob in blobs:
            assert secret not in blob


def test_check_mode_runs_the_checklist(stack, tmp_path):
    results, text, out = verify(tmp_path, "--check", name="check")
    assert set(statuses(results).values()) == {"pass"}
    assert "changed=0" in text


def test_missing_requirement_is_installed_then_the_checklist_is_one_task(stack, tmp_path):
    """python3-cryptography removed: the module names the package, the role installs it and runs the
    module again; once installed, no apt task runs at all."""
    sh(stack, ["apt-get", "remove", "-y", "-q", "python3-cryptography"])
    try:
        rc, text = run_playbook("playbooks/verify.yml", "-l", HOST, "-e", "security_checklist_install_requirements=false",
                                "-e", f"theprotocol_checklist_report_dir={tmp_path / 'refused'}", structured=False)
        assert rc != 0
        assert "Failed to import the required Python library" in text
        assert "set security_checklist_install_requirements: true to install python3-cryptography" in text
        # The failure is in the reports too, as an error row.
        refused = json.loads((tmp_path / "refused" / f"{HOST}.json").read_text())
        assert refused["status"] == "error" and "python3-cryptography" in refused["error"]
        results, text, out = verify(tmp_path, name="installed")
        assert set(statuses(results).values()) == {"pass"}
        assert re.search(r"Install the checklist module's requirements, reported missing by the module\]"
                         r" \*+\nchanged: \[" + HOST, text), text[-3000:]
    finally:
        sh(stack, ["apt-get", "install", "-y", "-q", "python3-cryptography"])
    results, text, out = verify(tmp_path, name="again")
    assert set(statuses(results).values()) == {"pass"}
    assert re.search(r"Install the checklist module's requirements, reported missing by the module\]"
                     r" \*+\nskipping: \[" + HOST, text), text[-3000:]


def test_serial_rollout_reports_hosts_of_later_batches_as_pending(stack, tmp_path):
    """serial 1 over host7 and a registry host whose container does not exist: batch 1 reports host7 and
    the other host as pending (not as an error); batch 2 is unreachable, so the run stops there."""
    extra = tmp_path / "ghost.yml"
    extra.write_text(json.dumps({"all": {"children": {"theprotocol_registries": {"hosts": {"ghost": {
        "ansible_connection": "community.docker.docker", "ansible_host": "lab-ghost-does-not-exist",
        "theprotocol_registry_name": "ghost", "theprotocol_operator_name": "ghost"}}}}}}))
    out = tmp_path / "serial"
    rc, text = run_playbook("playbooks/verify.yml", "-i", str(extra), "-l", f"{HOST},ghost",
                            "-e", "theprotocol_serial=1", "-e", f"theprotocol_checklist_report_dir={out}",
                            "-e", f"theprotocol_checklist_eventstore_window={WINDOW}", structured=False)
    assert rc != 0 and "ghost" in text
    fleet = json.loads((out / "fleet.json").read_text())
    assert [(h["host"], h["status"]) for h in fleet["hosts"]] == [(HOST, "pass"), ("ghost", "pending")]
    assert fleet["totals"]["pending_hosts"] == ["ghost"] and fleet["totals"]["failing_hosts"] == []
    assert (out / f"{HOST}.json").exists() and not (out / "ghost.json").exists()
    assert "| ghost | None | PENDING |" in (out / "fleet.md").read_text()


# --------------------------------------------------------------------------- faults, one by one

def test_env_file_world_readable(stack, tmp_path):
    sh(stack, ["chmod", "0644", f"{STACK}/.env.operator"])
    try:
        results, dummy, dummy2 = verify(tmp_path)
        assert_only(results, "env_file_permissions", "fail", "mode 0644", "readable by others")
    finally:
        sh(stack, ["chmod", "0600", f"{STACK}/.env.operator"])


def test_default_password(stack, tmp_path):
    original = sh(stack, ["cat", f"{STACK}/.env.operator"])[1].encode()
    weak = re.sub(rb"^POSTGRES_PASSWORD=.*$", b"POSTGRES_PASSWORD=postgres", original, flags=re.M)
    put_file(stack, f"{STACK}/.env.operator", weak, 0o600)
    try:
        results, dummy, dummy2 = verify(tmp_path)
        # A value typed into .env.operator by hand is also a secret changed outside the rotation.
        assert_only(results, "db_passwords_not_default", "fail", "POSTGRES_PASSWORD is a well-known default",
                    "PostgreSQL does not accept", also={"secrets_age": (
                        "warn", ["POSTGRES_PASSWORD: age unknown (changed outside the rotation"])})
    finally:
        put_file(stack, f"{STACK}/.env.operator", original, 0o600)
    assert sh(stack, ["stat", "-c", "%a %U", f"{STACK}/.env.operator"])[1].strip() == "600 root"


def _env_value(host, key):
    text = sh(host, ["cat", f"{STACK}/.env.operator"])[1]
    return re.search(rf"^{key}=(.*)$", text, re.M).group(1).strip().strip("'\"")


def _pg_admin(host, sql, **variables):
    """SQL as the db container's local admin (the socket the official image trusts); values as psql variables."""
    names = " ".join(f"-e {k}" for k in variables)
    sets = " ".join(f'-v {k.lower()}="${k}"' for k in variables)
    return sh(host, f"echo \"{sql}\" | docker exec -i {names} {REG}-db sh -c "
                    f"'psql -X -q -v ON_ERROR_STOP=1 -h /var/run/postgresql -U registry -d registry {sets}'",
              env=variables)


def _redis_admin(host, *command):
    # Quoted: a bare #<hash> word would start a shell comment.
    return sh(host, f"docker exec -e REDISCLI_AUTH {REG}-redis redis-cli -h 127.0.0.1 --no-auth-warning "
                    + " ".join(shlex.quote(c) for c in command),
              env={"REDISCLI_AUTH": _env_value(host, "REDIS_PASSWORD")})[1].strip()


def test_postgres_password_changed_behind_our_back(stack, tmp_path):
    other = secrets_module.token_urlsafe(24)
    _pg_admin(stack, "ALTER ROLE registry PASSWORD :'pw'", PW=other)
    try:
        results, dummy, dummy2 = verify(tmp_path)
        check = results["db_passwords_not_default"]
        assert check["status"] == "fail", check
        assert "PostgreSQL does not accept POSTGRES_PASSWORD from .env.operator (authentication failed)" in \
            " ".join(check["evidence"]), check
    finally:
        _pg_admin(stack, "ALTER ROLE registry PASSWORD :'pw'", PW=_env_value(stack, "POSTGRES_PASSWORD"))
    wait_all_pass(tmp_path)


def test_postgres_that_trusts_the_network_fails_the_check(stack, tmp_path):
    hba = "/var/lib/postgresql/data/pg_hba.conf"
    sh(stack, f"docker exec {REG}-db sed -i 's/^host all all all scram-sha-256$/host all all all trust/' {hba}")
    _pg_admin(stack, "SELECT pg_reload_conf()")
    try:
        results, dummy, dummy2 = verify(tmp_path)
        assert_only(results, "db_passwords_not_default", "fail", "PostgreSQL accepts any password",
                    "pg_hba.conf trusts connections from the stack network")
    finally:
        sh(stack, f"docker exec {REG}-db sed -i 's/^host all all all trust$/host all all all scram-sha-256/' {hba}")
        _pg_admin(stack, "SELECT pg_reload_conf()")
    wait_all_pass(tmp_path)


def test_redis_password_changed_behind_our_back(stack, tmp_path):
    wanted = hashlib.sha256(_env_value(stack, "REDIS_PASSWORD").encode()).hexdigest()
    other = hashlib.sha256(secrets_module.token_urlsafe(24).encode()).hexdigest()
    assert _redis_admin(stack, "ACL", "SETUSER", "default", f"#{other}", f"!{wanted}") == "OK"
    try:
        results, dummy, dummy2 = verify(tmp_path)
        check = results["db_passwords_not_default"]
        assert check["status"] == "fail", check
        assert "Redis does not accept REDIS_PASSWORD from .env.operator (authentication failed)" in \
            " ".join(check["evidence"]), check
    finally:
        # Not saved: users.acl still holds the stack's password, and a restart loads it.
        sh(stack, f"cd {STACK} && docker compose -f docker-compose.operator.yml restart redis")
    wait_all_pass(tmp_path)


def test_redis_without_a_password_fails_the_check(stack, tmp_path):
    assert _redis_admin(stack, "ACL", "SETUSER", "default", "nopass") == "OK"
    try:
        results, dummy, dummy2 = verify(tmp_path)
        assert_only(results, "db_passwords_not_default", "fail", "Redis accepts any password")
    finally:
        sh(stack, f"cd {STACK} && docker compose -f docker-compose.operator.yml restart redis")  # reloads users.acl
    wait_all_pass(tmp_path)


def test_a_second_redis_password_fails_secrets_rotation_complete(stack, tmp_path):
    """An old password still valid next to the stack's (what an interrupted rotation left before the journal)."""
    extra = hashlib.sha256(secrets_module.token_urlsafe(24).encode()).hexdigest()
    assert _redis_admin(stack, "ACL", "SETUSER", "default", f"#{extra}") == "OK"
    try:
        results, dummy, dummy2 = verify(tmp_path)
        assert_only(results, "secrets_rotation_complete", "fail",
                    "Redis accepts 2 passwords for its stack user outside a rotation")
    finally:
        sh(stack, f"cd {STACK} && docker compose -f docker-compose.operator.yml restart redis")  # reloads users.acl
    wait_all_pass(tmp_path)


def test_lost_rotation_journal_makes_secrets_age_warn(stack, tmp_path):
    """The journal gone (an env file restored without it): the secrets' ages are unknown; the fleet report says so."""
    journal = f"{STACK}/.env.operator.rotation.json"
    results, dummy, out = verify(tmp_path, name="before")
    assert re.search(r"\| (POSTGRES_PASSWORD|REDIS_PASSWORD|INTERNAL_API_KEY), \d+ d \|$", (out / "fleet.md").read_text(),
                     re.M)
    assert results["secrets_age"]["details"]["oldest"]["days"] >= 0
    sh(stack, ["mv", journal, f"{journal}.aside"])
    try:
        results, dummy, out = verify(tmp_path)
        assert_only(results, "secrets_age", "warn", "POSTGRES_PASSWORD: age unknown (no record of when it was set)")
        assert (out / "fleet.md").read_text().rstrip().endswith("| unknown |")
    finally:
        sh(stack, ["mv", f"{journal}.aside", journal])
    wait_all_pass(tmp_path)


def test_db_container_missing_fails_the_check(stack, tmp_path):
    sh(stack, f"docker stop -t 5 {REG}-db")
    try:
        results, dummy, dummy2 = verify(tmp_path)
        check = results["db_passwords_not_default"]
        assert check["status"] == "fail", check
        assert f"POSTGRES_PASSWORD cannot be checked against PostgreSQL: container {REG}-db is exited" in \
            check["evidence"], check
    finally:
        sh(stack, f"docker start {REG}-db")
    wait_all_pass(tmp_path)


def test_x509pop_near_expiry(stack, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    path = f"{STACK}/spire/x509pop.crt"
    original = sh(stack, ["cat", path])[1].encode()
    cert = x509.load_pem_x509_certificate(original)
    ca_key = serialization.load_pem_private_key((STATE / "pki" / "frame-ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((STATE / "pki" / "frame-ca.crt").read_bytes())
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(cert.subject).issuer_name(ca.subject)
               .public_key(cert.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=10)))
    for ext in cert.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    near = builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    put_file(stack, path, near, 0o644)
    try:
        results, dummy, dummy2 = verify(tmp_path)
        assert_only(results, "x509pop_cert_expiry", "warn", "expires in", "days", "under the 30 days")
    finally:
        put_file(stack, path, original, 0o644)


def test_cert_writer_stopped(stack, tmp_path):
    sh(stack, ["docker", "stop", f"{REG}-cert-writer"])
    try:
        results, dummy, dummy2 = verify(tmp_path)
        assert_only(results, "cert_writer_running", "fail", "not running")
    finally:
        sh(stack, ["docker", "start", f"{REG}-cert-writer"])
    wait_all_pass(tmp_path)


@pytest.mark.parametrize("key, value, check, words", [
    ("MINTING_AUTHORITY", "enabled", "minting_disabled", ['running registry container has MINTING_AUTHORITY="enabled"']),
    ("EVENTSTORE_MTLS_REQUIRED", "false", "mtls_enforced",
     ['running registry container has EVENTSTORE_MTLS_REQUIRED="false"']),
])
def test_running_registry_differs_from_env_file(stack, tmp_path, key, value, check, words):
    # Someone started the registry with an override file: the running container differs from .env.operator.
    put_file(stack, "/tmp/checklist-override.yml",
             f"services:\n  registry:\n    environment:\n      {key}: \"{value}\"\n".encode())
    # The registry refuses to start that way (it restarts in a loop); the checklist names the cause.
    sh(stack, f"{COMPOSE} -f /tmp/checklist-override.yml up -d --no-deps registry")
    try:
        results, dummy, dummy2 = verify(tmp_path)
        assert_only(results, check, "fail", *words)
    finally:
        sh(stack, f"{COMPOSE} up -d --no-deps --wait registry")
    wait_all_pass(tmp_path)


def test_registry_gets_403_from_the_eventstore(stack, lab, dkr, tmp_path):
    """The EventStore refuses this registry host (403, a suspended operator): the lab EventStore's
    deny hook (lab/labctl.py) keyed on the host's address."""
    deny = STATE / "eventstore" / "deny" / "denied.geo"
    eventstore = dkr.containers.get(lab["eventstore"]["container"])
    allowed = deny.read_text()
    deny.write_text(allowed + f"{lab['hosts'][HOST]['address']} 1;\n")
    try:
        sh(eventstore, ["nginx", "-s", "reload"])
        wait_for("the registry to log a 403 from the EventStore",
                 lambda: "eventstore write event=TokensTransferred status=403" in
                 sh(stack, f"docker logs --since 30s {REG}-registry 2>&1")[1], timeout=60)
        results, dummy, dummy2 = verify(tmp_path)
        assert_only(results, "eventstore_writes_ok", "fail", "403")
    finally:
        deny.write_text(allowed)
        sh(eventstore, ["nginx", "-s", "reload"])
    wait_all_pass(tmp_path, timeout=WINDOW + 120)


def test_agent_without_an_identity(stack, lab, dkr, tmp_path):
    """The registry's registration entry is gone: the agent is healthy by its healthcheck but issues no identity."""
    spiffe_id = f"spiffe://{lab['trust_domain']}/service/registry-{OPERATOR}"
    entries = json.loads(server_cli(dkr, lab, "entry", "show", "-spiffeID", spiffe_id, "-output", "json"))["entries"]
    assert entries
    try:
        for entry in entries:
            server_cli(dkr, lab, "entry", "delete", "-entryID", entry["id"])
        wait_for("the cert-writer to be refused an identity",
                 lambda: "no identity issued" in sh(stack, f"docker logs --tail 1 {REG}-cert-writer 2>&1")[1].lower()
                 or "permissiondenied" in sh(stack, f"docker logs --tail 1 {REG}-cert-writer 2>&1")[1].lower(),
                 timeout=60)
        health = sh(stack, ["docker", "exec", f"{REG}-spire-agent", "/opt/spire/bin/spire-agent", "healthcheck"])[1]
        assert "Agent is healthy." in health  # what the guide's command says
        results, dummy, dummy2 = verify(tmp_path)
        assert_only(results, "spire_agent_healthy", "fail", "issues no identity to the registry workload")
        assert results["cert_writer_running"]["status"] == "skip"
    finally:
        # The frame in the run: its onboarding puts the deleted registration entries back.
        rc, out = run_playbook("playbooks/site.yml", "-l", f"frame,{HOST}")
        assert rc == 0, out
    wait_all_pass(tmp_path)


def test_stack_left_converged(stack):
    rc, out = run_playbook("playbooks/site.yml", "-l", f"frame,{HOST}")
    assert rc == 0
    stats = recap(out)
    assert stats[HOST]["changed"] == 0 and stats["frame"]["changed"] == 0, stats
