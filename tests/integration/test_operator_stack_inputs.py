"""Issue 3: every preflight rejection gives a clear message and leaves the host untouched;
--check on a fresh host reports changes and makes none. Issue 16: site.yml's preflight play stops
a bad input of a later role before Docker is installed, refuses a registry name that the frame did
not register, and --check shows the stack on the federation port and in the stack directory of the
inventory contract. Runs against lab host2, which no test deploys to."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

import labpki
import yaml
from conftest import STATE, failure_messages, recap, run_playbook, server_cli, sh

# Lab host of this module: host2. make integration runs modules in parallel (one worker per
# module); modules that share a host must not disturb each other.

TARGET = "host2"
NAME = "preflightreg"
# What a run may not change on the fresh host: /opt itself (mode, owner, mtime: an entry made and removed
# shows), its entries, /etc/docker, docker.io; not `ls -la /opt`, whose ".." line is / itself, changed by
# test_operator_onboarding's agent on this host.
PROBE = "stat -c '%n %a %U %Y' /opt; ls -A /opt; ls -la /etc/docker 2>&1; dpkg -l docker.io 2>&1 | tail -1"
PREFLIGHT_STOP = "Stop the run when this host has a problem (nothing was changed on any host)"


def _pem(obj) -> str:
    if hasattr(obj, "public_bytes"):
        return obj.public_bytes(serialization.Encoding.PEM).decode()
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture(scope="module")
def target(dkr, lab):
    if TARGET not in lab["hosts"]:
        pytest.fail("these tests need LAB_HOSTS >= 2 (make integration sets it)")
    return dkr.containers.get(lab["hosts"][TARGET]["container"])


@pytest.fixture(scope="module")
def good_inputs(lab):
    ca = labpki.load_cert(lab["frame_ca_cert"])
    ca_key = labpki.load_key(lab["frame_ca_key"])
    cert, key = labpki.issue_x509pop(ca, ca_key, "operator-preflight", days=30)
    return {
        "operator_stack_operator_name": "preflight",
        "operator_stack_registry_name": NAME,
        "operator_stack_registry_did": "did:web:preflight.lab.example.com",
        "operator_stack_spire_server_address": lab["spire_server"]["address"],
        "operator_stack_x509pop_cert": _pem(cert),
        "operator_stack_x509pop_key": _pem(key),
        "operator_stack_trust_bundle": Path(lab["bundle"]).read_text(),
        "operator_stack_images": {k.replace("-", "_"): v for k, v in lab["image_registry"]["images"].items()},
        "_ca": (ca, ca_key),
    }


def _run(tmp_path, inputs, *args):
    data = {k: v for k, v in inputs.items() if not k.startswith("_")}
    f = tmp_path / "vars.json"
    f.write_text(json.dumps(data))
    return run_playbook("tests/integration/playbooks/operator_stack_only.yml", "-l", TARGET, "-e", f"@{f}", *args)


def _cases(good):
    ca, ca_key = good["_ca"]
    now = dt.datetime.now(dt.timezone.utc)
    other_cert, other_key = labpki.issue_x509pop(ca, ca_key, "operator-other")
    expired, expired_key = labpki.issue_x509pop(ca, ca_key, "operator-old", not_before=now - dt.timedelta(days=10),
                                                not_after=now - dt.timedelta(days=1))
    no_ds, no_ds_key = labpki.issue_x509pop(ca, ca_key, "operator-nods", digital_signature=False)
    return {
        "operator name not a DNS label": ({"operator_stack_operator_name": "Bad_Name!"}, "RFC 1123 label"),
        "cert does not match key": ({"operator_stack_x509pop_key": _pem(other_key)}, "does not belong to the x509pop certificate"),
        "cert without digitalSignature": ({"operator_stack_x509pop_cert": _pem(no_ds),
                                           "operator_stack_x509pop_key": _pem(no_ds_key)}, "digitalSignature"),
        "cert expired": ({"operator_stack_x509pop_cert": _pem(expired),
                          "operator_stack_x509pop_key": _pem(expired_key)}, "expired"),
        "bundle unparsable": ({"operator_stack_trust_bundle": "-----BEGIN CERTIFICATE-----\nnot base64\n"
                                                              "-----END CERTIFICATE-----\n"}, "bundle"),
        "trust domain mismatch": ({"operator_stack_trust_domain": "other.example.org"}, "trust domain"),
        "minting enabled": ({"operator_stack_minting_authority": "enabled"}, "MINTING_AUTHORITY"),
        "mtls not required": ({"operator_stack_eventstore_mtls_required": "false"}, "EVENTSTORE_MTLS_REQUIRED"),
        "minting enabled via env settings": ({"operator_stack_env_settings": {"MINTING_AUTHORITY": "enabled"}},
                                             "MINTING_AUTHORITY"),
        # Issue 12: hostile inputs (newline-suffixed names, HCL and YAML metacharacters, bad image
        # references, a URL with a token), each named in the message.
        "operator name with a trailing newline": ({"operator_stack_operator_name": "preflight\n"}, "'preflight\\n'"),
        "env key with a trailing newline": ({"operator_stack_env_settings": {"FOO\n": "x"}}, "'FOO\\n'"),
        "SPIRE address with HCL metacharacters": (
            {"operator_stack_spire_server_address": 'spire"}\nplugins # x'},
            "spire_server_address 'spire\"}\\nplugins # x'"),
        "image with YAML injected": (
            {"operator_stack_images": {**good["operator_stack_images"], "registry": "registry:lab\n    privileged: true"}},
            "images.registry 'registry:lab\\n    privileged: true'"),
        "bind address with a port": ({"operator_stack_federation_bind_address": "0.0.0.0:22"},
                                     "federation_bind_address '0.0.0.0:22'"),
        "EventStore URL with a token": ({"operator_stack_eventstore_url":
                                         "https://ops:hostile-token-12@lab-eventstore:8443/api/v1/events/"},
                                        "eventstore_url 'https://<credentials>@lab-eventstore:8443/api/v1/events/'"),
    }


CASE_NAMES = ["operator name not a DNS label", "cert does not match key", "cert without digitalSignature",
              "cert expired", "bundle unparsable", "trust domain mismatch", "minting enabled",
              "mtls not required", "minting enabled via env settings",
              "operator name with a trailing newline", "env key with a trailing newline",
              "SPIRE address with HCL metacharacters", "image with YAML injected", "bind address with a port",
              "EventStore URL with a token"]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_preflight_rejects_bad_input_before_touching_the_host(tmp_path, target, good_inputs, case):
    change, words = _cases(good_inputs)[case]
    rc, result = _run(tmp_path, {**good_inputs, **change})
    assert rc != 0, f"{case}: the role accepted bad input"
    msgs = " | ".join(failure_messages(result))
    assert words.lower() in msgs.lower(), f"{case}: unclear message: {msgs}"
    assert "hostile-token-12" not in json.dumps(result), "the token of the URL is in the output"
    assert recap(result)[TARGET]["changed"] == 0
    code = sh(target, ["test", "-e", f"/opt/theprotocol/{NAME}"], check=False)[0]
    assert code != 0, f"{case}: the host was touched"
    key_lines = [ln for ln in good_inputs["operator_stack_x509pop_key"].splitlines() if "PRIVATE" not in ln]
    assert not any(ln in json.dumps(result) for ln in key_lines), "key material in the output"


def test_check_mode_on_fresh_host_reports_changes_and_makes_none(tmp_path, target, good_inputs):
    # The frame onboards the target's operator (for real); then the registry host is only checked.
    rc, result = run_playbook("playbooks/site.yml", "-l", f"frame,{TARGET}", "--tags", "onboarding")
    assert rc == 0, failure_messages(result) or result
    before = sh(target, PROBE)[1]
    rc, result = run_playbook("playbooks/site.yml", "-l", TARGET, "--check")
    assert rc == 0, failure_messages(result) or result
    assert recap(result)[TARGET]["changed"] > 0
    after = sh(target, PROBE)[1]
    assert before == after


# --------------------------------------------------------------------------- issue 16: site.yml's preflight play

def _inventory_host():
    return yaml.safe_load((STATE / "inventory.yml").read_text())["all"]["children"]["theprotocol_registries"]["hosts"][TARGET]


def _plays(result):
    return [play["play"]["name"] for play in result.get("plays", [])]


def _stopped_by_the_preflight(result, before, target):
    """The run failed in the preflight play with one message for TARGET, and nothing after it ran."""
    stops = [m for m in failure_messages(result) if m.startswith(f"{TARGET}: {PREFLIGHT_STOP}:")]
    assert len(stops) == 1, failure_messages(result) or result
    plays = _plays(result)
    assert "Check every input of every role before anything changes on any host" in plays, plays
    for later in ("Onboard the targeted registries' operators on the parent frame", "Install Docker Engine on the registry hosts",
                  "Deploy the operator stack"):
        assert later not in plays, plays
    stats = recap(result)
    assert all(s["changed"] == 0 for s in stats.values()), stats
    assert sh(target, PROBE)[1] == before, "the host was touched"
    return stops[0]


@pytest.fixture(scope="module")
def onboarded(target):
    """The frame has onboarded host2's operator (as test_check_mode_... does): the material and onboarding.yml exist."""
    rc, result = run_playbook("playbooks/site.yml", "-l", f"frame,{TARGET}", "--tags", "onboarding")
    assert rc == 0, failure_messages(result) or result
    return _inventory_host()


def test_site_stops_a_later_roles_bad_input_before_docker_is_installed(target, lab):
    """An invalid image reference (operator_stack's input) with the frame in the run: the preflight play stops
    the run before the frame onboards anyone and before docker_engine touches the host."""
    images = {k.replace("-", "_"): v for k, v in lab["image_registry"]["images"].items()}
    before = sh(target, PROBE)[1]
    rc, result = run_playbook("playbooks/site.yml", "-l", f"frame,{TARGET}", "-e",
                              json.dumps({"theprotocol_images": {**images, "registry": "registry:lab\n    privileged: true"}}))
    assert rc != 0
    msg = _stopped_by_the_preflight(result, before, target)
    assert f"Preflight of {TARGET}:" in msg and "nothing was changed" in msg.lower(), msg
    assert "images.registry 'registry:lab\\n    privileged: true'" in msg, msg
    assert "ii  docker.io" not in sh(target, "dpkg -l docker.io 2>&1 | tail -1")[1]


def test_a_registry_name_the_frame_did_not_register_is_refused_before_any_change(target, lab, dkr, onboarded):
    operator, registry = onboarded["theprotocol_operator_name"], onboarded["theprotocol_registry_name"]
    # What the frame registered: the workload entry of the operator's registry SPIFFE ID selects the compose project.
    spiffe_id = f"spiffe://{lab['trust_domain']}/service/registry-{operator}"
    entries = json.loads(server_cli(dkr, lab, "entry", "show", "-spiffeID", spiffe_id, "-output", "json"))["entries"]
    selectors = {f"{s['type']}:{s['value']}" for e in entries for s in e["selectors"]}
    assert f"docker:label:com.docker.compose.project:{registry}" in selectors, selectors
    before = sh(target, PROBE)[1]
    rc, result = run_playbook("playbooks/site.yml", "-l", TARGET, "-e", "theprotocol_registry_name=notregistered")
    assert rc != 0
    msg = _stopped_by_the_preflight(result, before, target)
    for words in (f"for the compose project '{registry}'", f"docker:label:com.docker.compose.project:{registry}",
                  "registry_name is 'notregistered'", "cert-writer would get no SVID",
                  "theprotocol_registry_name", f"to '{registry}'", f"onboard operator '{operator}' again"):
        assert words in msg, (words, msg)
    assert sh(target, ["test", "-e", "/opt/theprotocol/notregistered"], check=False)[0] != 0


def test_a_workload_entry_for_another_compose_project_is_refused_before_any_change(target, lab, dkr, onboarded):
    """The frame recorded the registry name, but its workload entry selects another compose project (selectors
    changed at the frame): the preflight refuses before any change, naming the project, the selectors and what
    to do. The frame then onboards the operator again with its default selectors, and the preflight passes."""
    operator, registry = onboarded["theprotocol_operator_name"], onboarded["theprotocol_registry_name"]
    other = f"{registry}-elsewhere"
    selectors = [f"docker:label:com.docker.compose.project:{other}", "docker:label:com.docker.compose.service:cert-writer"]
    spiffe_id = f"spiffe://{lab['trust_domain']}/service/registry-{operator}"
    try:
        rc, result = run_playbook("playbooks/site.yml", "-l", f"frame,{TARGET}", "--tags", "onboarding",
                                  "-e", json.dumps({"operator_onboarding_workload_selectors": selectors}))
        assert rc == 0, failure_messages(result) or result
        entries = json.loads(server_cli(dkr, lab, "entry", "show", "-spiffeID", spiffe_id, "-output", "json"))["entries"]
        assert {f"{s['type']}:{s['value']}" for e in entries for s in e["selectors"]} == set(selectors)
        before = sh(target, PROBE)[1]
        rc, result = run_playbook("playbooks/site.yml", "-l", TARGET)
        assert rc != 0
        msg = _stopped_by_the_preflight(result, before, target)
        for words in (f"selects the compose project '{other}'", f"docker:label:com.docker.compose.project:{other}",
                      f"not '{registry}'", "cert-writer would get no SVID", f"onboard operator '{operator}' again",
                      f"registry_name '{other}'"):
            assert words in msg, (words, msg)
    finally:
        rc, result = run_playbook("playbooks/site.yml", "-l", f"frame,{TARGET}", "--tags", "onboarding")
        assert rc == 0, failure_messages(result) or result
    entries = json.loads(server_cli(dkr, lab, "entry", "show", "-spiffeID", spiffe_id, "-output", "json"))["entries"]
    assert f"docker:label:com.docker.compose.project:{registry}" in {
        f"{s['type']}:{s['value']}" for e in entries for s in e["selectors"]}
    rc, result = run_playbook("playbooks/site.yml", "-l", TARGET, "--check")
    assert not [m for m in failure_messages(result) if PREFLIGHT_STOP in m], failure_messages(result)


def test_site_check_deploys_on_the_contracts_federation_port_and_stack_dir(target, onboarded):
    """theprotocol_federation_port and theprotocol_stack_dir reach operator_stack in site.yml (issue 16: they did
    not, a fleet-wide 9443 was deployed on 8443). --check --diff on the fresh host shows the compose file that
    would be written, and changes nothing."""
    before = sh(target, PROBE)[1]
    inputs = {"theprotocol_federation_port": 9443, "theprotocol_stack_dir": "/srv/theprotocol-inputs-it"}
    rc, result = run_playbook("playbooks/site.yml", "-l", TARGET, "--check", "--diff", "-e", json.dumps(inputs))
    assert rc == 0, failure_messages(result) or result

    def results(name):
        return [res for play in result["plays"] for task in play["tasks"] if task["task"]["name"].endswith(name)
                for host, res in task["hosts"].items() if host == TARGET]

    compose = results("Write docker-compose.operator.yml (no secret values in it)")
    assert len(compose) == 1 and compose[0].get("changed"), compose
    diffs = compose[0]["diff"] if isinstance(compose[0]["diff"], list) else [compose[0]["diff"]]
    assert any('"0.0.0.0:9443:8443"' in d.get("after", "") for d in diffs), diffs
    dirs = [item["path"] for res in results("Create the stack directories") for item in res["results"]]
    assert "/srv/theprotocol-inputs-it" in dirs and "/srv/theprotocol-inputs-it/spire" in dirs, dirs
    assert f"/opt/theprotocol/{onboarded['theprotocol_registry_name']}" not in json.dumps(result)
    assert sh(target, PROBE)[1] == before
    assert sh(target, ["test", "-e", "/srv/theprotocol-inputs-it"], check=False)[0] != 0
    key = (STATE / "onboarding" / onboarded["theprotocol_operator_name"] / "x509pop.key").read_text()
    assert not any(ln in json.dumps(result) for ln in key.splitlines() if "PRIVATE" not in ln), "key material"
