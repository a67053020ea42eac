"""Secret rotation on lab host3 (registry3), ours vs the guide's: wall time and registry /health
failures while it runs. /health (the registry authenticates to PostgreSQL and Redis) is probed 5
times a second (docker exec curl in the registry container) from 2 s before to 2 s after.

  ours   playbooks/rotate_secrets.yml -l host3 (all three secrets, live), --runs times; medians.
  naive  the guide's procedure: new values written into .env.operator (old file copied aside),
         docker compose down, up -d; then --observe seconds of probing to show the stack does not
         come back (PostgreSQL and Redis keep the old passwords), then the repair
         (rotate_secrets.yml -e theprotocol_rotation_action=repair) so that host3 is usable again,
         probed until /health is 200. --naive-runs times (default 1).

The probe, the env-file reader and the guide's procedure are the ones of
tests/integration/test_secret_rotation.py (imported, so that test and benchmark measure the same
thing; like that module this works on host3 only). No secret value is printed or written.
Results go to benchmarks/rotation_results.json.

    .venv/bin/python benchmarks/rotation.py [--runs 3] [--naive-runs 1] [--observe 30]

Needs the lab (make lab-up LAB_HOSTS=7) and the stack on host3
(ansible-playbook -i lab/state/inventory.yml playbooks/site.yml -l frame,host3).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "rotation_results.json"
sys.path.insert(0, str(REPO / "tests" / "integration"))

import test_secret_rotation as rot  # noqa: E402  (the integration test's helpers, host3 / registry3)

PROBE_INTERVAL = 0.2


def probe_stats(results: list) -> dict:
    """Probes, failures (anything but 200) and failure windows: first failure to next success."""
    windows, start = [], None
    for ts, code in results:
        if code != "200" and start is None:
            start = ts
        elif code == "200" and start is not None:
            windows.append(ts - start)
            start = None
    open_window = start is not None
    if open_window:
        windows.append(results[-1][0] - start + PROBE_INTERVAL)
    span = results[-1][0] - results[0][0] if len(results) > 1 else 0.0
    return {"probes": len(results), "probes_per_s": round(len(results) / span, 2) if span else None,
            "failures": sum(1 for dummy, c in results if c != "200"), "failure_windows": len(windows),
            "longest_failure_window_s": round(max(windows), 1) if windows else 0.0,
            "failing_at_end": open_window}


def wait_healthy(host, timeout: float) -> float | None:
    """Seconds until /health is 200 (None: not within timeout)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if rot.health(host) == "200":
            return round(time.monotonic() - t0, 1)
        time.sleep(PROBE_INTERVAL)
    return None


def playbook_failure(out: str) -> str:
    """The failed task lines of a playbook run (the role's output holds no secret: no_log)."""
    return "\n".join(line for line in out.splitlines() if "fatal:" in line or "FAILED" in line)[-2000:]


def run_ours(host) -> dict:
    old = rot.values(host)
    prober = rot.Prober(host)
    prober.start()
    time.sleep(2)
    t0 = time.monotonic()
    rc, out = rot.rotate()
    wall = time.monotonic() - t0
    time.sleep(2)
    prober.stop.set()
    prober.join()
    new = rot.values(host)
    run = {"rc": rc, "wall_s": round(wall, 1), **probe_stats(prober.results),
           "rotated": all(new[k] != old[k] for k in rot.KEYS),
           "new_accepted_old_refused": rot.pg_ok(host, new["POSTGRES_PASSWORD"])
           and not rot.pg_ok(host, old["POSTGRES_PASSWORD"]),
           "healthy_at_end": rot.health(host) == "200"}
    if rc != 0:
        run["failure"] = playbook_failure(out)
    return run


def run_naive(host, observe: float) -> dict:
    old = rot.values(host)
    prober = rot.Prober(host)
    prober.start()
    time.sleep(2)
    t0 = time.monotonic()
    new = rot.guides_procedure(host)
    wall = time.monotonic() - t0
    time.sleep(observe)
    body = rot.dexec(host, f"{rot.REGISTRY}-registry", "curl -s -m 3 localhost:8080/health")[1]
    try:
        reasons = {k: v for k, v in json.loads(body).items() if k.endswith("_reason")}
    except ValueError:
        reasons = {"raw": body[:200]}
    healthy_after = rot.health(host) == "200"
    pg_old_still_live = rot.pg_ok(host, old["POSTGRES_PASSWORD"]) and not rot.pg_ok(host, new["POSTGRES_PASSWORD"])
    during = probe_stats(list(prober.results))
    # Repair, probing on, until /health is 200 again.
    t1 = time.monotonic()
    rc, out = rot.rotate("-e", "theprotocol_rotation_action=repair")
    healthy_in = wait_healthy(host, 90)
    repair = time.monotonic() - t1
    start_to_healthy = time.monotonic() - t0
    time.sleep(2)
    prober.stop.set()
    prober.join()
    total = probe_stats(prober.results)
    run = {"wall_s": round(wall, 1), "observed_after_up_s": observe, "during_procedure_and_observation": during,
           "healthy_after_procedure": healthy_after, "health_reasons_after_procedure": reasons,
           "postgres_still_has_old_password": pg_old_still_live,
           "repair_rc": rc, "repair_s": round(repair, 1), "healthy_after_repair": healthy_in is not None,
           "until_repaired": total,
           # includes --observe: how long the stack stays broken depends on when the repair starts
           "procedure_start_to_healthy_s": round(start_to_healthy, 1) if healthy_in is not None else None}
    if rc != 0:
        run["repair_failure"] = playbook_failure(out)
    return run


def median(runs: list, key: str):
    return round(statistics.median(r[key] for r in runs), 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs of ours (median reported)")
    ap.add_argument("--naive-runs", type=int, default=1,
                    help="runs of the guide's procedure (each followed by the repair)")
    ap.add_argument("--observe", type=float, default=30,
                    help="seconds probed after the guide's up -d, before the repair")
    args = ap.parse_args()
    lab = json.loads((REPO / "lab" / "state" / "lab.json").read_text())
    host = docker.from_env(timeout=120).containers.get(lab["hosts"][rot.HOST]["container"])
    if wait_healthy(host, 120) is None:
        print(f"{rot.REGISTRY} on {rot.HOST} is not healthy: deploy it with site.yml first", file=sys.stderr)
        return 2
    ours = []
    for i in range(args.runs):
        ours.append(run_ours(host))
        print(f"ours  run {i + 1}: " + json.dumps({k: v for k, v in ours[-1].items() if k != "failure"}), flush=True)
    naive = []
    for i in range(args.naive_runs):
        naive.append(run_naive(host, args.observe))
        print(f"naive run {i + 1}: " + json.dumps({k: v for k, v in naive[-1].items() if k != "repair_failure"}),
              flush=True)
    summary = {"ours": {"runs": len(ours), "wall_s_median": median(ours, "wall_s"),
                        "probes_median": median(ours, "probes"), "failures_median": median(ours, "failures"),
                        "failures_max": max(r["failures"] for r in ours),
                        "longest_failure_window_s_median": median(ours, "longest_failure_window_s"),
                        "longest_failure_window_s_max": max(r["longest_failure_window_s"] for r in ours),
                        "all_ok_and_healthy_at_end": all(r["rc"] == 0 and r["healthy_at_end"] and r["rotated"]
                                                         and r["new_accepted_old_refused"] for r in ours)},
               "naive": {"runs": len(naive),
                         "wall_s": [r["wall_s"] for r in naive],
                         "failures_before_repair": [r["during_procedure_and_observation"]["failures"] for r in naive],
                         "probes_before_repair": [r["during_procedure_and_observation"]["probes"] for r in naive],
                         "healthy_after_procedure": [r["healthy_after_procedure"] for r in naive],
                         "failures_until_repaired": [r["until_repaired"]["failures"] for r in naive],
                         "longest_failure_window_s_until_repaired":
                             [r["until_repaired"]["longest_failure_window_s"] for r in naive],
                         "repair_s": [r["repair_s"] for r in naive],
                         "healthy_after_repair": [r["healthy_after_repair"] for r in naive]}}
    result = {"recorded": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "host": rot.HOST,
              "registry": rot.REGISTRY, "probe_interval_s": PROBE_INTERVAL, "observe_s": args.observe,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "summary": summary, "ours": ours, "naive": naive}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print("results: %s" % RESULTS.relative_to(REPO))
    ok = summary["ours"]["all_ok_and_healthy_at_end"] and all(r["healthy_after_repair"] and r["repair_rc"] == 0
                                                              for r in naive)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
