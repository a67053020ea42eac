"""Issue 11 (SSH + sudo): the playbooks on lab-host8, the lab's SSH host, reached the way operators
reach their VMs: over SSH as the non-root user `operator` with passwordless sudo (`ansible_become:
true` in the lab inventory). A user without sudo (`nosudo`) gets one message naming `become` and
nothing changes on the host; as `operator`, site.yml deploys (second run changed=0), verify.yml,
rotate_secrets.yml and incident_response.yml --check pass. About 6-8 minutes on the lab."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import INVENTORY, REPO, recap, run_playbook, sh, wait_for

# Lab host of this module: host8 (the SSH host; make lab-up LAB_HOSTS=8). make integration runs
# modules in parallel (one worker per module); no other module uses host8.

HOST, REGISTRY, OPERATOR = "host8", "registry8", "operator8"
STACK_DIR = f"/opt/theprotocol/{REGISTRY}"
SERVICES = ("spire-agent", "cert-writer", "nginx-federation", "registry", "db", "redis")
BECOME_TASK = "Stop when Ansible cannot become root on this host"
# Where a deploy writes on the host (Ansible's remote tmp is in the SSH user's home; a running stack
# writes under /var/lib/docker by itself, its containers are compared instead).
SYSTEM_DIRS = "/etc /opt /usr /srv /var/lib/dpkg /var/lib/apt"
CONTAINERS = "command -v docker >/dev/null && docker ps -aq --no-trunc | sort | xargs -r docker inspect -f '{{.Name}} {{.Id}} {{.State.StartedAt}}' || true"


@pytest.fixture(scope="module")
def host(dkr, lab):
    info = lab["hosts"].get(HOST)
    if not info or "ssh" not in info:
        pytest.fail(f"the lab has no SSH host {HOST}: make lab-up LAB_HOSTS=8")
    return dkr.containers.get(info["container"])


def adhoc(*args: str) -> tuple[int, str]:
    """ansible (ad hoc) against host8 with the lab inventory."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "collections"), ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "ansible"), "-i", str(INVENTORY), HOST, "-o", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def timed(playbook: str, *args: str, structured: bool = True):
    start = time.monotonic()
    rc, result = run_playbook(playbook, *args, structured=structured)
    print(f"{playbook} {' '.join(args)}: rc {rc} in {time.monotonic() - start:.0f}s")
    return rc, result


def task_results(result: dict, host: str = HOST) -> list[tuple[str, dict]]:
    return [(task["task"]["name"], task["hosts"][host]) for play in result.get("plays", [])
            for task in play.get("tasks", []) if host in task.get("hosts", {})]


def sudo_by_operator(host) -> int:
    """sudo's log lines of Ansible becoming root as `operator` so far. Only an SSH login can be
    `operator` here (docker exec runs as root): proof that a run came over SSH and used sudo."""
    out = sh(host, "journalctl _COMM=sudo -o cat --no-pager"
                   " | grep -c 'operator : .*USER=root ; COMMAND=/bin/sh -c .echo BECOME-SUCCESS-' || true")[1]
    return int(out.strip() or 0)


def test_host8_is_reached_over_ssh_as_operator_and_becomes_root_with_sudo(host):
    rc, out = adhoc("-m", "ansible.builtin.command", "-a", "id -un", "-e", "ansible_become=false")
    assert rc == 0 and "(stdout) operator" in out, out
    rc, out = adhoc("-m", "ansible.builtin.command", "-a", "id -un")  # the inventory's ansible_become: true
    assert rc == 0 and "(stdout) root" in out, out
    rc, out = adhoc("-m", "ansible.builtin.command", "-a", "id -un", "-e", "ansible_become=false",
                    "-e", "ansible_user=nosudo")
    assert rc == 0 and "(stdout) nosudo" in out, out
    assert sh(host, ["systemctl", "is-active", "ssh"])[1].strip() == "active"
    assert sh(host, ["stat", "-c", "%a %U", "/etc/sudoers.d/theprotocol-lab-operator"])[1].strip() == "440 root"


def test_site_as_a_user_without_sudo_stops_with_the_become_message_and_changes_nothing(host):
    sh(host, ["touch", "/tmp/ssh-it-marker"])
    time.sleep(1.1)  # mtime granularity: anything the run writes is newer than the marker
    had_stack = sh(host, ["test", "-e", "/opt/theprotocol"], check=False)[0] == 0
    containers = sh(host, CONTAINERS)[1]
    rc, result = timed("playbooks/site.yml", "-l", HOST, "-e", "ansible_user=nosudo")
    assert rc != 0, json.dumps(result)[-3000:]
    stats = recap(result)[HOST]
    assert stats["failures"] == 1 and stats["changed"] == 0, stats
    failed = [(name, res) for name, res in task_results(result) if res.get("failed") and not res.get("ignored")
              and name != "Check that Ansible can become root on this host"]
    assert [name for name, dummy in failed] == [BECOME_TASK], failed
    msg = failed[0][1]["msg"]
    for words in (f"Cannot become root on {HOST} as user 'nosudo'", "Missing sudo password", "become: true",
                  "passwordless sudo", "--ask-become-pass", "ansible_become_password", "ansible_become_method",
                  "Nothing was changed"):
        assert words in msg, msg
    # Nothing else ran on the host: no docker_engine or operator_stack task, no fact gathering.
    names = [name for name, dummy in task_results(result)]
    assert not any("docker_engine" in n or "operator_stack" in n or n == "Gather facts" for n in names), names
    newer = sh(host, f"find {SYSTEM_DIRS} -xdev -newer /tmp/ssh-it-marker 2>/dev/null | head -20", check=False)[1]
    assert newer.strip() == "", newer
    assert sh(host, CONTAINERS)[1] == containers
    if not had_stack:
        assert sh(host, ["test", "-e", "/opt/theprotocol"], check=False)[0] != 0


def test_site_over_ssh_deploys_the_stack_and_a_second_run_changes_nothing(host):
    becomes = sudo_by_operator(host)
    rc, result = timed("playbooks/site.yml", "-l", f"frame,{HOST}")
    assert rc == 0, json.dumps(result)[-4000:]
    stats = recap(result)[HOST]
    assert stats["failures"] == 0 and stats["unreachable"] == 0, stats
    assert sudo_by_operator(host) > becomes, "site.yml did not come over SSH as operator with sudo"
    for svc in SERVICES:
        state = json.loads(sh(host, ["docker", "inspect", f"{REGISTRY}-{svc}"])[1])[0]["State"]
        assert state["Status"] == "running", (svc, state)
    mode = sh(host, ["stat", "-c", "%a %U", f"{STACK_DIR}/.env.operator"])[1].strip()
    assert mode == "600 root", mode

    rc, result = timed("playbooks/site.yml", "-l", f"frame,{HOST}")
    assert rc == 0, json.dumps(result)[-4000:]
    stats = recap(result)[HOST]
    changed = [name for name, res in task_results(result) if res.get("changed")]
    assert stats["changed"] == 0 and stats["failures"] == 0, (stats, changed)


def test_verify_over_ssh_passes(host, tmp_path):
    out = tmp_path / "reports"

    def passes():
        rc, text = run_playbook("playbooks/verify.yml", "-l", HOST, "-e", f"theprotocol_checklist_report_dir={out}",
                                "-e", "theprotocol_checklist_eventstore_window=40", structured=False)
        assert rc == 0, text[-3000:]
        return True

    start = time.monotonic()
    wait_for("verify.yml to pass on host8", passes, timeout=240, interval=5)
    print(f"verify.yml -l {HOST}: passed after {time.monotonic() - start:.0f}s")
    report = json.loads((out / f"{HOST}.json").read_text())
    bad = {r["id"]: r["status"] for r in report["results"] if r["status"] not in ("pass", "skip")}
    assert not bad, bad


def test_rotate_secrets_over_ssh_passes(host):
    env_file = f"{STACK_DIR}/.env.operator"
    before = sh(host, ["cat", env_file])[1]
    rc, text = timed("playbooks/rotate_secrets.yml", "-l", HOST, structured=False)
    assert rc == 0, text[-4000:]
    after = sh(host, ["cat", env_file])[1]
    assert after != before
    wait_for("registry8 healthy after the rotation", lambda: sh(
        host, f"docker exec {REGISTRY}-registry curl -s -o /dev/null -m 3 -w %{{http_code}} localhost:8080/health",
        check=False)[1].strip() == "200", timeout=120)


def test_incident_response_check_mode_over_ssh_passes(host):
    rc, text = timed("playbooks/incident_response.yml", "-l", HOST, "--check", structured=False)
    assert rc == 0, text[-4000:]
    assert f"{HOST}" in text and "failed=0" in text, text[-2000:]


def _tree(path):
    return sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*"))


def test_installed_collection_runs_verify_and_writes_nothing_into_itself(host, tmp_path):
    """What an operator or AWX does: build the tarball, install it into an empty collections path (outside
    the repository and its ansible.cfg), run theprotocol.operator.verify from there over SSH. Every file of
    the run lands outside the installed collection (reports in ~/theprotocol-reports)."""
    home, collections = tmp_path / "home", tmp_path / "collections"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    # SSH control sockets in a short directory: under pytest's tmp_path the socket path exceeds the
    # 108 bytes a Unix socket name may have ("too long for Unix domain socket").
    control = tempfile.mkdtemp(prefix="tp-cp-", dir="/tmp")
    env.update(HOME=str(home), ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_NOCOLOR="1",
               ANSIBLE_SSH_CONTROL_PATH_DIR=control)
    venv = REPO / ".venv" / "bin"

    def run(*argv):
        proc = subprocess.run([str(venv / argv[0]), *argv[1:]], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=900, check=False)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        return proc.stdout
    run("ansible-galaxy", "collection", "build", "--output-path", str(tmp_path), str(REPO))
    tarball = next(tmp_path.glob("theprotocol-operator-*.tar.gz"))
    run("ansible-galaxy", "collection", "install", "--no-deps", "-p", str(collections), str(tarball))
    installed = collections / "ansible_collections" / "theprotocol" / "operator"
    names = {p.name for p in installed.iterdir()}
    assert {"plugins", "roles", "playbooks", "meta", "README.md", "COPYING"} <= names, names
    assert not names & {"lab", "molecule", "Makefile", "ansible.cfg", "reports", "benchmarks"}, names
    before = _tree(installed)
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections)  # community.* come with the ansible package
    out = run("ansible-playbook", "-i", str(INVENTORY), "theprotocol.operator.verify", "-l", HOST)
    assert f"| {HOST} | {REGISTRY} | PASS |" in out, out[-3000:]
    assert _tree(installed) == before, "the run wrote into the installed collection"
    assert (home / "theprotocol-reports" / "security_checklist" / f"{HOST}.json").exists()
    shutil.rmtree(control, ignore_errors=True)
