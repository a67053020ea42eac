"""One internal-variable convention for every role (CONTRIBUTING.md, "Role variables"): inputs are
`<role>_<name>` (defaults/main.yml and meta/argument_specs.yml, test_argument_specs.py); everything a role
registers, sets or derives for itself (register:, set_fact:, vars/main.yml) is `_<role>_<name>`; a fact
a role leaves for its caller is `<role>_<name>` and named in the role's README."""

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[3] / "roles"
ROLE_DIRS = sorted(p for p in ROLES.iterdir() if (p / "tasks").is_dir()) if ROLES.exists() else []


def _tasks(node):
    """Every task of a task file, blocks, rescue and always included."""
    for task in node or []:
        if not isinstance(task, dict):
            continue
        yield task
        for key in ("block", "rescue", "always"):
            yield from _tasks(task.get(key))


def names_set_by(role):
    """(name, where) for every variable the role registers, sets with set_fact, or defines in vars/main.yml."""
    out = []
    for path in sorted((role / "tasks").glob("*.yml")) + sorted((role / "handlers").glob("*.yml")):
        for task in _tasks(yaml.safe_load(path.read_text())):
            if task.get("register"):
                out.append((task["register"], f"{path.name}: register"))
            facts = task.get("ansible.builtin.set_fact") or task.get("set_fact")
            if isinstance(facts, dict):
                out.extend((name, f"{path.name}: set_fact") for name in facts if name != "cacheable")
    varfile = role / "vars" / "main.yml"
    if varfile.exists():
        out.extend((name, "vars/main.yml") for name in yaml.safe_load(varfile.read_text()) or {})
    return out


@pytest.mark.parametrize("role", ROLE_DIRS, ids=[p.name for p in ROLE_DIRS])
def test_internal_variables_are_underscore_role_prefixed(role):
    readme = (role / "README.md").read_text() if (role / "README.md").exists() else ""
    wrong = [(name, where) for name, where in names_set_by(role)
             if not name.startswith(f"_{role.name}_")
             and not (name.startswith(f"{role.name}_") and f"`{name}`" in readme)]
    assert not wrong, f"{role.name}: internal variables must be _{role.name}_<name> (or a fact the README names): {wrong}"


def test_every_role_sets_something():
    assert all(names_set_by(role) for role in ROLE_DIRS)


def test_the_checklist_reports_read_the_variable_the_role_registers():
    """checklist_report reads each host's result by name (result_var): the name evaluate.yml registers."""
    role = ROLES / "security_checklist"
    registered = {task["register"] for task in _tasks(yaml.safe_load((role / "tasks" / "evaluate.yml").read_text()))
                  if task.get("register")}
    reports = [task for task in _tasks(yaml.safe_load((role / "tasks" / "reports.yml").read_text()))
               if "theprotocol.operator.checklist_report" in task]
    assert reports and all(task["theprotocol.operator.checklist_report"].get("result_var") in registered
                           for task in reports), (registered, reports)
