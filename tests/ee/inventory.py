"""Write the inventory an execution environment gets for one lab host, from lab/state/inventory.yml.

Inside the EE nothing of this machine's file system exists: the SSH key reaches the run as
ansible-runner's env/ssh_key (ssh-agent, as AWX injects a machine credential), so the host's
`ansible_ssh_private_key_file` and the paths on this machine (lab/state: frame CA, onboarding
material; *_controller_path: site.yml inputs that verify.yml does not read) are left out. The host keeps its
connection (ssh as `operator`, ansible_become: true).

    python3 tests/ee/inventory.py LAB_INVENTORY HOST OUT
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml


def main(src: str, host: str, out: str) -> int:
    inv = yaml.safe_load(open(src, encoding="utf-8"))["all"]
    group = next((name for name, g in inv.get("children", {}).items() if host in (g.get("hosts") or {})), None)
    if group is None:
        print(f"ee: {host} is not in {src}: make lab-up LAB_HOSTS=8", file=sys.stderr)
        return 2
    hostvars = dict(inv["children"][group]["hosts"][host])
    if hostvars.get("ansible_connection") != "ssh":
        print(f"ee: {host} is not reached over SSH in {src} (the EE reaches hosts over the network only)", file=sys.stderr)
        return 2

    repo = str(Path(src).resolve().parents[2])  # lab/state/inventory.yml

    def portable(key, value):
        return not (key == "ansible_ssh_private_key_file" or key.endswith("_controller_path")
                    or (isinstance(value, str) and value.startswith(repo)))

    out_inv = {"all": {
        "vars": {k: v for k, v in inv.get("vars", {}).items() if portable(k, v)},
        "children": {group: {"hosts": {host: {k: v for k, v in hostvars.items() if portable(k, v)}}}},
    }}
    with open(out, "w", encoding="utf-8") as f:
        f.write("---\n# Written by tests/ee/inventory.py from the lab inventory (no paths of this machine).\n")
        yaml.safe_dump(out_inv, f, sort_keys=False)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
