#!/usr/bin/env python3
"""CPU taken by each lab container over a window, nested stack containers included, from the cgroup v1
CPU accounting (/sys/fs/cgroup/cpuacct/docker/<id>/cpuacct.usage): what an idle deployed stack costs
while the integration tests keep the machine busy.

    sudo .venv/bin/python benchmarks/idle_stacks.py [seconds]   (default 60; run on the lab machine)

The nested dockerd of a lab host runs its containers with the host's cgroup namespace, so each stack
container has a cgroup of its own next to its lab host's; the lab host's own figure is its systemd,
dockerd, containerd and the shims (which run the healthchecks). Prints CPU-seconds per container and the
sum per lab host (its container plus its stack's)."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time

CPUACCT = "/sys/fs/cgroup/cpuacct"


def usage() -> dict[str, int]:
    out = {"": int(open(f"{CPUACCT}/cpuacct.usage").read())}
    for cid in os.listdir(f"{CPUACCT}/docker"):
        path = f"{CPUACCT}/docker/{cid}/cpuacct.usage"
        if os.path.exists(path):
            out[cid] = int(open(path).read())
    return out


def names() -> dict[str, str]:
    """Container id -> name; a stack container as <lab host>/<its name>."""
    def ps(*prefix: str) -> list[tuple[str, str]]:
        text = subprocess.run([*prefix, "docker", "ps", "--no-trunc", "--format", "{{.ID}} {{.Names}}"],
                              capture_output=True, text=True, check=False).stdout
        return [tuple(line.split()[:2]) for line in text.splitlines() if line.strip()]
    out = dict(ps())
    for cid, name in list(out.items()):
        if name.startswith(("lab-host", "molecule-")):
            out.update((inner, f"{name}/{inner_name}") for inner, inner_name in ps("docker", "exec", name))
    return out


def main(argv: list[str]) -> int:
    if not os.path.isdir(f"{CPUACCT}/docker"):
        print(f"{CPUACCT}/docker: no cgroup v1 CPU accounting of Docker here", file=sys.stderr)
        return 2
    window = float(argv[1]) if len(argv) > 1 else 60.0
    label = names()
    before = usage()
    time.sleep(window)
    after = usage()
    total = (after[""] - before[""]) / 1e9
    rows = sorted((((after[c] - before.get(c, 0)) / 1e9, label.get(c, c[:12])) for c in after if c), reverse=True)
    print(f"machine: {total:.1f} CPU-s in {window:.0f} s ({total / window:.2f} cores)")
    per_host: dict[str, float] = collections.defaultdict(float)
    for seconds, name in rows:
        if name.startswith(("lab-host", "molecule-")):
            per_host[name.split("/")[0]] += seconds
        if seconds >= 0.01:
            print(f"{seconds:8.2f}  {name}")
    print("per lab host, its stack included (CPU-s per minute):")
    for host, seconds in sorted(per_host.items(), key=lambda kv: -kv[1]):
        print(f"{seconds * 60 / window:8.2f}  {host}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
