"""The Molecule scenarios (molecule/<scenario>, one per role), each `molecule test` on a lab host
container of its own (molecule-<scenario>) attached to the running lab. They run inside the
integration schedule, each its own xdist group and collected last (conftest.py), so that they use
the workers the long modules leave idle instead of running one after the other after them.
`make molecule` runs them alone, in sequence."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from conftest import REPO

SCENARIOS = sorted(p.name for p in (REPO / "molecule").iterdir() if (p / "molecule.yml").is_file())


@pytest.mark.parametrize("scenario", [pytest.param(s, marks=pytest.mark.xdist_group(f"molecule-{s}"))
                                      for s in SCENARIOS])
def test_molecule_scenario(lab, scenario, tmp_path):
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
    for step in ("converge", "verify"):
        assert f"{scenario} ➜ {step}: Executed: Successful" in text, (step, text[-4000:])
