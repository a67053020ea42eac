"""Every role's meta/argument_specs.yml matches its defaults/main.yml: the same variables,
the same defaults, every variable prefixed with the role name."""

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[3] / "roles"
ROLE_DIRS = sorted(p for p in ROLES.iterdir() if (p / "meta" / "argument_specs.yml").exists()) if ROLES.exists() else []


@pytest.mark.parametrize("role", ROLE_DIRS, ids=[p.name for p in ROLE_DIRS])
def test_argument_specs_match_defaults(role):
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
    defaults_file = role / "defaults" / "main.yml"
    defaults = (yaml.safe_load(defaults_file.read_text()) or {}) if defaults_file.exists() else {}
    for name in list(specs) + list(defaults):
        assert name.startswith(f"{role.name}_"), f"{role.name}: {name} is not prefixed with the role name"
    assert sorted(defaults) == sorted(n for n, s in specs.items() if "default" in s), \
        f"{role.name}: defaults/main.yml and argument_specs defaults differ"
    for name, value in defaults.items():
        assert specs[name]["default"] == value, f"{role.name}: default of {name} differs"
        assert not specs[name].get("required"), f"{role.name}: {name} is required but has a default"
    for name, spec in specs.items():
        assert spec.get("description"), f"{role.name}: {name} has no description"


def test_there_are_roles_to_check():
    assert ROLE_DIRS, "no role with meta/argument_specs.yml found"
