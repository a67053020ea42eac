"""Issue 11 (SSH + sudo): the playbooks on lab-host8, the lab's SSH host, reached the way operators
reach their VMs: over SSH as the non-root user `operator` with passwordless sudo (`ansible_become:
true` in the lab inventory). A user without sudo (`nosudo`) gets one message naming `become` and
nothing changes on the host; as `operator`, site.yml deploys (second run changed=0), verify.yml,
rotate_secrets.yml and incident_response.yml --check pass. Then README.md's "Deploy your own registry" as
written, with a non-default federation port and stack directory, next to registry8, and the x509pop
renewal end to end on it (issue 16). About 15 minutes on the lab."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from types import SimpleNamespace

import pytest
import yaml

from conftest import INVENTORY, REPO, recap, run_playbook, server_cli, sh, wait_for

from ansible_collections.theprotocol.operator.plugins.module_utils import _probe_certs, _x509

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


@pytest.fixture(scope="module")
def controller(tmp_path_factory):
    """An operator's controller as README.md "Deploy your own registry" sets it up: a HOME of its own, the
    collection built from the repository and installed with `ansible-galaxy collection install -p
    ~/.ansible/collections`, no ANSIBLE_* setting, commands run outside the repository (and its ansible.cfg).
    The community.* collections come with the `ansible` package of the virtualenv, as in the README."""
    base = tmp_path_factory.mktemp("controller")
    home, work = base / "home", base / "work"
    home.mkdir()
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    # SSH control sockets in a short directory: under pytest's tmp_path the socket path exceeds the
    # 108 bytes a Unix socket name may have ("too long for Unix domain socket").
    control = tempfile.mkdtemp(prefix="tp-cp-", dir="/tmp")
    # Lab only: the lab's host keys are made at lab-up and not in any known_hosts.
    env.update(HOME=str(home), ANSIBLE_HOST_KEY_CHECKING="False", ANSIBLE_NOCOLOR="1",
               ANSIBLE_SSH_CONTROL_PATH_DIR=control)
    venv = REPO / ".venv" / "bin"

    def run(*argv, check=True, timeout=1800):
        start = time.monotonic()
        proc = subprocess.run([str(venv / argv[0]), *argv[1:]], cwd=work, env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        out = proc.stdout + proc.stderr
        print(f"{' '.join(argv[:4])}: rc {proc.returncode} in {time.monotonic() - start:.0f}s")
        if check:
            assert proc.returncode == 0, out[-5000:]
        return proc.returncode, out

    # The README's build and install (the tarball goes to the work directory, not into the repository).
    run("ansible-galaxy", "collection", "build", "--output-path", str(work), str(REPO))
    tarball = sorted(work.glob("theprotocol-operator-*.tar.gz"))[0]
    run("ansible-galaxy", "collection", "install", "-p", str(home / ".ansible" / "collections"), str(tarball))
    installed = home / ".ansible" / "collections" / "ansible_collections" / "theprotocol" / "operator"
    yield SimpleNamespace(home=home, work=work, installed=installed, run=run)
    shutil.rmtree(control, ignore_errors=True)


def test_installed_collection_runs_verify_and_writes_nothing_into_itself(host, controller):
    """What an operator or AWX does: build the tarball, install it into an empty collections path (outside
    the repository and its ansible.cfg), run theprotocol.operator.verify from there over SSH. Every file of
    the run lands outside the installed collection (reports in ~/theprotocol-reports)."""
    names = {p.name for p in controller.installed.iterdir()}
    assert {"plugins", "roles", "playbooks", "meta", "README.md", "COPYING"} <= names, names
    assert not names & {"lab", "molecule", "Makefile", "ansible.cfg", "reports", "benchmarks"}, names
    before = _tree(controller.installed)
    # The window of test_verify_over_ssh_passes: the rotation test before this one restarts the registry, whose
    # writes fail (svid_unavailable) until it has read its SVID again, a real warning in the default 300 s.
    runs = []

    def passes():
        runs.append(controller.run("ansible-playbook", "-i", str(INVENTORY), "theprotocol.operator.verify", "-l",
                                   HOST, "-e", "theprotocol_checklist_eventstore_window=40")[1])
        assert f"| {HOST} | {REGISTRY} | PASS |" in runs[-1], runs[-1][-3000:]
        return True

    wait_for("verify.yml of the installed collection to pass on host8", passes, timeout=240, interval=5)
    assert _tree(controller.installed) == before, "the run wrote into the installed collection"
    assert (controller.home / "theprotocol-reports" / "security_checklist" / f"{HOST}.json").exists()


# ---------------------------------------------------------------------------------------------------
# README.md "Deploy your own registry", executed as written on host8, next to registry8: its inventory
# (the operator `acme`, registry `acme-registry`, host `registry-a.acme.example`) with the lab's addresses
# where it names the operator's own infrastructure, a non-default federation port and stack directory.
# The parent frame (the lab's) onboards `acme` the way the README's frame paragraph says
# (onboard_operator.yml), first with a 20-day attestation certificate: the checklist warns; then the
# frame renews it, site.yml delivers it, the agent re-attests and the checklist is green (issue 16).

README_HOST = "registry-a.acme.example"
README_PORT = 9443
README_DIR = "/srv/theprotocol/acme-registry"
README_VARS = {"theprotocol_trust_domain", "theprotocol_spire_server_address", "theprotocol_spire_server_port",
               "theprotocol_onboarding_dir", "theprotocol_eventstore_url", "theprotocol_images"}
README_HOST_VARS = {"theprotocol_operator_name", "theprotocol_registry_name", "theprotocol_registry_did"}
# What the lab adds, and why: the EventStore's name resolves through extra_hosts; Docker Engine comes from
# Debian with the lab image registry's CA (the README's hosts reach Docker's apt repository).
LAB_ONLY_VARS = ("theprotocol_extra_hosts", "docker_engine_install_method", "docker_engine_compose_plugin_source",
                 "docker_engine_compose_plugin_controller_path", "docker_engine_registry_ca_certs")
SSH_VARS = ("ansible_connection", "ansible_host", "ansible_user", "ansible_ssh_private_key_file",
            "ansible_ssh_common_args")


def readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


@pytest.fixture(scope="module")
def readme(host, dkr, lab, controller):
    section = readme_section("Deploy your own registry")
    inventory = yaml.safe_load(re.search(r"```yaml\n(all:\n.*?)```", section, re.S).group(1))
    commands = re.findall(r"^ansible-playbook -i inventory.yml (theprotocol\.operator\.site.*?)\s+#", section, re.M)
    assert commands == ["theprotocol.operator.site --check --diff", "theprotocol.operator.site"], commands
    avars = inventory["all"]["vars"]
    hosts = inventory["all"]["children"]["theprotocol_registries"]["hosts"]
    # The README's shape; a change to it must change this test too.
    assert set(avars) == README_VARS and list(hosts) == [README_HOST] and set(hosts[README_HOST]) == README_HOST_VARS
    acme = hosts[README_HOST]
    labinv = yaml.safe_load(INVENTORY.read_text())["all"]
    lvars, host8 = labinv["vars"], labinv["children"]["theprotocol_registries"]["hosts"][HOST]
    assert avars["theprotocol_trust_domain"] == lvars["theprotocol_trust_domain"]
    assert avars["theprotocol_spire_server_port"] == lvars["theprotocol_spire_server_port"]
    assert set(avars["theprotocol_images"]) == set(lvars["theprotocol_images"])
    onboarding = controller.home / "onboarding"
    # The operator's own infrastructure becomes the lab's.
    avars.update(theprotocol_spire_server_address=lvars["theprotocol_spire_server_address"],
                 theprotocol_onboarding_dir=str(onboarding), theprotocol_eventstore_url=lvars["theprotocol_eventstore_url"],
                 theprotocol_images=lvars["theprotocol_images"], ansible_python_interpreter="/usr/bin/python3")
    avars.update({k: lvars[k] for k in LAB_ONLY_VARS})
    avars.update(theprotocol_federation_port=README_PORT, theprotocol_stack_dir=README_DIR)
    acme.update({k: host8[k] for k in SSH_VARS})  # become: the plays' own (no ansible_become here)
    path = controller.work / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False))
    state = SimpleNamespace(inventory=path, operator=acme["theprotocol_operator_name"], onboarding=onboarding,
                            registry=acme["theprotocol_registry_name"], reports=controller.home / "theprotocol-reports")
    yield state
    # registry8 keeps running for ee-verify; the README's stack goes.
    sh(host, f"cd {README_DIR} 2>/dev/null && docker compose -p {state.registry} down -v --remove-orphans; "
             f"rm -rf {README_DIR}", check=False)


def onboard(state, **role_vars) -> None:
    """The frame's side (README: "Onboarding one operator alone"), with the lab inventory. SVID TTL: the
    frame's default (the lab's 120 s would outlive no 300 s cert-writer interval, the README's default)."""
    extra = ["-e", f"theprotocol_operator_name={state.operator}", "-e", f"theprotocol_registry_name={state.registry}",
             "-e", f"theprotocol_onboarding_dir={state.onboarding}", "-e", "theprotocol_svid_ttl=3600"]
    for key, value in role_vars.items():
        extra += ["-e", f"{key}={value}"]
    rc, text = run_playbook("playbooks/onboard_operator.yml", *extra, structured=False)
    assert rc == 0, text[-4000:]


def operator_play(controller, state, playbook: str, *args: str, check: bool = True):
    return controller.run("ansible-playbook", "-i", str(state.inventory), f"theprotocol.operator.{playbook}", *args,
                          check=check)


def readme_checklist(controller, state) -> dict:
    """verify.yml as the README's operator runs it, until it passes; the host's JSON report."""
    def passes():
        rc, out = operator_play(controller, state, "verify", check=False)
        assert rc == 0, out[-3000:]
        return True
    wait_for("verify.yml to pass on the README's host", passes, timeout=300, interval=10)
    return json.loads((state.reports / "security_checklist" / f"{README_HOST}.json").read_text())


def statuses(report: dict) -> dict:
    return {r["id"]: r["status"] for r in report["results"]}


def attestation_cert(state):
    return _x509.load_pem_chain((state.onboarding / state.operator / "x509pop.crt").read_bytes())[0]


def agent_svid_id(host, state) -> str:
    """The SPIFFE ID of the agent SVID that the stack's spire-agent keeps in its data volume."""
    data = f"/var/lib/docker/volumes/{state.registry}_spire-agent-data/_data"
    return _probe_certs.agent_svid(sh(host, ["cat", f"{data}/agent-data.json"])[1].encode(),
                                   sh(host, ["cat", f"{data}/keys.json"])[1].encode())[2]


def test_readme_deploy_on_a_non_default_port_and_stack_dir(host, controller, readme):
    # A 20-day certificate (renewed at 10 days left, so this onboarding keeps it; the default window is 30).
    onboard(readme, operator_onboarding_cert_lifetime_days=20, operator_onboarding_renew_before_days=10)
    rc, out = operator_play(controller, readme, "site", "--check", "--diff")
    assert f"{README_DIR}/docker-compose" in out or README_DIR in out, out[-3000:]
    dummy, out = operator_play(controller, readme, "site")
    assert re.search(rf"^{re.escape(README_HOST)}\s*:.*failed=0", out, re.M), out[-3000:]
    for svc in SERVICES:
        state = json.loads(sh(host, ["docker", "inspect", f"{readme.registry}-{svc}"])[1])[0]["State"]
        assert state["Status"] == "running", (svc, state)
    bindings = json.loads(sh(host, ["docker", "inspect", "-f", "{{json .HostConfig.PortBindings}}",
                                    f"{readme.registry}-nginx-federation"])[1])
    assert [b["HostPort"] for spec in bindings.values() for b in spec] == [str(README_PORT)], bindings
    assert sh(host, ["stat", "-c", "%a %U", f"{README_DIR}/.env.operator"])[1].strip() == "600 root"
    assert sh(host, ["test", "-e", f"/opt/theprotocol/{readme.registry}"], check=False)[0] != 0
    dummy, out = operator_play(controller, readme, "site")
    assert re.search(rf"^{re.escape(README_HOST)}\s*:\s*ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", out, re.M), \
        out[-3000:]


def test_readme_verify_rotate_and_incident_use_the_same_port_and_dir(host, controller, readme):
    report = readme_checklist(controller, readme)
    results = {r["id"]: r for r in report["results"]}
    assert f"https://localhost:{README_PORT}/health answered 200" in str(results["nginx_federation_accepting"]), \
        results["nginx_federation_accepting"]
    # The frame issued a 20-day attestation certificate: under the checklist's 30-day threshold.
    assert results["x509pop_cert_expiry"]["status"] == "warn", results["x509pop_cert_expiry"]
    bad = {k: v for k, v in statuses(report).items() if v not in ("pass", "skip") and k != "x509pop_cert_expiry"}
    assert not bad, bad

    before = sh(host, ["cat", f"{README_DIR}/.env.operator"])[1]
    operator_play(controller, readme, "rotate_secrets")
    assert sh(host, ["cat", f"{README_DIR}/.env.operator"])[1] != before
    assert " rotate ok keys=" in sh(host, ["cat", f"{README_DIR}/secret-rotation.log"])[1]
    dummy, out = operator_play(controller, readme, "incident_response", "--check")
    assert re.search(rf"^{re.escape(README_HOST)}\s*:.*failed=0", out, re.M), out[-3000:]
    # Healthy needs the stack's SVID files in README_DIR and nginx answering on README_PORT.
    assert "classified healthy" in out and "Security checklist: WARN, warning: x509pop_cert_expiry" in out, out[-3000:]


def test_x509pop_renewal_warn_renewed_green_agent_reattested(host, dkr, lab, controller, readme):
    old = attestation_cert(readme)
    old_agent = _x509.x509pop_agent_spiffe_id("example.com", old)
    assert agent_svid_id(host, readme) == old_agent
    # The frame renews: 20 days left, inside the default 30-day renewal window; the default 90-day lifetime.
    onboard(readme)
    new = attestation_cert(readme)
    assert _x509.sha1_fingerprint(new) != _x509.sha1_fingerprint(old)
    assert 89 < _x509.remaining_seconds(new) / 86400 <= 90
    new_agent = _x509.x509pop_agent_spiffe_id("example.com", new)
    # The operator deploys: site.yml delivers the certificate and the agent attests with it.
    dummy, out = operator_play(controller, readme, "site")
    assert re.search(rf"^{re.escape(README_HOST)}\s*:.*changed=[1-9]\d*\s+unreachable=0\s+failed=0", out, re.M), \
        out[-3000:]
    served = sh(host, ["cat", f"{README_DIR}/spire/x509pop.crt"])[1].encode()
    assert _x509.sha1_fingerprint(_x509.load_pem_chain(served)[0]) == _x509.sha1_fingerprint(new)
    wait_for("the agent to re-attest with the renewed certificate", lambda: agent_svid_id(host, readme) == new_agent,
             timeout=120, interval=3)
    listed = json.loads(server_cli(dkr, lab, "agent", "list", "-selector",
                                   f"x509pop:subject:cn:operator-{readme.operator}", "-output", "json"))
    assert new_agent in {f"spiffe://{a['id']['trust_domain']}{a['id']['path']}" for a in listed["agents"] or []}
    report = readme_checklist(controller, readme)
    results = {r["id"]: r for r in report["results"]}
    assert results["x509pop_cert_expiry"]["status"] == "pass", results["x509pop_cert_expiry"]
    bad = {k: v for k, v in statuses(report).items() if v not in ("pass", "skip")}
    assert not bad, bad
