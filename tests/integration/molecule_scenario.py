"""`molecule test -s <scenario>` for the test modules test_molecule_<scenario>.py: each Molecule
scenario (molecule/<scenario>, one per role) on a lab host container of its own
(molecule-<scenario>) attached to the running lab. A module per scenario, collected last
(conftest.py), so that the scenarios run in parallel on the workers the long modules leave idle
instead of one after the other after them. `make molecule` runs them alone, in sequence."""

from __future__ import annotations

import os
import re
import subprocess
import time

from conftest import REPO


def molecule_test(scenario: str, tmp_path) -> None:
    venv_bin = REPO / ".venv" / "bin"
    env = dict(os.environ, PATH=f"{venv_bin}:{os.environ.get('PATH', '')}",
               ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "collections"), ANSIBLE_FORCE_COLOR="0", NO_COLOR="1")
    log = tmp_path / f"molecule-{scenario}.log"
    started = time.monotonic()
    with open(log, "w") as out:
        rc = subprocess.run([str(venv_bin / "molecule"), "test", "-s", scenario], cwd=REPO, env=env,
                            stdout=out, stderr=subprocess.STDOUT, timeout=2400, check=False).returncode
    text = re.sub(r"\x1b\[[0-9;]*m", "", log.read_text())
    print(f"\nmolecule test -s {scenario}: rc {rc} in {time.monotonic() - started:.0f}s")
    assert rc == 0, f"molecule test -s {scenario} failed (rc {rc}):\n{text[-8000:]}"
    # The steps that test something ran and succeeded (a scenario that skips its converge is no test).
    # Molecule's summary: "<scenario> > <step>: Executed: Successful" ("➜" when it writes colour).
    for step in ("converge", "verify"):
        assert re.search(rf"^{scenario} (>|➜) {step}: Executed: Successful", text, re.M), (step, text[-4000:])
