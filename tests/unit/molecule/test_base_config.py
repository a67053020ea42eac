"""The Molecule scenarios share one base config, .config/molecule/config.yml.

Molecule deep-merges each scenario's molecule.yml over the base config: mappings key by key, any
other value (a list too) replaces the base config's as a whole. A scenario that wrote its own
``platforms`` would therefore lose the lab host's capabilities, cgroup, volumes and network. Each
scenario's config is loaded the way Molecule loads it - with Molecule's own ``Config`` when Molecule
is installed (``make unit``; in a subprocess, so that Molecule's imports leave this process alone),
else with its merge re-implemented (``ansible-test units``, which installs no Molecule) - and checked
for everything the scenarios share. Also: every role has a scenario, every scenario has its
integration test module, and the scenarios that onboard an operator on the shared lab frame use
names of their own.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import string
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# ansible-test units installs no Molecule: the documented merge below, alone.
# The molecule/ directory of the collection is importable as a namespace package under ansible-test
# units (the collection root is on sys.path): only a spec with an origin is Molecule itself.
_MOLECULE_SPEC = importlib.util.find_spec("molecule")
HAVE_MOLECULE = _MOLECULE_SPEC is not None and _MOLECULE_SPEC.origin not in (None, "namespace")

REPO = Path(__file__).resolve().parents[3]
BASE = REPO / ".config" / "molecule" / "config.yml"
MOLECULE_DIR = REPO / "molecule"
SCENARIOS = sorted(p.name for p in MOLECULE_DIR.iterdir() if (p / "molecule.yml").is_file()) if MOLECULE_DIR.is_dir() else []

# The base config's test sequence but these steps: the rotation gives the secrets new values on every run
# (no idempotence), the onboarding runs on the lab frame only (nothing to prepare).
LEFT_OUT = {"rotation": ["idempotence"], "operator_onboarding": ["prepare"]}
FRAME = {"ansible_host": "lab-spire-server", "ansible_connection": "community.docker.docker",
         "ansible_python_interpreter": "/usr/bin/python3"}


def merge_dicts(a, b):
    """Molecule's ``util.merge_dicts`` (Ansible's ``combine(recursive=True)``): b over a, recursively for
    mappings; any other value of b, lists included, replaces a's."""
    result = copy.deepcopy(a)
    for key, b_value in b.items():
        a_value = a.get(key)
        if isinstance(a_value, dict) and isinstance(b_value, dict):
            result[key] = merge_dicts(a_value, b_value)
        else:
            result[key] = b_value
    return result


def documented_load(scenario):
    """The base config, then the scenario's molecule.yml, each interpolated (``${MOLECULE_SCENARIO_NAME}``)
    and merged in that order, as Molecule's ``Config._combine`` does (its defaults left out)."""
    merged = {}
    for path in (BASE, MOLECULE_DIR / scenario / "molecule.yml"):
        text = string.Template(path.read_text()).safe_substitute(MOLECULE_SCENARIO_NAME=scenario)
        merged = merge_dicts(merged, yaml.safe_load(text) or {})
    merged.setdefault("scenario", {}).setdefault("name", scenario)
    return merged


# Run by molecule_load() in a subprocess: argv[1] the base config, argv[2] a directory for the scenarios'
# state files (not the cache a real run uses), argv[3:] the scenarios' molecule.yml.
MOLECULE_LOADER = """
import json, os, sys
from molecule import config, util
base, ephemeral, files = sys.argv[1], sys.argv[2], sys.argv[3:]
found = util.lookup_config_file(".config/molecule/config.yml")
out = {"found": found, "scenarios": {}}
for path in files:
    scenario = os.path.basename(os.path.dirname(path))
    os.environ["MOLECULE_EPHEMERAL_DIRECTORY"] = os.path.join(ephemeral, scenario)
    cfg = config.Config(molecule_file=path, args={"base_config": [found]}, command_args={"subcommand": "test"})
    out["scenarios"][scenario] = [cfg.config_data, [p["name"] for p in cfg.platforms.instances]]
with open(base) as stream:
    shared = util.safe_load(stream.read())
out["list_merge"] = util.merge_dicts(shared, {"platforms": [{"name": "molecule-x"}]})["platforms"]
print(json.dumps(out))
"""


def molecule_load(ephemeral):
    """The configs Molecule runs ``molecule test -s <scenario>`` with: its ``Config`` over each scenario's
    molecule.yml and the base config that Molecule's own lookup finds from the repository root."""
    env = dict(os.environ)
    # Molecule asks ansible-config (next to this Python in the virtualenv) for Ansible's settings.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.pop("MOLECULE_PROJECT_DIRECTORY", None)
    files = [str(MOLECULE_DIR / scenario / "molecule.yml") for scenario in SCENARIOS]
    proc = subprocess.run([sys.executable, "-c", MOLECULE_LOADER, str(BASE), str(ephemeral)] + files, cwd=str(REPO),
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["found"] and Path(out["found"]).resolve() == BASE.resolve(), out["found"]
    return out


@pytest.fixture(scope="module")
def molecule_out(tmp_path_factory):
    return molecule_load(tmp_path_factory.mktemp("molecule")) if HAVE_MOLECULE else None


@pytest.fixture(scope="module")
def loaded(molecule_out):
    """scenario -> (merged config, instance names)."""
    if molecule_out is not None:
        return dict((scenario, tuple(value)) for scenario, value in molecule_out["scenarios"].items())
    out = {}
    for scenario in SCENARIOS:
        data = documented_load(scenario)
        out[scenario] = data, [p["name"] for p in data.get("platforms", [])]
    return out


def base():
    return yaml.safe_load(BASE.read_text())


def test_there_are_scenarios():
    assert BASE.is_file()
    assert len(SCENARIOS) >= 7, SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_merged_platform_keeps_the_lab_host(loaded, scenario):
    data, instances = loaded[scenario]
    shared = base()["platforms"][0]
    name = "molecule-" + scenario
    assert instances == [name]
    assert len(data["platforms"]) == 1
    platform = data["platforms"][0]
    assert platform["name"] == name
    assert platform["image"] == "theprotocol-lab/host:lab"
    assert platform["pre_build_image"] is True and platform["pull"] is False
    assert platform["command"] == "/lib/systemd/systemd" and platform["override_command"] is True
    assert platform["cgroupns_mode"] == "host"
    # Every capability but SYS_RESOURCE (and those Debian's Docker 20.10 does not know), as in the base config.
    assert platform["capabilities"] == shared["capabilities"]
    assert len(platform["capabilities"]) == 37 and len(set(platform["capabilities"])) == 37
    assert "SYS_ADMIN" in platform["capabilities"]
    assert not {"SYS_RESOURCE", "PERFMON", "BPF", "CHECKPOINT_RESTORE"} & set(platform["capabilities"])
    assert platform["security_opts"] == ["seccomp=unconfined", "apparmor=unconfined"]
    assert platform["volumes"] == ["/sys/fs/cgroup:/sys/fs/cgroup:rw", "/var/lib/docker"]
    assert platform["tmpfs"] == ["/run", "/run/lock"]
    assert platform["stop_signal"] == "SIGRTMIN+3"
    assert platform["networks"] == [{"name": "theprotocol-lab"}]
    assert platform["keep_volumes"] is False
    assert platform["groups"] == ["molecule"]
    # A host name systemd keeps as it is (letters, digits and '-'): the scenario names have '_'.
    assert re.match(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z", platform["hostname"]), platform["hostname"]
    assert data["driver"]["name"] == "docker"
    assert data["dependency"]["enabled"] is False
    assert data["verifier"]["name"] == "ansible"
    assert data["scenario"]["name"] == scenario


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_merged_inventory_has_the_frame_and_the_instance_python(loaded, scenario):
    data, dummy = loaded[scenario]
    inventory = data["provisioner"]["inventory"]
    assert inventory["hosts"]["all"]["children"]["theprotocol_frame"]["hosts"] == {"frame": FRAME}
    assert inventory["host_vars"]["molecule-" + scenario] == {"ansible_python_interpreter": "/usr/bin/python3"}
    assert set(inventory["host_vars"]) == {"molecule-" + scenario}
    lab = inventory["group_vars"]["all"]
    assert "lab/state/lab.json" in lab["molecule_lab"]
    assert "molecule_onboarding_dir" in lab
    # Molecule moves provisioner.config_options to ansible.cfg; the re-implementation keeps it in place.
    cfg = data.get("ansible", {}).get("cfg") or data["provisioner"]["config_options"]
    assert cfg["defaults"] == {"interpreter_python": "auto_silent", "stdout_callback": "ansible.builtin.default",
                               "callback_result_format": "yaml"}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_test_sequence(loaded, scenario):
    sequence = loaded[scenario][0]["scenario"]["test_sequence"]
    full = base()["scenario"]["test_sequence"]
    assert full == ["dependency", "destroy", "create", "prepare", "converge", "idempotence", "verify", "destroy"]
    assert sequence == [step for step in full if step not in LEFT_OUT.get(scenario, [])]


def test_scenarios_leave_the_platform_to_the_base_config(molecule_out):
    """A list is replaced, not merged: a scenario's ``platforms`` would drop every shared setting."""
    merged = merge_dicts(base(), {"platforms": [{"name": "molecule-x"}]})
    assert merged["platforms"] == [{"name": "molecule-x"}]
    if molecule_out is not None:
        assert molecule_out["list_merge"] == [{"name": "molecule-x"}]
    for scenario in SCENARIOS:
        own = yaml.safe_load((MOLECULE_DIR / scenario / "molecule.yml").read_text()) or {}
        assert "platforms" not in own, scenario
        assert set(own) <= {"provisioner", "scenario"}, (scenario, sorted(own))


def test_instance_names_are_unique(loaded):
    names = [n for scenario in SCENARIOS for n in loaded[scenario][1]]
    assert len(names) == len(set(names)) == len(SCENARIOS)
    assert not [n for n in names if "$" in n or "{" in n]


@pytest.mark.skipif(not HAVE_MOLECULE, reason="Molecule is not installed (ansible-test units)")
def test_documented_merge_agrees_with_molecule(loaded):
    for scenario in SCENARIOS:
        data, dummy = loaded[scenario]
        mine = documented_load(scenario)
        assert mine["platforms"] == data["platforms"], scenario
        for key in ("hosts", "host_vars", "group_vars"):
            assert mine["provisioner"]["inventory"][key] == data["provisioner"]["inventory"][key], (scenario, key)
        assert mine["scenario"]["test_sequence"] == data["scenario"]["test_sequence"], scenario


def _plays(path):
    """The plays of a playbook, with those of its import_playbook entries (paths relative to it)."""
    for entry in yaml.safe_load(path.read_text()) or []:
        target = entry.get("ansible.builtin.import_playbook") or entry.get("import_playbook")
        if target:
            yield from _plays((path.parent / target).resolve())
        else:
            yield entry


def _roles(play):
    return [r["role"] if isinstance(r, dict) else r for r in play.get("roles", [])]


def test_every_role_has_a_scenario_that_converges_it():
    converged = {}
    for scenario in SCENARIOS:
        for play in _plays(MOLECULE_DIR / scenario / "converge.yml"):
            for role in _roles(play):
                converged.setdefault(role.split(".")[-1], []).append(scenario)
    roles = sorted(p.name for p in (REPO / "roles").iterdir() if (p / "tasks" / "main.yml").is_file())
    assert roles
    assert [r for r in roles if r not in converged] == []


def test_every_scenario_has_its_integration_module():
    """tests/integration/conftest.py refuses to start without them; this says so before the lab is up."""
    for scenario in SCENARIOS:
        module = REPO / "tests" / "integration" / ("test_molecule_%s.py" % scenario)
        assert module.is_file(), module
        assert 'molecule_test("%s", tmp_path)' % scenario in module.read_text()


def test_scenarios_on_the_lab_frame_onboard_operators_of_their_own(loaded):
    """The scenarios run in parallel against one SPIRE server: each operator (its entries) and registry
    (the compose project its workload entry selects) belongs to one scenario."""
    operators, registries = {}, {}
    for scenario in SCENARIOS:
        group = loaded[scenario][0]["provisioner"]["inventory"]["group_vars"]["all"]
        uses_frame = any(play.get("hosts") == "theprotocol_frame" for name in ("prepare.yml", "converge.yml")
                         if (MOLECULE_DIR / scenario / name).is_file()
                         for play in _plays(MOLECULE_DIR / scenario / name))
        if not uses_frame:
            assert "molecule_operator" not in group, scenario
            continue
        operator, registry = group["molecule_operator"], group["molecule_registry"]
        # operator_onboarding's rules: an RFC 1123 label of at most 55 characters; a compose project name.
        assert re.match(r"^[a-z0-9]([a-z0-9-]{0,53}[a-z0-9])?\Z", operator), operator
        assert registry == operator + "-registry"
        assert operator not in operators, (scenario, operators)
        operators[operator], registries[registry] = scenario, scenario
    assert len(operators) >= 5, operators
