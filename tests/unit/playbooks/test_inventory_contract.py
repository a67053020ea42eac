"""Issue 16: one inventory contract. Every theprotocol_* input is read in playbooks/vars/theprotocol_inputs.yml
only, with one default, every play loads it, and README.md documents each input with that default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
PLAYBOOKS = REPO / "playbooks"
CONTRACT_FILE = PLAYBOOKS / "vars" / "theprotocol_inputs.yml"
CONTRACT = yaml.safe_load(CONTRACT_FILE.read_text()) if CONTRACT_FILE.exists() else {}
PLAYBOOK_FILES = sorted(PLAYBOOKS.glob("*.yml"))
# Names with the prefix that are not inventory inputs: groups, the targeting fact, the preflight's
# own variables, the onboarding loop variable, private (theprotocol__*) facts of the task files.
NOT_INPUTS = re.compile(r"^theprotocol_(registries|frame|targeted|preflight_roles|preflight_files|onboarded_host|inputs|_.*)$")
INPUT_RE = re.compile(r"(?<![A-Za-z0-9_.\[])theprotocol_[a-z0-9_]+")


def _inputs_read_in(text: str) -> set[str]:
    """Inputs the text reads (a message that tells the user to pass ``-e theprotocol_x=...`` reads nothing)."""
    return {m.group(0) for m in INPUT_RE.finditer(text)
            if not NOT_INPUTS.match(m.group(0)) and not text[:m.start()].endswith("-e ")}


def _code(path: Path) -> str:
    """The file without its comments (the headers name the inputs they take)."""
    return "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))


def _readme_rows() -> dict[str, str]:
    """input -> default cell of the README's inventory contract table."""
    rows = {}
    for line in (REPO / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`theprotocol_"):
            for name in re.findall(r"`(theprotocol_[a-z0-9_]+)`", cells[0]):
                rows[name] = cells[1]
    return rows


def test_the_contract_exists_and_maps_inputs():
    assert CONTRACT, CONTRACT_FILE
    assert any(not k.startswith("_") for k in CONTRACT), "the contract maps no role variable"


@pytest.mark.parametrize("path", PLAYBOOK_FILES + sorted((PLAYBOOKS / "tasks").glob("*.yml")), ids=lambda p: p.name)
def test_no_playbook_reads_an_input_itself(path):
    read = _inputs_read_in(_code(path))
    assert not read, f"{path.name} reads {sorted(read)} itself: read it in vars/theprotocol_inputs.yml"


@pytest.mark.parametrize("path", PLAYBOOK_FILES, ids=lambda p: p.name)
def test_every_play_loads_the_contract(path):
    for play in yaml.safe_load(path.read_text()):
        assert "vars/theprotocol_inputs.yml" in (play.get("vars_files") or []), f"{path.name}: {play['name']}"


def test_each_input_is_read_once_with_one_default():
    readers = {}
    for name, value in CONTRACT.items():
        for match in re.finditer(r"(?<![A-Za-z0-9_.\[])(theprotocol_[a-z0-9_]+)(\s*\|\s*default\(([^)]*)\))?", str(value)):
            if not NOT_INPUTS.match(match.group(1)):
                readers.setdefault(match.group(1), []).append((name, match.group(3)))
    # theprotocol_serial: two play keywords with their own defaults (rotate_secrets rolls one registry at a time).
    special = {"theprotocol_serial": 2}
    for inp, uses in readers.items():
        assert len(uses) == special.get(inp, 1), f"{inp} is read {len(uses)} times: {uses}"
        assert all(name.startswith("_theprotocol_") or name.startswith("operator_onboarding_") for name, dummy in uses), uses


def test_the_readme_documents_every_input_with_its_default():
    rows = _readme_rows()
    read = _inputs_read_in(CONTRACT_FILE.read_text())
    assert sorted(rows) == sorted(read), "README inventory contract table and vars/theprotocol_inputs.yml differ"
    for name in read:
        resolved = CONTRACT.get("_" + name, "")
        default = re.search(r"default\(([^,)]*)", resolved)
        if default is None:
            assert "required" in rows[name], (name, rows[name])
            continue
        literal = default.group(1).strip()
        if "~" in literal:  # computed (the stack dir)
            continue
        shown = {"''": '""', "[]": "[]"}.get(literal, literal.strip("'"))
        assert shown in rows[name], f"{name}: the contract's default {literal} is not the README's {rows[name]}"


@pytest.mark.parametrize("suffix,source", [
    ("federation_port", "_theprotocol_federation_port"),
    ("trust_domain", "_theprotocol_trust_domain"),
    ("cert_writer_interval", "_theprotocol_cert_writer_interval"),
])
def test_every_role_reads_the_same_input(suffix, source):
    mapped = {k: v for k, v in CONTRACT.items() if not k.startswith("_") and k.endswith("_" + suffix)}
    assert len(mapped) >= 3, mapped
    for name, value in mapped.items():
        assert value == "{{ %s }}" % source, (name, value)


def test_the_stack_dir_is_one_input_for_every_role():
    for name in ("operator_stack_dir", "security_checklist_stack_dir", "secret_rotation_dir", "incident_response_stack_dir"):
        assert CONTRACT[name] == "{{ _theprotocol_stack_dir }}", name


# The roles stay usable on their own, so each keeps its own defaults; the contract's default of an input is
# the default of every role variable it feeds. Checked here, so that the two cannot drift.
_INPUT_DEFAULT_RE = re.compile(r"\{\{ theprotocol_\w+ \| default\((?P<default>.*?)(?:, true)?\)(?: \| bool)? \}\}")
# The stack directory: the contract writes it as '/opt/theprotocol/' ~ <registry name>, the roles as
# /opt/theprotocol/{{ <role>_registry_name }} or '' (computed at run time the same way).
_SAME_STACK_DIR = re.compile(r"^(/opt/theprotocol/\{\{ \w+_registry_name \}\}|)$")


def _role_defaults() -> dict:
    out = {}
    for path in sorted((REPO / "roles").glob("*/defaults/main.yml")):
        out.update(yaml.safe_load(path.read_text()) or {})
    return out


def test_each_input_default_is_the_default_of_the_role_variables_it_feeds():
    defaults = _role_defaults()
    input_defaults = {}
    for name, value in CONTRACT.items():
        match = _INPUT_DEFAULT_RE.fullmatch(str(value))
        if name.startswith("_theprotocol_") and match:
            input_defaults[name] = match.group("default")
    checked = 0
    for name, value in CONTRACT.items():
        feed = re.fullmatch(r"\{\{ (_theprotocol_\w+) \}\}", str(value))
        if not feed or feed.group(1) not in input_defaults or name not in defaults:
            continue
        source, default = feed.group(1), input_defaults[feed.group(1)]
        if source == "_theprotocol_stack_dir":
            assert default == "'/opt/theprotocol/' ~ _theprotocol_registry_name", default
            assert _SAME_STACK_DIR.match(str(defaults[name])), (name, defaults[name])
        else:
            assert yaml.safe_load(default) == defaults[name], \
                f"{source} defaults to {default}, {name} (roles/*/defaults/main.yml) to {defaults[name]!r}"
        checked += 1
    assert checked >= 20, checked
