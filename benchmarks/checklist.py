"""Wall time of the security checklist on a lab host: playbooks/verify.yml (one module call) versus the
guide's checklist commands as one Ansible task each (benchmarks/checklist_per_command.yml) versus the raw
floor (benchmarks/checklist_floor.py: one Python process on the host doing the module's docker/TLS/file
operations directly), and verify.yml over 1 and over 4 hosts. Median of --runs runs each, interleaved.
Targets (issue 4): verify >= 5x faster than per-command, <= 2x the raw floor, T(4)/T(1) <= 2.0.
Prints a table; results go to benchmarks/checklist_results.json.

    .venv/bin/python benchmarks/checklist.py [--runs 5] [--host host1] [--fleet host1,host2,host3,host4]

Needs the lab (LAB_HOSTS=4 make lab-up) with the stacks deployed (site.yml).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
INVENTORY = REPO / "lab" / "state" / "inventory.yml"
VENV = REPO / ".venv" / "bin"
FLOOR = REPO / "benchmarks" / "checklist_floor.py"
RESULTS = REPO / "benchmarks" / "checklist_results.json"
MODULE_TASK = "Evaluate the security checklist"
ROTATION_CAUGHT = "caught a rotation in progress"


def ansible_env() -> dict:
    return dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
                ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "collections"),
                ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0")


def iso(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def playbook(path: str, limit: str, *extra: str) -> dict:
    """Run a playbook; wall time, rc, per-task durations (first host) and the module's own duration."""
    t0 = time.monotonic()
    proc = subprocess.run([str(VENV / "ansible-playbook"), "-i", str(INVENTORY), path, "-l", limit, *extra],
                          cwd=REPO, env=ansible_env(), capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    out = {"wall_s": round(wall, 3), "rc": proc.returncode, "tasks": {}, "module_s": {}}
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        out["error"] = (proc.stdout + proc.stderr)[-2000:]
        return out
    for play in doc.get("plays", []):
        for task in play.get("tasks", []):
            name = task["task"]["name"]
            span = task["task"].get("duration", {})
            if span.get("start") and span.get("end"):
                secs = (iso(span["end"]) - iso(span["start"])).total_seconds()
                out["tasks"][name] = round(out["tasks"].get(name, 0) + secs, 3)
            if MODULE_TASK in name:
                for host, res in task.get("hosts", {}).items():
                    if "duration_seconds" in res:
                        out["module_s"][host] = res["duration_seconds"]
                    # served_svid_current waited for nginx to reload a rotated SVID (the lab rotates every ~60 s)
                    if any(ROTATION_CAUGHT in e for r in res.get("results", []) for e in r.get("evidence", [])):
                        out.setdefault("rotation_caught", []).append(host)
    out["failed_hosts"] = [h for h, s in doc.get("stats", {}).items() if s.get("failures") or s.get("unreachable")]
    return out


def floor(container: str, registry: str) -> dict:
    subprocess.run(["docker", "cp", str(FLOOR), "%s:/tmp/checklist_floor.py" % container], check=True)
    t0 = time.monotonic()
    proc = subprocess.run(["docker", "exec", container, "python3", "/tmp/checklist_floor.py", registry],
                          capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    out = {"wall_s": round(wall, 3), "rc": proc.returncode}
    try:
        out.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    except (json.JSONDecodeError, IndexError):
        out["error"] = (proc.stdout + proc.stderr)[-2000:]
    return out


def ping(limit: str) -> dict:
    """Ansible's fixed cost: ansible-playbook-less ad-hoc ping of the host over the same connection."""
    t0 = time.monotonic()
    proc = subprocess.run([str(VENV / "ansible"), "-i", str(INVENTORY), limit, "-m", "ansible.builtin.ping"],
                          cwd=REPO, env=dict(ansible_env(), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.minimal"),
                          capture_output=True, text=True, check=False)
    return {"wall_s": round(time.monotonic() - t0, 3), "rc": proc.returncode}


def med(runs: list, key: str = "wall_s") -> float:
    return round(statistics.median(r[key] for r in runs), 3)


def task_medians(runs: list) -> dict:
    names = runs[0]["tasks"].keys()
    return {n: round(statistics.median(r["tasks"].get(n, 0) for r in runs), 3) for n in names}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--host", default="host1")
    ap.add_argument("--fleet", default="host1,host2,host3,host4")
    args = ap.parse_args()
    inv = yaml.safe_load(INVENTORY.read_text())
    hv = inv["all"]["children"]["theprotocol_registries"]["hosts"][args.host]
    reports = tempfile.mkdtemp(prefix="checklist-bench-")
    verify = str(REPO / "playbooks" / "verify.yml")
    per_cmd = str(REPO / "benchmarks" / "checklist_per_command.yml")
    rep = ["-e", "theprotocol_checklist_report_dir=%s" % reports]
    # Warm-up (not counted): page cache, image metadata, apt lists.
    playbook(verify, args.host, *rep)
    playbook(per_cmd, args.host)
    floor(hv["ansible_host"], hv["theprotocol_registry_name"])
    # Diagnostic variant (not a target): the same verify.yml with the role's report writing switched off
    # through the role's own variables, i.e. the module call and the role's local tasks.
    core = [*rep, "-e", "security_checklist_reports=false", "-e", "security_checklist_fleet_report=false"]
    data = {k: [] for k in ("verify_1", "per_command", "floor", "verify_fleet", "ping", "verify_core")}
    for i in range(args.runs):
        data["verify_1"].append(playbook(verify, args.host, *rep))
        data["per_command"].append(playbook(per_cmd, args.host))
        data["floor"].append(floor(hv["ansible_host"], hv["theprotocol_registry_name"]))
        data["verify_fleet"].append(playbook(verify, args.fleet, *rep))
        data["ping"].append(ping(args.host))
        data["verify_core"].append(playbook(verify, args.host, *core))
        print("run %d/%d: verify %.2f s, per-command %.2f s, floor %.2f s, verify x%d %.2f s" % (
            i + 1, args.runs, data["verify_1"][-1]["wall_s"], data["per_command"][-1]["wall_s"],
            data["floor"][-1]["wall_s"], len(args.fleet.split(",")), data["verify_fleet"][-1]["wall_s"]),
            file=sys.stderr)
    bad = [(k, r) for k, runs in data.items() for r in runs if r.get("rc") or r.get("error")]
    v1, pc, fl, vf = (med(data[k]) for k in ("verify_1", "per_command", "floor", "verify_fleet"))
    fl_in = med(data["floor"], "in_process_s")
    fl_imp = med(data["floor"], "in_process_with_imports_s")
    n = len(args.fleet.split(","))
    summary = {
        "verify_1host_s": v1, "per_command_s": pc, "floor_docker_exec_s": fl, "floor_in_process_s": fl_in,
        "floor_in_process_with_imports_s": fl_imp, "verify_%dhosts_s" % n: vf, "ansible_ping_s": med(data["ping"]),
        "verify_1host_no_reports_s": med(data["verify_core"]),
        "module_duration_s": round(statistics.median(r["module_s"].get(args.host, 0) for r in data["verify_1"]), 3),
        "speedup_vs_per_command": round(pc / v1, 2), "ratio_to_floor_docker_exec": round(v1 / fl, 1),
        "ratio_to_floor_in_process": round(v1 / fl_in, 1), "fleet_ratio": round(vf / v1, 2),
    }
    # Diagnostic: runs in which no host caught an SVID rotation between the cert-writer's swap and nginx's
    # reload (the module then re-probes until nginx serves the new SVID, up to served_svid_grace seconds).
    calm_1 = [r for r in data["verify_1"] if not r.get("rotation_caught")]
    calm_f = [r for r in data["verify_fleet"] if not r.get("rotation_caught")]
    summary["runs_with_rotation_caught"] = {"verify_1host": len(data["verify_1"]) - len(calm_1),
                                            "verify_%dhosts" % n: len(data["verify_fleet"]) - len(calm_f)}
    if calm_1 and calm_f:
        summary["fleet_ratio_no_rotation_caught"] = round(med(calm_f) / med(calm_1), 2)
        summary["verify_%dhosts_no_rotation_caught_s" % n] = med(calm_f)
    summary["targets"] = {
        "speedup_vs_per_command>=5": summary["speedup_vs_per_command"] >= 5,
        "ratio_to_floor<=2 (docker exec floor)": summary["ratio_to_floor_docker_exec"] <= 2,
        "fleet_ratio<=2.0": summary["fleet_ratio"] <= 2.0,
    }
    out = {"recorded": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "host": args.host,
           "fleet": args.fleet, "runs": args.runs, "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
           "summary": summary,
           "task_medians_s": {"verify_1": task_medians(data["verify_1"]),
                              "per_command": task_medians(data["per_command"]),
                              "verify_fleet": task_medians(data["verify_fleet"]),
                              "verify_core": task_medians(data["verify_core"])},
           "runs_detail": {k: [{kk: vv for kk, vv in r.items() if kk != "tasks"} for r in runs]
                           for k, runs in data.items()},
           "errors": [{"what": k, **r} for k, r in bad]}
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    rows = [("verify.yml -l %s" % args.host, v1), ("per-command playbook -l %s" % args.host, pc),
            ("raw floor (docker exec + python3)", fl), ("raw floor (in-process)", fl_in),
            ("verify.yml -l %s" % args.fleet, vf), ("ansible ad-hoc ping (fixed cost)", summary["ansible_ping_s"]),
            ("verify.yml, reports off (diagnostic)", summary["verify_1host_no_reports_s"]),
            ("module duration_seconds (inside verify)", summary["module_duration_s"])]
    print("%-48s %10s" % ("median of %d runs" % args.runs, "seconds"))
    for label, value in rows:
        print("%-48s %10.3f" % (label, value))
    print("speedup vs per-command: %.2fx (target >= 5)   %s" % (
        summary["speedup_vs_per_command"], "MET" if summary["targets"]["speedup_vs_per_command>=5"] else "MISSED"))
    print("verify / floor: %.1fx docker exec, %.1fx in-process (target <= 2)   %s" % (
        summary["ratio_to_floor_docker_exec"], summary["ratio_to_floor_in_process"],
        "MET" if summary["targets"]["ratio_to_floor<=2 (docker exec floor)"] else "MISSED"))
    print("T(%d)/T(1): %.2f (target <= 2.0)   %s" % (n, summary["fleet_ratio"],
                                                   "MET" if summary["targets"]["fleet_ratio<=2.0"] else "MISSED"))
    caught = summary["runs_with_rotation_caught"]
    print("runs that caught an SVID rotation mid-reload: %s" % ", ".join("%s %d/%d" % (k, v, args.runs)
                                                                      for k, v in caught.items()))
    if "fleet_ratio_no_rotation_caught" in summary:
        print("T(%d)/T(1) over the runs without one (diagnostic): %.2f" % (n, summary["fleet_ratio_no_rotation_caught"]))
    if bad:
        print("%d run(s) had a non-zero rc or an error; see %s" % (len(bad), RESULTS), file=sys.stderr)
    print("results: %s" % RESULTS.relative_to(REPO))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
