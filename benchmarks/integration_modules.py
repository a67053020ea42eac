#!/usr/bin/env python3
"""Minutes per integration test module, longest first, from the JUnit XML that `make integration` writes
(.build/integration-junit.xml): the figures behind LONGEST_FIRST in tests/integration/conftest.py; then
the slowest tests (20, or the number given with --tests N).

    .venv/bin/python benchmarks/integration_modules.py [--tests N] [path/to/integration-junit.xml]

The sum per module is the time its worker spent on it (its fixtures included), which is what the
schedule hands out; the run's wall time is printed too."""

from __future__ import annotations

import collections
import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def main(argv: list[str]) -> int:
    args = list(argv[1:])
    slowest = 20
    if "--tests" in args:
        i = args.index("--tests")
        slowest = int(args[i + 1])
        del args[i:i + 2]
    path = Path(args[0] if args else Path(__file__).resolve().parents[1] / ".build" / "integration-junit.xml")
    if not path.is_file():
        print(f"{path}: no such file; run make integration first", file=sys.stderr)
        return 2
    root = ET.parse(path).getroot()
    per_module: dict[str, float] = collections.defaultdict(float)
    per_test: list[tuple[float, str]] = []
    for case in root.iter("testcase"):
        module = case.get("classname", "").split(".")[-1] + ".py"
        seconds = float(case.get("time") or 0)
        per_module[module] += seconds
        per_test.append((seconds, f"{module}::{case.get('name')}"))
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    print(f"{'module':48} minutes")
    for module, seconds in sorted(per_module.items(), key=lambda kv: -kv[1]):
        print(f"{module:48} {seconds / 60:7.1f}")
    if suite is not None and suite.get("time"):
        print(f"{'wall time of the run':48} {float(suite.get('time')) / 60:7.1f}")
    print(f"\n{'test (its setup included)':96} seconds")
    for seconds, name in sorted(per_test, reverse=True)[:slowest]:
        print(f"{name:96} {seconds:7.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
