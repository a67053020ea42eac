"""Bad input to the lab tools: one clear line saying what to do, never a traceback."""

import os
import subprocess
import sys

import pytest

from conftest import REPO

# Needs no lab host (controller-side and outer-Docker checks).

LABCTL = [sys.executable, str(REPO / "lab" / "labctl.py")]


def labctl_max_hosts():
    sys.path.insert(0, str(REPO / "lab"))
    import labctl  # noqa: E402  pylint: disable=import-outside-toplevel
    return labctl.MAX_HOSTS


def _run(cmd, env_update=None, path=None):
    env = dict(os.environ, **(env_update or {}))
    if path is not None:
        env["PATH"] = path
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, check=False)


def _one_clear_line(proc, *words):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for w in words:
        assert w in lines[0], lines[0]


@pytest.mark.parametrize("value", ["abc", "0", "99"])
def test_unknown_lab_hosts_value(value):
    proc = _run(LABCTL + ["up"], {"LAB_HOSTS": value})
    _one_clear_line(proc, "LAB_HOSTS", f"1 to {labctl_max_hosts()}")


def test_make_lab_up_reports_bad_lab_hosts():
    proc = _run(["make", "-s", "lab-up", "LAB_HOSTS=many"])
    assert proc.returncode != 0
    assert "LAB_HOSTS='many' is not a number" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_go_toolchain(tmp_path):
    # An empty SPIRE cache and no `go` on PATH.
    path = ":".join(p for p in os.environ["PATH"].split(":")
                    if not os.path.exists(os.path.join(p, "go")))
    proc = _run(LABCTL + ["build", "spire-agent"], {"THEPROTOCOL_LAB_CACHE": str(tmp_path)}, path=path)
    _one_clear_line(proc, "Go toolchain is missing", "install Go")


def test_unreachable_dockerd():
    proc = _run(LABCTL + ["status"], {"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    _one_clear_line(proc, "cannot reach dockerd", "bootstrap")


def test_dockerd_that_will_not_start(tmp_path):
    # docker that cannot reach a daemon and a dockerd that dies at once.
    fake = tmp_path / "bin"
    fake.mkdir()
    for name, body in (("docker", "exit 1"), ("dockerd", "echo 'failed to start daemon' >&2; exit 1")):
        (fake / name).write_text(f"#!/bin/sh\n{body}\n")
        (fake / name).chmod(0o755)
    proc = _run(["bash", str(REPO / "lab" / "bootstrap.sh")], {"BOOTSTRAP_DOCKERD_WAIT": "2"},
                path=f"{fake}:{os.environ['PATH']}")
    _one_clear_line(proc, "dockerd did not start", "re-run")
