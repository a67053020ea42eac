"""Issue 3 item 2: the operator_onboarding role (playbooks/onboard_operator.yml) against the lab frame.

The tests run in file order and share one onboarding (operator `onboardtest`): first run, second
run, an x509pop agent on lab-host2 using the handed-back material, renewal of the attestation
certificate (the agent re-attests with it and still gets the registry SVID), selectors changed
back in place. Everything created is removed at the end.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from conftest import AGENT_CONF, REPO, STATE, file_from_image, put_file, server_cli, sh, wait_for

from ansible_collections.theprotocol.operator.plugins.module_utils import _x509

# Lab host of this module: host2. make integration runs modules in parallel (one worker per
# module); modules that share a host must not disturb each other.

OPERATOR = "onboardtest"
CHECK_OPERATOR = "onboardcheck"
AGENT_HOST = "host2"
AGENT_UNIT = "onboardtest-spire-agent"
AGENT_BIN = "/usr/local/bin/onboardtest-spire-agent"
AGENT_ROOT = "/var/lib/onboardtest-agent"
AGENT_SOCKET = "/tmp/onboardtest-agent/api.sock"
UNIX_SELECTORS = ["unix:uid:0"]  # lab hosts run no Docker for this test: the fetch runs as root
RECAP = re.compile(r"^frame\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def ids_for(td: str, operator: str) -> tuple[str, str]:
    return f"spiffe://{td}/node/operator-{operator}", f"spiffe://{td}/service/registry-{operator}"


def show(dkr, lab, spiffe_id: str) -> list[dict]:
    return json.loads(server_cli(dkr, lab, "entry", "show", "-spiffeID", spiffe_id, "-output", "json"))["entries"] or []


def sid(value: dict) -> str:
    return f"spiffe://{value['trust_domain']}{value['path']}"


def agents_of(dkr, lab, operator: str) -> list[str]:
    listed = json.loads(server_cli(dkr, lab, "agent", "list", "-selector", f"x509pop:subject:cn:operator-{operator}",
                                   "-output", "json"))
    return [sid(a["id"]) for a in listed["agents"] or []]


class Onboarding:
    def __init__(self, dkr, lab, out: Path):
        self.dkr, self.lab, self.out = dkr, lab, out
        self.td = lab["trust_domain"]
        self.alias_id, self.registry_id = ids_for(self.td, OPERATOR)
        self.dir = out / OPERATOR
        self.vars_file = out / "vars.json"
        self.vars_file.write_text(json.dumps({
            "operator_onboarding_operator_name": OPERATOR,
            "operator_onboarding_registry_name": OPERATOR,
            "operator_onboarding_ca_cert_path": lab["frame_ca_cert"],
            "operator_onboarding_ca_key_path": lab["frame_ca_key"],
            "operator_onboarding_server_address": lab["spire_server"]["address"],
            "operator_onboarding_server_port": lab["spire_server"]["port"],
            "operator_onboarding_output_dir": str(out),
        }))
        self.state: dict = {}

    def play(self, *extra_vars: dict, check: bool = False, verbose: bool = False, expect_rc: int = 0):
        cmd = [str(REPO / ".venv" / "bin" / "ansible-playbook"), "-i", str(STATE / "inventory.yml"),
               str(REPO / "playbooks" / "onboard_operator.yml"), "-e", f"@{self.vars_file}"]
        for extra in extra_vars:
            cmd += ["-e", json.dumps(extra)]
        if check:
            cmd.append("--check")
        if verbose:
            cmd.append("-vvv")
        env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
                   ANSIBLE_COLLECTIONS_PATH=str(REPO / ".build" / "collections"), ANSIBLE_NOCOLOR="1",
                   ANSIBLE_FORCE_COLOR="0")
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=600, check=False)
        out = proc.stdout
        assert proc.returncode == expect_rc, f"ansible-playbook exited {proc.returncode}:\n{out[-5000:]}"
        match = RECAP.search(out)
        assert match, out[-3000:]
        ok, changed, unreachable, failed = map(int, match.groups())
        return dict(ok=ok, changed=changed, unreachable=unreachable, failed=failed, output=out)

    def entries(self) -> tuple[list[dict], list[dict]]:
        return show(self.dkr, self.lab, self.alias_id), show(self.dkr, self.lab, self.registry_id)

    def material(self) -> dict:
        return yaml.safe_load((self.dir / "onboarding.yml").read_text())

    def cert(self):
        return _x509.load_pem_chain((self.dir / "x509pop.crt").read_bytes())[0]

    def cleanup(self):
        for operator in (OPERATOR, CHECK_OPERATOR):
            alias, registry = ids_for(self.td, operator)
            for spiffe_id in (registry, alias):  # children first
                for entry in show(self.dkr, self.lab, spiffe_id):
                    server_cli(self.dkr, self.lab, "entry", "delete", "-entryID", entry["id"])
            for agent_id in agents_of(self.dkr, self.lab, operator):
                server_cli(self.dkr, self.lab, "agent", "evict", "-spiffeID", agent_id)
        host = self.host(required=False)
        if host is not None:
            sh(host, f"systemctl stop {AGENT_UNIT} 2>/dev/null; systemctl reset-failed {AGENT_UNIT} 2>/dev/null; "
                     f"rm -rf {AGENT_ROOT} {os.path.dirname(AGENT_SOCKET)} {AGENT_BIN}; true")

    def host(self, required: bool = True):
        info = self.lab["hosts"].get(AGENT_HOST)
        if info is None:
            if required:
                pytest.skip(f"lab has no {AGENT_HOST}: run 'make lab-up LAB_HOSTS=2' (or more)")
            return None
        return self.dkr.containers.get(info["container"])


@pytest.fixture(scope="module")
def onboarding(dkr, lab, tmp_path_factory):
    ctx = Onboarding(dkr, lab, tmp_path_factory.mktemp("onboarding"))
    ctx.cleanup()
    yield ctx
    ctx.cleanup()


def assert_no_key_material(output: str, *key_files: Path) -> None:
    """No private key PEM, no line of the keys' PEM and no private scalar in ``output``.

    The tail of an EC private key's PEM may encode only the public point, which the
    certificate info legitimately prints: lines that also occur in the public key's
    PEM are not secret.
    """
    assert "PRIVATE KEY" not in output
    for path in key_files:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        for line in path.read_text().splitlines()[1:-1]:
            if line in public.replace("\n", ""):
                continue
            assert line not in output, f"a line of {path} appears in the output"
        scalar = key.private_numbers().private_value
        for form in (str(scalar), format(scalar, "x"), format(scalar, "064x")):
            assert form not in output, f"the private scalar of {path} appears in the output"


def start_agent(ctx: Onboarding, name: str) -> str:
    """Run an x509pop agent on lab-host2 with the handed-back material in a fresh data dir; return its ID."""
    host = ctx.host()
    material = ctx.material()
    data = f"{AGENT_ROOT}/{name}"
    sh(host, f"systemctl stop {AGENT_UNIT} 2>/dev/null; systemctl reset-failed {AGENT_UNIT} 2>/dev/null; true")
    put_file(host, f"{data}/x509pop.crt", (ctx.dir / material["agent"]["x509pop_certificate_file"]).read_bytes())
    put_file(host, f"{data}/x509pop.key", (ctx.dir / material["agent"]["x509pop_private_key_file"]).read_bytes(), 0o600)
    put_file(host, f"{data}/bundle.pem", (ctx.dir / material["agent"]["trust_bundle_file"]).read_bytes())
    put_file(host, f"{data}/agent.conf", AGENT_CONF.format(
        data=data, server=material["agent"]["server_address"], port=material["agent"]["server_port"],
        socket=AGENT_SOCKET, td=material["agent"]["trust_domain"]).encode())
    sh(host, ["install", "-d", "-m", "0700", f"{data}/keys"])
    sh(host, ["systemd-run", f"--unit={AGENT_UNIT}", "--collect", AGENT_BIN, "run", "-config", f"{data}/agent.conf"])
    healthcheck = [AGENT_BIN, "healthcheck", "-socketPath", AGENT_SOCKET]
    wait_for(f"the agent on lab-{AGENT_HOST} to answer its healthcheck",
             lambda: "Agent is healthy." in sh(host, healthcheck, check=False)[1], timeout=60)
    return material["agent_spiffe_id"]


def fetch_registry_svid(ctx: Onboarding):
    """The X.509-SVID a root workload on lab-host2 gets from the agent (parsed from files, not from text)."""
    host = ctx.host()
    outdir = f"{AGENT_ROOT}/fetched"

    def fetched():
        sh(host, ["rm", "-rf", outdir])
        sh(host, ["mkdir", "-p", outdir])
        rc, out = sh(host, [AGENT_BIN, "api", "fetch", "x509", "-socketPath", AGENT_SOCKET, "-write", outdir,
                            "-silent"], check=False)
        assert rc == 0, out
        return sh(host, ["cat", f"{outdir}/svid.0.pem"])[1].encode(), sh(host, ["cat", f"{outdir}/bundle.0.pem"])[1].encode()

    svid, bundle = wait_for("the registry SVID from the agent on lab-host2", fetched, timeout=90, interval=2)
    chain = _x509.load_pem_chain(svid)
    _x509.verify_chain(chain[0], chain[1:], _x509.load_pem_chain(bundle))
    return _x509.svid_spiffe_id(chain[0])[0]


# ----------------------------------------------------------------------------- the tests, in order

def test_bad_operator_name_fails_before_any_change(onboarding):
    result = onboarding.play({"operator_onboarding_operator_name": "Bad_Name"}, expect_rc=2)
    assert result["changed"] == 0 and result["failed"] == 1
    assert "operator_onboarding_operator_name \"Bad_Name\" is invalid: it must be an RFC 1123 DNS label" \
        in result["output"]
    assert not (onboarding.out / "Bad_Name").exists()
    assert not any(show(onboarding.dkr, onboarding.lab, i) for i in ids_for(onboarding.td, "Bad_Name"))


def test_check_mode_on_a_new_operator_creates_nothing(onboarding):
    result = onboarding.play({"operator_onboarding_operator_name": CHECK_OPERATOR,
                              "operator_onboarding_registry_name": CHECK_OPERATOR}, check=True)
    assert result["failed"] == 0 and result["changed"] > 0
    assert not (onboarding.out / CHECK_OPERATOR).exists()
    alias, registry = ids_for(onboarding.td, CHECK_OPERATOR)
    assert show(onboarding.dkr, onboarding.lab, alias) == []
    assert show(onboarding.dkr, onboarding.lab, registry) == []


def test_first_run_issues_the_certificate_and_creates_the_entries(onboarding):
    result = onboarding.play(verbose=True)
    assert result["failed"] == 0 and result["changed"] > 0
    d = onboarding.dir
    assert_no_key_material(result["output"], d / "x509pop.key", Path(onboarding.lab["frame_ca_key"]))

    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / "x509pop.key").stat().st_mode) == 0o600
    cert = onboarding.cert()
    key = _x509.load_pem_key((d / "x509pop.key").read_bytes())
    assert _x509.key_matches_certificate(key, cert)
    assert key.curve.name == "secp256r1"
    assert cert.subject.rfc4514_string() == f"CN=operator-{OPERATOR},O=TheProtocol operators"
    assert _x509.has_digital_signature(cert) and not _x509.is_ca(cert)
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).critical
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == \
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    ca = _x509.load_pem_chain(Path(onboarding.lab["frame_ca_cert"]).read_bytes())
    _x509.verify_chain(cert, [], ca)
    lifetime = _x509.not_valid_after(cert) - _x509.not_valid_before(cert)
    assert 89.9 < lifetime.total_seconds() / 86400 < 90.1

    bundle = server_cli(onboarding.dkr, onboarding.lab, "bundle", "show", "-format", "pem")
    assert (d / "bundle.pem").read_text().strip() == bundle.strip()
    material = onboarding.material()
    assert material["agent"] == {
        "trust_domain": "example.com", "server_address": onboarding.lab["spire_server"]["address"],
        "server_port": onboarding.lab["spire_server"]["port"], "trust_bundle_file": "bundle.pem",
        "x509pop_certificate_file": "x509pop.crt", "x509pop_private_key_file": "x509pop.key"}
    assert material["agent_spiffe_id"] == _x509.x509pop_agent_spiffe_id("example.com", cert)
    assert material["registry_spiffe_id"] == onboarding.registry_id
    assert material["node_alias_spiffe_id"] == onboarding.alias_id
    assert material["x509pop_certificate_not_after"] == _x509.isoformat(_x509.not_valid_after(cert))

    aliases, workloads = onboarding.entries()
    assert len(aliases) == 1 and len(workloads) == 1
    alias, workload = aliases[0], workloads[0]
    assert sid(alias["parent_id"]) == "spiffe://example.com/spire/server"
    assert alias["selectors"] == [{"type": "x509pop", "value": f"subject:cn:operator-{OPERATOR}"}]
    assert sid(workload["parent_id"]) == onboarding.alias_id
    assert sorted((s["type"], s["value"]) for s in workload["selectors"]) == [
        ("docker", f"label:com.docker.compose.project:{OPERATOR}"),
        ("docker", "label:com.docker.compose.service:cert-writer")]
    # The SVID TTL is the inventory contract's theprotocol_svid_ttl (the lab inventory sets 120 s; the role's
    # default, 3600 s, applies to the role alone): onboard_operator.yml reads the inventory as site.yml does.
    ttl = yaml.safe_load((STATE / "inventory.yml").read_text())["all"]["vars"]["theprotocol_svid_ttl"]
    assert workload["x509_svid_ttl"] == ttl and workload["dns_names"] == []
    onboarding.state.update(alias_id=alias["id"], workload_id=workload["id"],
                            fingerprint=_x509.sha1_fingerprint(cert))


def test_second_run_changes_nothing(onboarding):
    assert onboarding.state, "the first run did not complete"
    result = onboarding.play()
    assert result["failed"] == 0 and result["changed"] == 0, result["output"][-3000:]
    aliases, workloads = onboarding.entries()
    assert [e["id"] for e in aliases] == [onboarding.state["alias_id"]]
    assert [e["id"] for e in workloads] == [onboarding.state["workload_id"]]
    assert workloads[0]["revision_number"] == "0"
    assert _x509.sha1_fingerprint(onboarding.cert()) == onboarding.state["fingerprint"]


def test_the_material_attests_an_agent_that_gets_the_registry_svid(onboarding, dkr):
    host = onboarding.host()
    # Without Docker on the host the docker selectors cannot match: select the root workload instead.
    result = onboarding.play({"operator_onboarding_workload_selectors": UNIX_SELECTORS})
    # The entry, updated in place, and onboarding.yml, which records the selectors.
    assert result["changed"] == 2, result["output"][-3000:]
    assert onboarding.material()["registry_workload_selectors"] == UNIX_SELECTORS
    _aliases, workloads = onboarding.entries()
    assert [e["id"] for e in workloads] == [onboarding.state["workload_id"]]
    assert workloads[0]["selectors"] == [{"type": "unix", "value": "uid:0"}]

    put_file(host, AGENT_BIN, file_from_image(dkr, "theprotocol-lab/spire-agent:lab", "/opt/spire/bin/spire-agent"),
             0o755)
    agent_id = start_agent(onboarding, "first")
    assert agent_id == _x509.x509pop_agent_spiffe_id("example.com", onboarding.cert())
    assert agent_id in agents_of(dkr, onboarding.lab, OPERATOR)
    assert fetch_registry_svid(onboarding) == onboarding.registry_id
    onboarding.state["first_agent"] = agent_id


def test_renewal_reissues_the_certificate_and_keeps_the_entries(onboarding, dkr):
    assert "first_agent" in onboarding.state, "the agent test did not complete"
    shrink = {"operator_onboarding_workload_selectors": UNIX_SELECTORS,
              # 90 days are left, fewer than 95: re-issue (for 100 days).
              "operator_onboarding_cert_lifetime_days": 100, "operator_onboarding_renew_before_days": 95}
    result = onboarding.play(shrink, verbose=True)
    assert result["failed"] == 0 and result["changed"] > 0
    assert_no_key_material(result["output"], onboarding.dir / "x509pop.key", Path(onboarding.lab["frame_ca_key"]))
    cert = onboarding.cert()
    assert _x509.sha1_fingerprint(cert) != onboarding.state["fingerprint"]
    assert cert.subject.rfc4514_string() == f"CN=operator-{OPERATOR},O=TheProtocol operators"
    assert 99.9 < (_x509.not_valid_after(cert) - _x509.not_valid_before(cert)).total_seconds() / 86400 < 100.1
    material = onboarding.material()
    assert material["agent_spiffe_id"] == _x509.x509pop_agent_spiffe_id("example.com", cert)
    assert material["agent_spiffe_id"] != onboarding.state["first_agent"]
    aliases, workloads = onboarding.entries()
    assert [e["id"] for e in aliases] == [onboarding.state["alias_id"]]
    assert [e["id"] for e in workloads] == [onboarding.state["workload_id"]]
    assert aliases[0]["revision_number"] == "0"

    # The renewed certificate attests a new agent; through the alias it gets the same SVID.
    agent_id = start_agent(onboarding, "renewed")
    assert agent_id == material["agent_spiffe_id"]
    assert agent_id in agents_of(dkr, onboarding.lab, OPERATOR)
    assert fetch_registry_svid(onboarding) == onboarding.registry_id

    # Enough time left now: kept.
    again = onboarding.play(shrink)
    assert again["changed"] == 0, again["output"][-3000:]
    assert _x509.sha1_fingerprint(onboarding.cert()) == _x509.sha1_fingerprint(cert)


def test_default_selectors_restored_in_place(onboarding):
    assert "first_agent" in onboarding.state, "the agent test did not complete"
    result = onboarding.play()
    assert result["changed"] == 2, result["output"][-3000:]  # the entry in place, and onboarding.yml's selectors
    _aliases, workloads = onboarding.entries()
    assert [e["id"] for e in workloads] == [onboarding.state["workload_id"]]
    assert len(workloads[0]["selectors"]) == 2
    assert onboarding.material()["registry_workload_selectors"] == [
        f"docker:label:com.docker.compose.project:{OPERATOR}",
        "docker:label:com.docker.compose.service:cert-writer"]
    assert onboarding.play()["changed"] == 0
