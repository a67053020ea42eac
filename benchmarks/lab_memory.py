#!/usr/bin/env python3
"""Memory of the running lab: every lab container on this machine plus every container the
lab hosts' own dockerd runs (the operator stacks), computed like `docker stats` does on
cgroup v1 (usage minus inactive file cache), read from the cgroup files because
`docker stats --no-stream` reports 0B for some containers on this kernel.

    .venv/bin/python benchmarks/lab_memory.py
"""

import sys
from pathlib import Path

import docker

CGROUP = Path("/sys/fs/cgroup/memory/docker")


def working_set(container_id: str) -> int | None:
    d = CGROUP / container_id
    try:
        usage = int((d / "memory.usage_in_bytes").read_text())
        stat = dict(line.split() for line in (d / "memory.stat").read_text().splitlines())
    except (OSError, ValueError):
        return None
    return usage - int(stat.get("total_inactive_file", 0))


def main() -> int:
    client = docker.from_env()
    total, rows = 0, []
    for c in sorted(client.containers.list(filters={"label": "theprotocol.lab"}), key=lambda c: c.name):
        mem = working_set(c.id)
        nested = 0
        if c.labels.get("theprotocol.lab.role") == "host":
            res = c.exec_run(["sh", "-c", "command -v docker >/dev/null && docker ps -q --no-trunc"])
            for cid in res.output.decode().split() if res.exit_code == 0 else []:
                nested += working_set(cid) or 0
        rows.append((c.name, mem or 0, nested))
        total += (mem or 0) + nested
    for name, mem, nested in rows:
        print(f"{name:22} {mem / 2**20:8.1f} MiB" + (f"   + stack containers {nested / 2**20:8.1f} MiB" if nested else ""))
    print(f"{'total':22} {total / 2**20:8.1f} MiB ({len(rows)} lab containers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
