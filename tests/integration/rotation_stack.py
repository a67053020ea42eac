"""Helpers of the secret rotation tests (test_secret_rotation on host3, test_secret_rotation_crash on
host10) and of benchmarks/rotation.py: the lab's hostN runs the stack of registryN in
/opt/theprotocol/registryN (lab/labctl.py writes that inventory)."""

from __future__ import annotations

import secrets
import threading
import time

from conftest import run_playbook, sh, wait_for

KEYS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "INTERNAL_API_KEY")
PLAYBOOK = "playbooks/rotate_secrets.yml"


def registry_of(host) -> str:
    """registryN of the lab container lab-hostN."""
    return "registry" + host.name.removeprefix("lab-host")


def stack_dir(host) -> str:
    return f"/opt/theprotocol/{registry_of(host)}"


def env_path(host) -> str:
    return f"{stack_dir(host)}/.env.operator"


def deployed(dkr, lab, name):
    """The container of lab host ``name`` with its stack deployed (site.yml when it is not) and healthy."""
    container = dkr.containers.get(lab["hosts"][name]["container"])
    registry = registry_of(container)
    probe = (f"test -s {env_path(container)} && docker inspect -f '{{{{.State.Running}}}}' {registry}-registry "
             f"{registry}-db {registry}-redis | grep -vq false")
    code, dummy = sh(container, probe, check=False)
    if code != 0:
        rc, out = run_playbook("playbooks/site.yml", "-l", f"frame,{name}", structured=False)
        assert rc == 0, out[-4000:]
    wait_for(f"{registry} healthy", lambda: health(container) == "200", timeout=120)
    return container


def dexec(host, container, cmd, env=None):
    """docker exec in a stack container; secrets go in the exec environment (-e NAME, value from our env)."""
    names = " ".join(f"-e {k}" for k in (env or {}))
    return sh(host, f"docker exec {names} {container} {cmd}", env=env, check=False)


def health(host):
    return dexec(host, f"{registry_of(host)}-registry", "curl -s -o /dev/null -m 3 -w %{http_code} localhost:8080/health")[1]


def env_bytes(host):
    return sh(host, ["cat", env_path(host)])[1].encode()


def values(host):
    out = {}
    for line in env_bytes(host).decode().splitlines():
        key, dummy, value = line.partition("=")
        if key in KEYS:
            out[key] = value.strip().strip("'")
    return out


def pg_ok(host, password):
    """PostgreSQL login over the stack network (`-h db`), the way the registry connects: the official
    image trusts 127.0.0.1 inside the db container, so a login there proves nothing."""
    code, out = dexec(host, f"{registry_of(host)}-db", "psql -X -w -h db -U registry -d registry -Atc 'select 1'",
                      {"PGPASSWORD": password})
    assert code == 0 or "password authentication failed" in out, out  # refused, not unreachable
    return code == 0


def assert_servers_ask_for_passwords(host, vals):
    """The controls: Redis refuses no password and a wrong one, PostgreSQL a wrong one over the network;
    the stack's values are accepted."""
    wrong = secrets.token_urlsafe(24)
    assert "NOAUTH" in dexec(host, f"{registry_of(host)}-redis", "redis-cli -h 127.0.0.1 ping")[1]
    assert "WRONGPASS" in redis_cmd(host, wrong, "PING")
    assert not pg_ok(host, wrong)
    assert pg_ok(host, vals["POSTGRES_PASSWORD"]) and redis_cmd(host, vals["REDIS_PASSWORD"], "PING") == "PONG"


def redis_cmd(host, password, command):
    return dexec(host, f"{registry_of(host)}-redis", f"redis-cli -h 127.0.0.1 --no-auth-warning {command}",
                 {"REDISCLI_AUTH": password})[1].strip()


def key_status(host, key):
    return dexec(host, f"{registry_of(host)}-registry",
                 "sh -c 'curl -s -o /dev/null -w %{http_code} -H \"X-Internal-Key: $K\" localhost:8080/internal/status'",
                 {"K": key})[1].strip()


def rows(host, key):
    out = dexec(host, f"{registry_of(host)}-registry",
                "sh -c 'curl -s -H \"X-Internal-Key: $K\" localhost:8080/api/v1/rows'", {"K": key})[1]
    import json
    return json.loads(out)["events"]


def seed(host, vals, tag):
    """Rows in PostgreSQL and keys in Redis that must survive."""
    assert dexec(host, f"{registry_of(host)}-db", "psql -X -q -h /run/postgresql -U registry -d registry -c "
                 f"\"insert into events (event_type, status) select 'rotation-{tag}', g from generate_series(1,50) g\"")[0] == 0
    for i in range(20):
        assert redis_cmd(host, vals["REDIS_PASSWORD"], f"SET rotation:{tag}:{i} v{i}") == "OK"
    return rows(host, vals["INTERNAL_API_KEY"])


def redis_keys_kept(host, password, tag):
    return all(redis_cmd(host, password, f"GET rotation:{tag}:{i}") == f"v{i}" for i in range(20))


class Prober(threading.Thread):
    """/health 5 times a second (docker exec curl in the registry container) until stopped."""

    def __init__(self, host):
        super().__init__(daemon=True)
        self.host, self.stop, self.results = host, threading.Event(), []

    def run(self):
        while not self.stop.is_set():
            start = time.monotonic()
            self.results.append((time.time(), health(self.host)))
            self.stop.wait(max(0.0, 0.2 - (time.monotonic() - start)))


class OnRecreate(threading.Thread):
    """Runs ``action`` once, as soon as the registry container has been recreated."""

    def __init__(self, host, action):
        super().__init__(daemon=True)
        self.host, self.action, self.done, self.stop = host, action, False, threading.Event()
        self.first = self.container_id()

    def container_id(self):
        return sh(self.host, f"docker inspect -f '{{{{.Id}}}}' {registry_of(self.host)}-registry", check=False)[1].strip()

    def run(self):
        while not self.stop.is_set() and not self.done:
            current = self.container_id()
            if current and current != self.first and "Error" not in current:
                sh(self.host, self.action, check=False)
                self.done = True
            time.sleep(0.1)


def rotate(name, *args):
    """rotate_secrets.yml on lab host ``name`` (rc, text output)."""
    return run_playbook(PLAYBOOK, "-l", name, *args, structured=False)
