"""secret_rotation on lab-host3 (registry3): live rotation with data kept and /health probed,
the guide's procedure breaking PostgreSQL (and the repair), rollback after faults injected at
each step, check mode, and no secret in the output at -vvv, the role's log, the PostgreSQL
log or docker inspect. The crash matrix and the lost .env.operator are test_secret_rotation_crash.py
(host10)."""

from __future__ import annotations

import os
import time

import pytest

import rotation_stack
from conftest import sh, wait_for
from rotation_stack import (KEYS, OnRecreate, Prober, assert_servers_ask_for_passwords,  # noqa: F401
                            deployed, dexec, env_bytes, health, key_status, pg_ok, redis_cmd, redis_keys_kept, rows,
                            seed, values)

# Lab host of this module: host3. make integration runs modules in parallel (one worker per
# module); modules that share a host must not disturb each other.

HOST, REGISTRY = "host3", "registry3"
STACK = f"/opt/theprotocol/{REGISTRY}"
ENV = f"{STACK}/.env.operator"


@pytest.fixture(scope="module")
def host(dkr, lab):
    return deployed(dkr, lab, HOST)


def rotate(*args):
    return rotation_stack.rotate(HOST, *args)


def test_servers_ask_for_passwords_before_any_rotation(host):
    assert_servers_ask_for_passwords(host, values(host))


def test_check_mode_lists_and_changes_nothing(host):
    before = env_bytes(host)
    listing = sh(host, ["ls", "-la", STACK])[1]
    rc, out = rotate("--check")
    assert rc == 0, out[-3000:]
    assert "Would rotate POSTGRES_PASSWORD, REDIS_PASSWORD, INTERNAL_API_KEY on registry3" in out
    assert "recreated: registry." in out
    assert env_bytes(host) == before and sh(host, ["ls", "-la", STACK])[1] == listing


def test_rotation_live_with_data_kept_and_health_probed(host, dkr):
    old = values(host)
    count = seed(host, old, "live")
    prober = Prober(host)
    prober.start()
    time.sleep(2)
    started = time.monotonic()
    rc, out = rotate("-vvv")
    duration = time.monotonic() - started
    time.sleep(2)
    prober.stop.set()
    prober.join()
    assert rc == 0, out[-5000:]
    new = values(host)
    assert all(new[k] != old[k] for k in KEYS)
    # data kept
    assert rows(host, new["INTERNAL_API_KEY"]) >= count
    assert redis_keys_kept(host, new["REDIS_PASSWORD"], "live")
    # new accepted, old refused
    assert pg_ok(host, new["POSTGRES_PASSWORD"]) and not pg_ok(host, old["POSTGRES_PASSWORD"])
    assert redis_cmd(host, new["REDIS_PASSWORD"], "PING") == "PONG"
    assert "WRONGPASS" in redis_cmd(host, old["REDIS_PASSWORD"], "PING")
    assert key_status(host, new["INTERNAL_API_KEY"]) == "200" and key_status(host, old["INTERNAL_API_KEY"]) == "401"
    # /health: failures only in one run around the registry recreate
    codes = [c for dummy, c in prober.results]
    failures = [i for i, c in enumerate(codes) if c != "200"]
    started_at = sh(host, f"docker inspect -f '{{{{.State.StartedAt}}}}' {REGISTRY}-registry")[1].strip()
    print(f"\nrotation {duration:.1f}s; /health probes {len(codes)} ({len(codes) / (duration + 4):.1f}/s), "
          f"failures {len(failures)} ({len(failures) * 0.2:.1f}s), registry restarted {started_at}")
    if failures:
        assert failures == list(range(failures[0], failures[-1] + 1)), codes  # one contiguous window
        assert len(failures) * 0.2 < 20, codes
    # no secret anywhere
    log = sh(host, ["cat", f"{STACK}/secret-rotation.log"])[1]
    pg_log = dexec(host, f"{REGISTRY}-db", "true")[1] + sh(host, f"docker logs {REGISTRY}-db 2>&1")[1]
    inspect = sh(host, f"docker inspect $(docker ps -aq --filter label=com.docker.compose.project={REGISTRY})")[1]
    for value in list(old.values()) + list(new.values()):
        for where, text in (("-vvv output", out), ("role log", log), ("PostgreSQL log", pg_log),
                            ("docker inspect", inspect)):
            assert value not in text, f"a secret value appears in the {where}"
    assert "rotate ok keys=POSTGRES_PASSWORD,REDIS_PASSWORD,INTERNAL_API_KEY" in log
    assert_servers_ask_for_passwords(host, new)
    # Redis keeps exactly the new password in its ACL file (ACL SAVE), so it survives a restart.
    sh(host, f"cd {STACK} && docker compose -f docker-compose.operator.yml restart redis db")
    wait_for("redis and db healthy after the restart", lambda: sh(
        host, f"docker inspect -f '{{{{.State.Health.Status}}}}' {REGISTRY}-redis {REGISTRY}-db",
        check=False)[1].split() == ["healthy", "healthy"], timeout=90)
    assert_servers_ask_for_passwords(host, new)
    assert "WRONGPASS" in redis_cmd(host, old["REDIS_PASSWORD"], "PING") and not pg_ok(host, old["POSTGRES_PASSWORD"])
    assert redis_keys_kept(host, new["REDIS_PASSWORD"], "live")
    wait_for("registry3 healthy after the restart", lambda: health(host) == "200", timeout=60)


def _checklist_report(report_dir):
    import json
    path = report_dir / f"{HOST}.json"
    assert path.exists(), f"no checklist report {path}"
    return json.loads(path.read_text())


def test_rotation_runs_the_checklist_and_a_failed_check_fails_the_run(host, tmp_path):
    """theprotocol_rotation_checklist=true: the security checklist runs on the rotated stack and
    its host report is written; a failed check (cert-writer stopped: a real fault that the rotation
    itself does not touch) fails the run after a complete rotation, which is not rolled back."""
    # Passing: every check pass (eventstore_writes_ok may warn: the registry has just been recreated).
    report_dir = tmp_path / "ok"
    old = values(host)
    rc, out = rotate("-e", "theprotocol_rotation_checklist=true",
                     "-e", f"theprotocol_checklist_report_dir={report_dir}")
    assert rc == 0, out[-5000:]
    assert "TASK [theprotocol.operator.security_checklist : Evaluate the security checklist" in out
    report = _checklist_report(report_dir)
    assert report["registry_name"] == REGISTRY and report["status"] in ("pass", "warn"), report["summary"]
    assert not report["summary"]["failed"], report["summary"]
    statuses = {r["id"]: r["status"] for r in report["results"]}
    assert statuses["db_passwords_not_default"] == "pass", report["results"]
    assert not (report_dir / "fleet.json").exists()  # per-batch fleet reports are off in this playbook
    new = values(host)
    assert all(new[k] != old[k] for k in KEYS)
    text = out + (report_dir / f"{HOST}.json").read_text() + (report_dir / f"{HOST}.md").read_text()
    for value in list(old.values()) + list(new.values()):
        assert value not in text, "a secret value appears in the output or the checklist report"

    # Failing: the rotation completes, the checklist fails, the run fails (and would stop a rollout).
    report_dir = tmp_path / "fail"
    old = values(host)
    sh(host, f"docker stop -t 5 {REGISTRY}-cert-writer")
    try:
        rc, out = rotate("-e", "theprotocol_rotation_checklist=true",
                         "-e", f"theprotocol_checklist_report_dir={report_dir}")
    finally:
        sh(host, f"docker start {REGISTRY}-cert-writer")
    assert rc != 0, out[-5000:]
    assert "Security checklist of registry3" in out and "cert_writer_running" in out, out[-5000:]
    assert "failed and was rolled back" not in out
    report = _checklist_report(report_dir)
    assert report["status"] == "fail" and "cert_writer_running" in report["summary"]["failed"], report["summary"]
    new = values(host)
    assert all(new[k] != old[k] for k in KEYS)  # the rotation itself went through and stays
    assert pg_ok(host, new["POSTGRES_PASSWORD"]) and health(host) == "200"
    log = sh(host, ["cat", f"{STACK}/secret-rotation.log"])[1].strip().splitlines()
    assert "rotate ok keys=POSTGRES_PASSWORD,REDIS_PASSWORD,INTERNAL_API_KEY" in log[-1]


def _inject_and_expect_rollback(host, tag, *args, before=None, after=None, extra=()):
    old_bytes, old = env_bytes(host), values(host)
    count = seed(host, old, tag)
    watcher = None
    if before:
        sh(host, before)
    if after:
        watcher = OnRecreate(host, after)
        watcher.start()
    try:
        rc, out = rotate("-e", "secret_rotation_health_timeout=20", *extra, *args)
    finally:
        if watcher:
            watcher.stop.set()
    assert rc != 0, out[-3000:]
    assert "failed and was rolled back" in out, out[-5000:]
    if watcher:
        assert watcher.done, "the fault was not injected"
    assert env_bytes(host) == old_bytes
    assert pg_ok(host, old["POSTGRES_PASSWORD"])
    assert redis_cmd(host, old["REDIS_PASSWORD"], "PING") == "PONG"
    assert key_status(host, old["INTERNAL_API_KEY"]) == "200"
    assert rows(host, old["INTERNAL_API_KEY"]) >= count
    assert redis_keys_kept(host, old["REDIS_PASSWORD"], tag)
    assert health(host) == "200"
    for value in old.values():
        assert value not in out
    return out


def test_rollback_when_database_refuses_alter(host):
    ro = ("docker exec {c}-db psql -X -q -h /run/postgresql -U registry -d registry -c "
          "\"ALTER ROLE registry SET default_transaction_read_only = {v}\"")
    try:
        out = _inject_and_expect_rollback(host, "ro", before=ro.format(c=REGISTRY, v="on"))
        assert "PostgreSQL refused ALTER ROLE registry (read-only)" in out
    finally:
        sh(host, f"docker exec {REGISTRY}-db psql -X -q -h /run/postgresql -U registry -d registry -c "
                 "'SET default_transaction_read_only = off' -c 'ALTER ROLE registry RESET default_transaction_read_only'")


def test_rollback_when_redis_stops_during_the_rotation(host):
    _inject_and_expect_rollback(host, "redisdown", after=f"docker stop -t 1 {REGISTRY}-redis")


def test_rollback_when_the_registry_does_not_come_back_healthy(host):
    # A loop on the host pauses the new registry container the moment it runs (before the
    # role's first /health probe can pass): it never answers, the rollback must recreate it.
    first = sh(host, f"docker inspect -f '{{{{.Id}}}}' {REGISTRY}-registry")[1].strip()
    loop = (f"for i in $(seq 1 3000); do id=$(docker inspect -f '{{{{.Id}}}}' {REGISTRY}-registry 2>/dev/null); "
            f"if [ -n \"$id\" ] && [ \"$id\" != {first} ] && docker pause {REGISTRY}-registry >/dev/null 2>&1; "
            "then break; fi; sleep 0.02; done")
    host.exec_run(["/bin/sh", "-c", loop], detach=True)
    try:
        _inject_and_expect_rollback(host, "unhealthy")
    finally:
        sh(host, f"docker unpause {REGISTRY}-registry", check=False)


def guides_procedure(host):
    """The guide's rotation: new values written into .env.operator, then down and up -d. Keeps
    a copy of the old file first, as an operator would (the repair reads Redis' live password
    from it). Returns the new values. Also used by benchmarks/rotation.py."""
    sh(host, f"cp -p {ENV} {ENV}.20000101T000000Z.bak")  # what the guide leaves: a copy with the old values
    new = {k: f"naive-{k.lower()}-{os.urandom(8).hex()}" for k in KEYS}
    sh(host, "sed -i " + " ".join(f"-e 's|^{k}=.*|{k}={v}|'" for k, v in new.items()) + f" {ENV}")
    sh(host, f"cd {STACK} && docker compose -f docker-compose.operator.yml down && "
             f"docker compose -f docker-compose.operator.yml up -d")
    return new


def test_guides_procedure_breaks_the_database_and_repair_fixes_it(host):
    """The guide: new values in .env.operator, down, up -d -> the registry is locked out."""
    old = values(host)
    count = seed(host, old, "naive")
    new = guides_procedure(host)
    wait_for("the registry container to run", lambda: "running" in sh(
        host, f"docker inspect -f '{{{{.State.Status}}}}' {REGISTRY}-registry", check=False)[1], timeout=120)
    time.sleep(5)
    body = dexec(host, f"{REGISTRY}-registry", "curl -s localhost:8080/health")[1]
    assert '"postgres_reason": "auth_failed"' in body and '"redis_reason": "auth_failed"' in body, body
    assert not pg_ok(host, new["POSTGRES_PASSWORD"]) and pg_ok(host, old["POSTGRES_PASSWORD"])
    # A rotation refuses to run on it (the preflight sees the broken stack).
    rc, out = rotate()
    assert rc != 0 and "/health" in out
    # The repair makes the live credentials match the new file.
    rc, out = rotate("-e", "theprotocol_rotation_action=repair")
    assert rc == 0, out[-4000:]
    wait_for("registry3 healthy after the repair", lambda: health(host) == "200", timeout=60)
    assert pg_ok(host, new["POSTGRES_PASSWORD"]) and not pg_ok(host, old["POSTGRES_PASSWORD"])
    assert rows(host, new["INTERNAL_API_KEY"]) >= count
    assert redis_keys_kept(host, new["REDIS_PASSWORD"], "naive")
    # And a proper rotation works again afterwards.
    rc, out = rotate("-e", '{"theprotocol_rotate_secrets": ["POSTGRES_PASSWORD"]}')
    assert rc == 0, out[-4000:]
