"""Issue 16, first deliverable: nginx-federation on the official nginx image contract. The lab's nginx
image only runs /docker-entrypoint.d/ hooks, as the official image does, and watches nothing itself;
the operator_stack role mounts the hook that reloads nginx (after `nginx -t`) when the cert-writer
swaps the certificate set. Proven with its failing controls: without the hook (not executable, so
the entrypoint ignores it) nginx keeps serving the old SVID and the checklist's served_svid_current
fails; a configuration that fails `nginx -t` is never reloaded and a log line says why.

Lab host of this module: host9, deployed by this module (its tests break nginx-federation on purpose:
on host1 they would disturb test_operator_stack, which runs in parallel). The lab's SVID TTL is 120 s
(the agent renews at half-life) and the cert-writer writes every 15 s.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from conftest import recap, run_playbook, sh, wait_for

HOST, REGISTRY = "host9", "registry9"
STACK_DIR = f"/opt/theprotocol/{REGISTRY}"
NGINX = f"{REGISTRY}-nginx-federation"
HOOK = "40-theprotocol-reload-on-cert-change.sh"
HOOK_ON_HOST = f"{STACK_DIR}/nginx/{HOOK}"
HOOK_IN_CONTAINER = f"/docker-entrypoint.d/{HOOK}"
CONF_ON_HOST = f"{STACK_DIR}/nginx/federation.conf"
VOLUME_SVID = f"/var/lib/docker/volumes/{REGISTRY}_certs/_data/svid.pem"
CERT_WRITER_INTERVAL = 15   # the lab's operator_stack_cert_writer_interval
ROTATION_TIMEOUT = 150      # SVID TTL 120 s, renewed at half-life: a new SVID at least every ~60 s
RELOADED = re.compile(r"theprotocol-reload-on-cert-change: certificate set \S+ in /certs changed: "
                      r"nginx -t passed, reloaded")
REFUSED = re.compile(r"theprotocol-reload-on-cert-change: certificate set \S+ in /certs changed but nginx -t "
                     r"failed, NOT reloaded \(nginx keeps serving the previous certificates and configuration\): (.*)")


@pytest.fixture(scope="module")
def host(dkr, lab):
    """The stack on host9, deployed (pulling, so that a stack left from an earlier run runs the lab's
    current images)."""
    rc, result = run_playbook("playbooks/site.yml", "-l", f"frame,{HOST}", "-e", "operator_stack_pull=always")
    assert rc == 0, json.dumps(result)[-4000:]
    return dkr.containers.get(lab["hosts"][HOST]["container"])


def _serial(host, cmd) -> str:
    """``serial=...`` from ``cmd``; read again when a reading fails (the cert-writer's swap of ..data, an
    nginx worker being replaced): a failed reading is no serial, never a different one."""
    for attempt in range(10):
        code, out = sh(host, cmd, check=False)
        if code == 0 and out.strip().startswith("serial="):
            return out.strip()
        time.sleep(0.5)
    raise AssertionError(f"no serial from {cmd!r} in 10 readings: {out[-500:]}")


def volume_serial(host) -> str:
    return _serial(host, ["openssl", "x509", "-noout", "-serial", "-in", VOLUME_SVID])


def served_serial(host) -> str:
    return _serial(host, "openssl s_client -connect localhost:8443 -servername localhost </dev/null 2>/dev/null"
                         " | openssl x509 -noout -serial")


def nginx_log(host, since: str | None = None) -> str:
    args = ["docker", "logs"] + (["--since", since] if since else []) + [NGINX]
    return sh(host, args)[1]


def host_now(host) -> str:
    """The lab host's clock, for `docker logs --since`."""
    return sh(host, ["date", "-u", "+%Y-%m-%dT%H:%M:%SZ"])[1].strip()


def wait_rotation(host, before: str) -> str:
    """Wait until the cert-writer has put a new SVID on the volume; return its serial."""
    return wait_for("the SPIRE agent to rotate the SVID and the cert-writer to write it",
                    lambda: (now := volume_serial(host)) != before and now, timeout=ROTATION_TIMEOUT, interval=1)


def health(host) -> str:
    return sh(host, ["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "https://localhost:8443/health"],
              check=False)[1].strip()


def verify(tmp_path, name: str) -> dict:
    out = tmp_path / name
    rc, text = run_playbook("playbooks/verify.yml", "-l", HOST, "-e", f"theprotocol_checklist_report_dir={out}",
                            "-e", "theprotocol_checklist_fail_on=never", structured=False)
    assert rc == 0, text[-4000:]
    report = json.loads((out / f"{HOST}.json").read_text())
    return dict((r["id"], r) for r in report["results"])


def wait_served_current(host, timeout: float = ROTATION_TIMEOUT) -> str:
    return wait_for("nginx-federation to serve the SVID on the volume",
                    lambda: (v := volume_serial(host)) == served_serial(host) and v, timeout=timeout, interval=1)


def redeploy(host):
    """site.yml on this module's host: repairs what a test broke."""
    rc, result = run_playbook("playbooks/site.yml", "-l", HOST)
    assert rc == 0, json.dumps(result)[-4000:]
    return recap(result)[HOST]


def test_the_role_mounts_the_hook_and_the_image_entrypoint_launches_it(host):
    mode = sh(host, ["stat", "-c", "%a %U", HOOK_ON_HOST])[1].split()
    assert mode == ["755", "root"], mode
    mounts = json.loads(sh(host, ["docker", "inspect", "-f", "{{json .Mounts}}", NGINX])[1])
    hook = [m for m in mounts if m["Destination"] == HOOK_IN_CONTAINER]
    assert len(hook) == 1 and hook[0]["Source"] == HOOK_ON_HOST and hook[0]["RW"] is False, mounts
    log = nginx_log(host)
    assert f"/docker-entrypoint.sh: Launching {HOOK_IN_CONTAINER}" in log, log[-3000:]
    assert "theprotocol-reload-on-cert-change: watching /certs every 2s" in log, log[-3000:]
    # The image itself watches nothing: the only watcher in the container is the hook's.
    procs = sh(host, ["docker", "exec", NGINX, "sh", "-c",
                      "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done"])[1]
    assert "nginx: master process nginx -g daemon off;" in procs, procs
    assert [line for line in procs.splitlines() if HOOK in line], procs


def test_each_rotation_is_served_within_one_cert_writer_interval(host, tmp_path):
    for rotation in range(2):
        before = volume_serial(host)
        assert served_serial(host) == before, "nginx-federation does not serve the current SVID to begin with"
        since = host_now(host)
        new = wait_rotation(host, before)
        seen = time.monotonic()
        wait_for(f"nginx-federation to serve the rotated SVID {new} (rotation {rotation + 1})",
                 lambda: served_serial(host) == new, timeout=CERT_WRITER_INTERVAL, interval=0.5)
        assert time.monotonic() - seen <= CERT_WRITER_INTERVAL
        log = nginx_log(host, since)
        assert RELOADED.search(log), log[-3000:]
        assert "reconfiguring" in log, log[-3000:]  # nginx's own notice of the SIGHUP
    results = verify(tmp_path, "rotated")
    assert results["served_svid_current"]["status"] == "pass", results["served_svid_current"]


def test_without_the_hook_nginx_keeps_the_old_svid_and_the_checklist_fails(host, tmp_path):
    # The failing control: the same stack with the hook not executable. The official entrypoint
    # ignores it (and says so), nothing else reloads nginx.
    sh(host, ["chmod", "0644", HOOK_ON_HOST])
    try:
        sh(host, ["docker", "restart", NGINX])
        wait_for("nginx-federation to answer after its restart", lambda: health(host) == "200", timeout=60)
        # This start's lines only: `docker logs` through `docker exec` does not keep the order of the
        # container's stdout and stderr, so "the lines after the Ignoring line" may hold older ones.
        started = sh(host, ["docker", "inspect", "-f", "{{.State.StartedAt}}", NGINX])[1].strip()
        ignoring = f"/docker-entrypoint.sh: Ignoring {HOOK_IN_CONTAINER}, not executable"
        # Under load the entrypoint's stdout line can reach `docker logs` after nginx's stderr lines.
        wait_for("the entrypoint's Ignoring line in this start's log", lambda: ignoring in nginx_log(host, started),
                 timeout=30, interval=2)
        start = nginx_log(host, started)
        assert ignoring in start, start[-3000:]
        assert "theprotocol-reload-on-cert-change: watching" not in start, start[-3000:]
        old = served_serial(host)
        new = wait_rotation(host, volume_serial(host))
        time.sleep(CERT_WRITER_INTERVAL)  # longer than the hook would have needed
        assert served_serial(host) == old != new
        results = verify(tmp_path, "nohook")
        res = results["served_svid_current"]
        assert res["status"] == "fail", res
        assert "not reloaded after the rotation" in " ".join(res["evidence"]), res
        assert results["nginx_federation_accepting"]["status"] == "pass", results["nginx_federation_accepting"]
    finally:
        # The deploy repairs the mode (0755) and restarts nginx-federation (the hook runs at start).
        since = host_now(host)
        stats = redeploy(host)
    assert stats["changed"] >= 1, stats
    assert sh(host, ["stat", "-c", "%a", HOOK_ON_HOST])[1].strip() == "755"
    log = nginx_log(host, since)
    assert f"/docker-entrypoint.sh: Launching {HOOK_IN_CONTAINER}" in log, log[-3000:]
    assert "theprotocol-reload-on-cert-change: watching /certs every 2s" in log, log[-3000:]
    wait_served_current(host, timeout=60)
    results = verify(tmp_path, "repaired")
    assert results["served_svid_current"]["status"] == "pass", results["served_svid_current"]


def test_a_configuration_that_fails_nginx_t_is_never_reloaded(host, tmp_path):
    wait_served_current(host)
    original = sh(host, ["sha256sum", CONF_ON_HOST])[1].split()[0]
    sh(host, ["cp", "-p", CONF_ON_HOST, "/root/federation.conf.orig"])
    # Broken in place (same inode, so the container's bind mount sees it), as a bad hand edit would.
    sh(host, f"echo 'this_is_not_an_nginx_directive on;' >> {CONF_ON_HOST}")
    try:
        since = host_now(host)
        old = served_serial(host)
        new = wait_rotation(host, volume_serial(host))
        match = wait_for("the hook to refuse the new set (nginx -t fails)",
                         lambda: REFUSED.search(nginx_log(host, since)), timeout=CERT_WRITER_INTERVAL, interval=1)
        assert "this_is_not_an_nginx_directive" in match.group(1), match.group(0)
        time.sleep(4)
        log = nginx_log(host, since)
        assert not RELOADED.search(log), log[-3000:]
        assert "reconfiguring" not in log, log[-3000:]  # no SIGHUP reached nginx
        assert served_serial(host) == old != new  # the previous configuration and SVID keep serving
        assert health(host) == "200"
        results = verify(tmp_path, "broken")
        assert results["served_svid_current"]["status"] == "fail", results["served_svid_current"]
    finally:
        sh(host, f"cat /root/federation.conf.orig > {CONF_ON_HOST} && rm -f /root/federation.conf.orig")
    assert sh(host, ["sha256sum", CONF_ON_HOST])[1].split()[0] == original
    # The next rotation passes nginx -t again and is served.
    wait_served_current(host)
    results = verify(tmp_path, "healed")
    assert results["served_svid_current"]["status"] == "pass", results["served_svid_current"]
