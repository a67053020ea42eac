"""The crash matrix of secret_rotation on lab-host10 (registry10): rotate_secrets.yml killed
(SIGKILL to its process tree) at each step of the rotation journal, then one plain run, which
must finish the rotation or roll it back and rotate afresh; after each row the stack serves,
.env.operator equals the live credentials, Redis holds exactly one password, the data of
before is kept, and no value appears in either run's output or in the journal. On a host of its
own so that it runs alongside test_secret_rotation (host3); with it, the lost .env.operator that
site.yml must not regenerate over existing data."""

from __future__ import annotations

import os
import time

import pytest

import rotation_stack
from conftest import run_playbook, sh, wait_for
from rotation_stack import (KEYS, PLAYBOOK, dexec, deployed, env_bytes, health, key_status, pg_ok, redis_keys_kept, rows,
                            seed, values)

# Lab host of this module: host10. make integration runs modules in parallel (one worker per
# module); modules that share a host must not disturb each other.

HOST, REGISTRY = "host10", "registry10"
STACK = f"/opt/theprotocol/{REGISTRY}"
ENV = f"{STACK}/.env.operator"


@pytest.fixture(scope="module")
def host(dkr, lab):
    return deployed(dkr, lab, HOST)


def rotate(*args):
    return rotation_stack.rotate(HOST, *args)


def test_lost_env_file_is_not_regenerated_over_existing_data(host):
    """.env.operator gone, data volumes kept: site.yml refuses to generate new database secrets (they would
    lock the registry out) and says how to restore the newest backup; restored, the stack converges unchanged."""
    before = env_bytes(host)
    newest = f"{ENV}.{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.bak"  # the backup operator_env would make
    sh(host, ["install", "-m", "0600", ENV, newest])
    sh(host, ["mv", ENV, "/root/env.operator.lost"])
    try:
        rc, out = run_playbook("playbooks/site.yml", "-l", HOST, structured=False)
        assert rc != 0, out[-3000:]
        assert f"{ENV} is missing, but the stack's data is not ({REGISTRY}_db-data, {REGISTRY}_redis-data, " \
               "redis/users.acl)" in out, out[-3000:]
        assert f"install -m 0600 -o root -g root {newest} {ENV} (the newest of " in out, out[-3000:]
        assert "Nothing was changed" in out
        assert sh(host, ["test", "-e", ENV], check=False)[0] != 0  # no new env file was written
    finally:
        sh(host, ["mv", "/root/env.operator.lost", ENV])
        sh(host, ["rm", "-f", newest])
    assert env_bytes(host) == before
    rc, out = run_playbook("playbooks/site.yml", "-l", HOST, structured=False)
    assert rc == 0 and f"{HOST}" in out, out[-3000:]
    assert health(host) == "200"


JOURNAL = f"{ENV}.rotation.json"
# (drill point where the run is killed, extra fault, what the next plain run must decide)
CRASH_POINTS = [
    ("staged", None, "back"),                # after the backup and the pending values
    ("redis_added", None, "back"),           # Redis accepts the new password too
    ("env_written", None, "back"),           # .env.operator holds the new values, PostgreSQL the old
    ("postgres_altered", None, "forward"),   # ALTER ROLE made: the registry is locked out until recreated
    ("recreated", "stop registry", "forward"),  # after the registry recreate, then the registry stopped
    ("healthy", None, "forward"),            # before verify: the old Redis password still valid
]
MATRIX = []


def redis_passwords(host, password):
    import json
    out = dexec(host, f"{REGISTRY}-redis", "redis-cli -h 127.0.0.1 --no-auth-warning --json ACL GETUSER default",
                {"REDISCLI_AUTH": password})[1]
    return json.loads(out)["passwords"]


def journal(host):
    import json
    code, out = sh(host, ["cat", JOURNAL], check=False)
    return json.loads(out) if code == 0 else None


def pending_values(host):
    out = {}
    for line in sh(host, ["cat", f"{ENV}.pending"])[1].splitlines():
        key, dummy, value = line.partition("=")
        if key in KEYS:
            out[key] = value.strip().strip("'")
    return out


def killed_at(host, point, tmp_path):
    """rotate_secrets.yml paused at the drill ``point`` and killed there (SIGKILL to its process group)."""
    import signal
    import subprocess
    from conftest import REPO, INVENTORY
    log = tmp_path / f"killed-{point}.log"
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), PYTHONUNBUFFERED="1",
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "collections"), ANSIBLE_NOCOLOR="1")
    with open(log, "w") as out:
        proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(INVENTORY),
                                 str(REPO / PLAYBOOK), "-l", HOST, "-e", f"secret_rotation_drill_pause_after={point}",
                                 "-e", "secret_rotation_drill_pause_seconds=600"],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(f"the rotation to pause after {point}",
                 lambda: f"Drill: pause after {point}]" in log.read_text() or proc.poll() is not None, timeout=300)
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(1)
    finally:
        # ansible-playbook's workers run in sessions of their own (os.setsid): kill the whole tree.
        tree = [proc.pid]
        for pid in tree:
            children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True,
                                      check=False).stdout
            tree.extend(int(c) for c in children.split())
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
    return log.read_text()


@pytest.mark.parametrize("point,fault,decision", CRASH_POINTS, ids=[p[0] for p in CRASH_POINTS])
def test_a_rotation_killed_at_each_step_is_finished_or_rolled_back_by_the_next_run(
        host, tmp_path, point, fault, decision):
    old = values(host)
    count = seed(host, old, f"crash-{point}")
    killed = killed_at(host, point, tmp_path)
    staged = journal(host)["rotation"]
    assert staged["state"] == "in_progress" and staged["step"] in (point, "recreated"), staged
    new = pending_values(host)
    if point == "env_written":
        # The checklist sees the unfinished rotation (and the second Redis password it left).
        import json
        report = tmp_path / "checklist"
        rc, out = run_playbook("playbooks/verify.yml", "-l", HOST, "-e", f"theprotocol_checklist_report_dir={report}",
                               "-e", "theprotocol_checklist_fail_on=never", "-e",
                               '{"security_checklist_checks": ["secrets_rotation_complete", "secrets_age"]}',
                               structured=False)
        assert rc == 0, out[-3000:]
        results = {r["id"]: r for r in json.loads((report / f"{HOST}.json").read_text())["results"]}
        assert results["secrets_rotation_complete"]["status"] == "fail", results
        assert f"an unfinished rotation of {', '.join(KEYS)}" in " ".join(results["secrets_rotation_complete"]["evidence"])
        for value in list(old.values()) + list(new.values()):
            assert value not in out
    if fault == "stop registry":
        sh(host, f"docker stop -t 5 {REGISTRY}-registry")
    started = time.monotonic()
    rc, out = rotate()
    duration = time.monotonic() - started
    assert rc == 0, out[-5000:]
    said = "rolling forward" if decision == "forward" else "rolling back"
    assert said in out and f"stopped at step {staged['step']}" in out, out[-5000:]
    final = values(host)
    done = journal(host)["rotation"]
    assert done["state"] == "completed", done
    if decision == "forward":
        assert final == new  # the interrupted rotation was finished, not started again
    else:
        assert all(final[k] not in (old[k], new[k]) for k in KEYS)  # rolled back, then rotated with fresh values
        assert "resume back ok" in sh(host, ["cat", f"{STACK}/secret-rotation.log"])[1]
    # .env.operator equal to the live credentials; exactly one Redis password; the data of before.
    assert health(host) == "200"
    assert pg_ok(host, final["POSTGRES_PASSWORD"]) and not pg_ok(host, old["POSTGRES_PASSWORD"])
    assert redis_passwords(host, final["REDIS_PASSWORD"]) == [
        __import__("hashlib").sha256(final["REDIS_PASSWORD"].encode()).hexdigest()]
    assert key_status(host, final["INTERNAL_API_KEY"]) == "200"
    assert rows(host, final["INTERNAL_API_KEY"]) >= count
    assert redis_keys_kept(host, final["REDIS_PASSWORD"], f"crash-{point}")
    assert sh(host, ["test", "-e", f"{ENV}.pending"], check=False)[0] != 0
    for value in list(old.values()) + list(new.values()) + list(final.values()):
        for where, text in (("killed run", killed), ("re-run", out), ("journal", sh(host, ["cat", JOURNAL])[1])):
            assert value not in text, f"a secret value appears in the {where}"
    MATRIX.append(f"| {point} | {fault or 'ansible-playbook killed'} | {staged['step']} | {decision} "
                  f"| {duration:.0f} s | 200, file = live, 1 Redis password, rows kept |")
    print("\n| killed after | fault | journal step | next plain run | re-run | after the re-run |\n"
          "|---|---|---|---|---|---|\n" + "\n".join(MATRIX))
