"""Integration tests run against the shared lab that `make lab-up` starts (one lab for all)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import docker
import pytest

REPO = Path(__file__).resolve().parents[2]
STATE = REPO / "lab" / "state"
sys.path.insert(0, str(REPO / ".build" / "collections"))
sys.path.insert(0, str(REPO / "lab"))

AGENT_DIR = "/var/lib/lab-it/agent"
CERTS_DIR = "/var/lib/lab-it/certs"
AGENT_SOCKET = "/tmp/spire-agent/public/api.sock"


@pytest.fixture(scope="session")
def lab() -> dict:
    path = STATE / "lab.json"
    if not path.exists():
        pytest.fail("the lab is not up: run 'make lab-up' (make integration does it for you)")
    facts = json.loads(path.read_text())
    if len(facts["hosts"]) < LAB_HOSTS_NEEDED:
        pytest.fail(f"the integration tests need {LAB_HOSTS_NEEDED} lab hosts: run 'make integration' "
                    f"(or 'make lab-up LAB_HOSTS={LAB_HOSTS_NEEDED}')")
    return facts


@pytest.fixture(scope="session")
def dkr() -> docker.DockerClient:
    return docker.from_env(timeout=120)


def sh(container, cmd, *, env=None, check=True, user="") -> tuple[int, str]:
    """Run a command in a container; return (exit code, combined output)."""
    if isinstance(cmd, str):
        cmd = ["/bin/sh", "-c", cmd]
    # The docker CLI, not the SDK's exec_run: that one intermittently returns empty or cut output
    # (docker/docker-py#2042, #3332), seen here as a curl status of '' and as half a `docker inspect`.
    argv = ["docker", "exec"] + (["-u", user] if user else [])
    for key, value in (env or {}).items():
        argv += ["-e", f"{key}={value}"]
    proc = subprocess.run(argv + [container.name, *cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          check=False)
    out = proc.stdout.decode(errors="replace")
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd!r} in {container.name} exited {proc.returncode}: {out[-2000:]}")
    return proc.returncode, out


def put_file(container, path: str, data: bytes, mode: int = 0o644) -> None:
    directory, name = path.rsplit("/", 1)
    sh(container, ["mkdir", "-p", directory])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), mode, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    container.put_archive(directory, buf.getvalue())


def file_from_image(dkr, image: str, path: str) -> bytes:
    c = dkr.containers.create(image, entrypoint=["/bin/true"])
    try:
        stream, _stat = c.get_archive(path)
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            return tar.extractfile(tar.getmembers()[0]).read()
    finally:
        c.remove(force=True)


def wait_for(what: str, fn, timeout: float = 60, interval: float = 1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except AssertionError as exc:  # keep the last reason for the failure message
            last = exc
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}" + (f": {last}" if last else ""))


def server_cli(dkr, lab, *args) -> str:
    server = dkr.containers.get(lab["spire_server"]["container"])
    return sh(server, ["/opt/spire/bin/spire-server", *args])[1]


AGENT_CONF = """\
agent {{
    data_dir = "{data}"
    log_level = "INFO"
    server_address = "{server}"
    server_port = "{port}"
    socket_path = "{socket}"
    trust_bundle_path = "{data}/bundle.pem"
    trust_domain = "{td}"
}}
plugins {{
    NodeAttestor "x509pop" {{
        plugin_data {{
            private_key_path = "{data}/x509pop.key"
            certificate_path = "{data}/x509pop.crt"
        }}
    }}
    KeyManager "disk" {{
        plugin_data {{ directory = "{data}/keys" }}
    }}
    WorkloadAttestor "unix" {{
        plugin_data {{}}
    }}
}}
"""


@pytest.fixture(scope="session")
def host1_agent(dkr, lab):
    """A spire-agent (the lab image's binary) running in lab-host1 as a systemd unit,
    attesting with host1's x509pop certificate. Yields its agent SPIFFE ID."""
    from ansible_collections.theprotocol.operator.plugins.module_utils import _x509

    host = dkr.containers.get(lab["hosts"]["host1"]["container"])
    put_file(host, "/usr/local/bin/lab-spire-agent",
             file_from_image(dkr, "theprotocol-lab/spire-agent:lab", "/opt/spire/bin/spire-agent"), 0o755)
    put_file(host, f"{AGENT_DIR}/x509pop.crt", Path(lab["hosts"]["host1"]["x509pop_cert"]).read_bytes())
    put_file(host, f"{AGENT_DIR}/x509pop.key", Path(lab["hosts"]["host1"]["x509pop_key"]).read_bytes(), 0o600)
    put_file(host, f"{AGENT_DIR}/bundle.pem", Path(lab["bundle"]).read_bytes())
    put_file(host, f"{AGENT_DIR}/agent.conf", AGENT_CONF.format(
        data=AGENT_DIR, server=lab["spire_server"]["address"], port=lab["spire_server"]["port"],
        socket=AGENT_SOCKET, td=lab["trust_domain"]).encode())
    sh(host, "systemctl stop lab-spire-agent lab-cert-writer 2>/dev/null; systemctl reset-failed 2>/dev/null; true")
    sh(host, ["install", "-d", "-m", "0700", f"{AGENT_DIR}/keys"])
    sh(host, ["systemd-run", "--unit=lab-spire-agent", "--collect",
              "/usr/local/bin/lab-spire-agent", "run", "-config", f"{AGENT_DIR}/agent.conf"])
    attestation = _x509.load_pem_chain(Path(lab["hosts"]["host1"]["x509pop_cert"]).read_bytes())[0]
    agent_id = _x509.x509pop_agent_spiffe_id(lab["trust_domain"], attestation)
    wait_for("the agent on lab-host1 to answer its healthcheck",
             lambda: "Agent is healthy." in sh(host, ["/usr/local/bin/lab-spire-agent", "healthcheck"], check=False)[1],
             timeout=60)
    yield agent_id
    sh(host, "systemctl stop lab-spire-agent lab-cert-writer 2>/dev/null; true")


@pytest.fixture(scope="session")
def host1_svid(dkr, lab, host1_agent):
    """A workload entry for the registry SPIFFE ID and the cert-writer (the lab image's
    binary) writing it in lab-host1 every 3 s. Yields the SPIFFE ID."""
    host = dkr.containers.get(lab["hosts"]["host1"]["container"])
    spiffe_id = f"spiffe://{lab['trust_domain']}/service/registry-labit"
    entries = json.loads(server_cli(dkr, lab, "entry", "show", "-spiffeID", spiffe_id, "-output", "json"))
    for e in entries.get("entries") or []:
        server_cli(dkr, lab, "entry", "delete", "-entryID", e["id"])
    server_cli(dkr, lab, "entry", "create", "-parentID", host1_agent, "-spiffeID", spiffe_id,
               "-selector", "unix:uid:0", "-x509SVIDTTL", "600")
    put_file(host, "/usr/local/bin/lab-cert-writer",
             file_from_image(dkr, "theprotocol-lab/cert-writer:lab", "/usr/local/bin/cert-writer"), 0o755)
    sh(host, ["rm", "-rf", CERTS_DIR])
    sh(host, ["mkdir", "-p", CERTS_DIR])
    sh(host, ["systemd-run", "--unit=lab-cert-writer", "--collect",
              "-E", "CERT_WRITER_INTERVAL=3", "-E", f"CERT_WRITER_DIR={CERTS_DIR}",
              "-E", f"SPIFFE_ENDPOINT_SOCKET=unix://{AGENT_SOCKET}", "-E", f"CERT_WRITER_SPIFFE_ID={spiffe_id}",
              "/usr/local/bin/lab-cert-writer"])
    wait_for("the cert-writer to write svid.pem",
             lambda: sh(host, ["test", "-s", f"{CERTS_DIR}/svid.pem"], check=False)[0] == 0, timeout=60)
    yield spiffe_id


INVENTORY = STATE / "inventory.yml"


def run_playbook(playbook: str, *args: str, structured: bool = True, timeout: int = 1800):
    """Run ansible-playbook against the lab inventory. With structured=True the json
    callback is used and (rc, parsed result) is returned, else (rc, text output)."""
    env = dict(os.environ,
               ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "collections"),
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", ANSIBLE_HOST_KEY_CHECKING="False",
               ANSIBLE_RETRY_FILES_ENABLED="0")
    if structured:
        env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.posix.json"
    path = playbook if playbook.startswith("/") else str(REPO / playbook)
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(INVENTORY), path, *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if structured:
        try:
            return proc.returncode, json.loads(proc.stdout)
        except json.JSONDecodeError:
            return proc.returncode, {"raw": proc.stdout + proc.stderr}
    return proc.returncode, proc.stdout + proc.stderr


def recap(result: dict) -> dict:
    """host -> stats (ok, changed, failures, unreachable, ...) from a json-callback result."""
    return result.get("stats", {})


def failure_messages(result: dict) -> list:
    out = []
    for play in result.get("plays", []):
        for task in play.get("tasks", []):
            for host, res in task.get("hosts", {}).items():
                if res.get("failed"):
                    out.append(f"{host}: {task['task']['name']}: {res.get('msg', '')}")
    return out


# The operator stack that site.yml deploys on lab host1, shared by every test that needs one.
STACK_HOST = "host1"
STACK_REGISTRY = "registry1"
STACK_OPERATOR = "operator1"
STACK_DIR = f"/opt/theprotocol/{STACK_REGISTRY}"


@pytest.fixture(scope="session")
def deployed(lab):
    """site.yml at -vvv on the frame and host1 (converges once per session; pulls, so that a
    stack left from an earlier run runs the lab registry's current images); returns the
    playbook's output for secret-leak checks."""
    rc, out = run_playbook("playbooks/site.yml", "-l", f"frame,{STACK_HOST}", "-vvv",
                           "-e", "operator_stack_pull=always", structured=False)
    assert rc == 0, out[-6000:]
    return out


# Each test module works on its own lab host (host1 to host11, named at the top of the module; host8 is
# the SSH host); make integration runs the modules in parallel (pytest-xdist --dist loadfile).
LAB_HOSTS_NEEDED = 11


# Scheduling (make integration: pytest-xdist --dist loadfile --no-loadscope-reorder): the tests of one
# module run in order on one worker and one lab host; modules are handed out in collection order, longest
# first (LPT: what starts last is short, so the run does not end with one long module alone while the other
# workers idle). (xdist's loadgroup would allow one module for all Molecule scenarios, but its nodeid suffix
# does not take with pytest 9; without --no-loadscope-reorder xdist orders modules by their number of tests.)
# The order below is by the minutes each module took in the cold run of 2026-11-28 06:06 (commit 035dfb4,
# 5 workers, load average about 14, integration wall 50.5 min for 251 worker-minutes):
# `make integration` writes .build/integration-junit.xml and `python benchmarks/integration_modules.py`
# prints the minutes per module, to refresh it. Modules not listed take about a minute and go last.
LONGEST_FIRST = ("test_incident_response.py", "test_secret_rotation_crash.py", "test_security_checklist_federation.py",
                 "test_secret_rotation.py", "test_ssh_host.py", "test_security_checklist.py", "test_operator_stack.py",
                 "test_public_proxy.py", "test_nginx_hook.py", "test_molecule_rotation.py",
                 "test_molecule_operator_stack.py", "test_molecule_incident.py", "test_molecule_security_checklist.py",
                 "test_operator_stack_inputs.py", "test_docker_engine.py", "test_molecule_public_proxy.py",
                 "test_operator_onboarding.py", "test_molecule_operator_onboarding.py",
                 "test_molecule_docker_engine.py")
MOLECULE_SCENARIOS = sorted(p.name for p in (REPO / "molecule").iterdir() if (p / "molecule.yml").is_file())
MOLECULE_MODULES = tuple(f"test_molecule_{s}.py" for s in MOLECULE_SCENARIOS)


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)
    items.sort(key=rank)  # stable: the tests of one module keep their order


def pytest_sessionstart(session):
    here = Path(__file__).parent
    unknown = sorted(p.name for p in here.glob("test_*.py")
                     if p.name not in MODULE_HOSTS and p.name not in MOLECULE_MODULES and p.name not in HOSTLESS)
    if unknown:
        raise pytest.UsageError(f"test modules missing from MODULE_HOSTS in tests/integration/conftest.py: "
                                f"{', '.join(unknown)} (name the lab hosts they work on, or add them to HOSTLESS)")
    missing = [name for name in MOLECULE_MODULES if not (Path(__file__).parent / name).is_file()]
    if missing:
        raise pytest.UsageError(f"Molecule scenarios without their test module: {', '.join(missing)} "
                                "(tests/integration/test_molecule_<scenario>.py, see test_molecule_docker_engine.py)")


# ---------------------------------------------------------------------------------------------------
# Idle stacks cost CPU on a machine that the integration run keeps busy: a deployed stack with nothing to
# do took 3.85 CPU-seconds a minute on the lab (its healthchecks every 5 to 15 s, the nested dockerd that
# runs them, postgres and redis housekeeping: benchmarks/README.md, "Idle stacks"), so eleven of them take
# about a third of the 2 cores. `make integration` (THEPROTOCOL_IT_STOP_FINISHED_HOSTS=1) kills the stack
# of a lab host and stops its Docker daemon once every module that works on it has finished; a later deploy
# (site.yml: the docker_engine role starts the daemon, the stack's compose up the killed containers) brings
# it back.
MODULE_HOSTS = {
    "test_operator_stack.py": ("host1",), "test_lab_spire.py": ("host1",),
    "test_operator_stack_inputs.py": ("host2",), "test_operator_onboarding.py": ("host2",),
    "test_secret_rotation.py": ("host3",), "test_docker_engine.py": ("host4",),
    "test_incident_response.py": ("host5",), "test_public_proxy.py": ("host6",),
    "test_security_checklist.py": ("host7",), "test_ssh_host.py": ("host8",), "test_nginx_hook.py": ("host9",),
    "test_secret_rotation_crash.py": ("host10",), "test_security_checklist_federation.py": ("host11",),
}
# Modules that work on no lab host (throwaway containers of their own, or the lab's inputs).
HOSTLESS = ("test_lab_inputs.py", "test_lab_official_images.py")
# tests/ee/verify.sh runs on host8 after the integration tests (make test: ee-verify).
KEEP_RUNNING = ("host8",)
FINISHED = REPO / ".build" / "integration-finished"
STOP_FINISHED_HOSTS = os.environ.get("THEPROTOCOL_IT_STOP_FINISHED_HOSTS") == "1"


def pytest_configure(config):
    if STOP_FINISHED_HOSTS and not hasattr(config, "workerinput"):  # once, in the controlling process
        FINISHED.mkdir(parents=True, exist_ok=True)
        for marker in FINISHED.iterdir():
            marker.unlink()


def hosts_to_stop(module: str, finished: set[str], selected: set[str]) -> list[str]:
    """The lab hosts of ``module`` whose every selected module has finished."""
    return [h for h in MODULE_HOSTS.get(module, ()) if h not in KEEP_RUNNING
            and all(m in finished for m in selected if h in MODULE_HOSTS.get(m, ()))]


@pytest.fixture(scope="module", autouse=True)
def stop_the_hosts_of_finished_modules(request):
    yield
    module = request.path.name
    if not STOP_FINISHED_HOSTS or module not in MODULE_HOSTS:
        return
    lab = request.getfixturevalue("lab")
    (FINISHED / module).touch()
    finished = {p.name for p in FINISHED.iterdir()}
    selected = {item.path.name for item in request.session.items}
    for name in hosts_to_stop(module, finished, selected):
        # The stack's containers first: the role's daemon.json sets live-restore, so containers outlive a
        # stopped dockerd (their processes kept taking CPU, only the healthchecks stopped). Detached (-d):
        # on the lab host's own time, not this worker's.
        subprocess.run(["docker", "exec", "-d", lab["hosts"][name]["container"], "sh", "-c",
                        "docker ps -q | xargs -r docker kill >/dev/null 2>&1; "
                        "systemctl stop docker.socket docker.service containerd.service"],
                       capture_output=True, check=False)
        print(f"{module} was the last module on {name}: its stack is killed and its Docker daemon stopped")
