#!/usr/bin/env python3
"""Minutes per integration test module, longest first, from the JUnit XML that `make integration` writes
(.build/integration-junit.xml): the figures behind LONGEST_FIRST in tests/integration/conftest.py.

    .venv/bin/python benchmarks/integration_modules.py [path/to/integration-junit.xml]

The sum per module is the time its worker spent on it (its fixtures included), which is what the
schedule hands out; the run's wall time is printed too."""

from __future__ import annotations

import collections
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else Path(__file__).resolve().parents[1] / ".build" / "integration-junit.xml")
    if not path.is_file():
        print(f"{path}: no such file; run make integration first", file=sys.stderr)
        return 2
    root = ET.parse(path).getroot()
    per_module: dict[str, float] = collections.defaultdict(float)
    for case in root.iter("testcase"):
        module = case.get("classname", "").split(".")[-1] + ".py"
        per_module[module] += float(case.get("time") or 0)
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    print(f"{'module':48} minutes")
    for module, seconds in sorted(per_module.items(), key=lambda kv: -kv[1]):
        print(f"{module:48} {seconds / 60:7.1f}")
    if suite is not None and suite.get("time"):
        print(f"{'wall time of the run':48} {float(suite.get('time')) / 60:7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
