"""Helpers of the security checklist tests (test_security_checklist on host7,
test_security_checklist_federation on host11): a lab host's stack deployed, verify.yml run on it
with its JSON report read, and the assertion that a fault fails exactly its own check. The lab's
hostN runs registryN of operatorN in /opt/theprotocol/registryN (lab/labctl.py's inventory)."""

from __future__ import annotations

import json
import re

import pytest

from conftest import run_playbook, sh, wait_for

# The EventStore window of the checklist runs (seconds): short, so that a fault shows soon.
WINDOW = 40
ALL = ["spire_agent_healthy", "cert_writer_running", "nginx_federation_accepting", "svid_valid", "served_svid_current",
       "eventstore_writes_ok", "mtls_enforced", "minting_disabled", "db_passwords_not_default", "images_up_to_date",
       "x509pop_cert_expiry", "env_file_permissions", "secrets_rotation_complete", "secrets_age"]


def statuses(results):
    return dict((k, v["status"]) for k, v in results.items())


def assert_only(results, check, status, *words, also=None):
    """``check`` has ``status`` with ``words`` in its evidence; every other check passes or is skipped,
    except those of ``also`` (check -> (status, words)), which the same fault also shows."""
    for other, (other_status, other_words) in (also or {}).items():
        assert results[other]["status"] == other_status, results[other]
        for word in other_words:
            assert word in " ".join(results[other]["evidence"]), results[other]
    others = dict((k, v) for k, v in statuses(results).items()
                  if k != check and k not in (also or {}) and v not in ("pass", "skip"))
    assert results[check]["status"] == status, results[check]
    assert not others, others
    text = " ".join(results[check]["evidence"])
    for word in words:
        assert word in text, text
    assert results[check]["remediation"].startswith("Operator guide, ")


class ChecklistHost:
    """The lab host ``name`` (hostN) under test."""

    def __init__(self, name: str):
        self.name = name
        self.n = name.removeprefix("host")
        self.reg = f"registry{self.n}"
        self.operator = f"operator{self.n}"
        self.stack = f"/opt/theprotocol/{self.reg}"
        self.compose = f"cd {self.stack} && docker compose -f docker-compose.operator.yml --env-file .env.operator"

    def fixture(self):
        """The module's ``stack`` fixture: the host's container with the stack deployed (site.yml, images pulled)."""
        @pytest.fixture(scope="module")
        def stack(request, lab, dkr):
            if self.name == "host1":
                request.getfixturevalue("deployed")
            else:
                rc, result = run_playbook("playbooks/site.yml", "-l", f"frame,{self.name}",
                                          "-e", "operator_stack_pull=always")
                assert rc == 0, result
            return dkr.containers.get(f"lab-{self.name}")
        return stack

    def verify(self, tmp_path, *extra, name="run"):
        """verify.yml on the host (never failing the run): (results by check id, output, report dir)."""
        out = tmp_path / name
        rc, text = run_playbook("playbooks/verify.yml", "-l", self.name, "-e", f"theprotocol_checklist_report_dir={out}",
                                "-e", "theprotocol_checklist_fail_on=never",
                                "-e", f"theprotocol_checklist_eventstore_window={WINDOW}", *extra, structured=False)
        assert rc == 0, text[-4000:]
        report = json.loads((out / f"{self.name}.json").read_text())
        return dict((r["id"], r) for r in report["results"]), text, out

    def wait_all_pass(self, tmp_path, timeout=180):
        def ok():
            results, dummy, dummy2 = self.verify(tmp_path, name="heal")
            bad = dict((k, (v["status"], v["evidence"])) for k, v in results.items() if v["status"] != "pass")
            assert not bad, bad
            return True
        wait_for("every check to pass again", ok, timeout=timeout, interval=3)

    def env_secrets(self, host):
        text = sh(host, ["cat", f"{self.stack}/.env.operator"])[1]
        return [m.group(2).strip("'\"") for m in re.finditer(r"^(\w*(?:PASSWORD|KEY)\w*)=(.+)$", text, re.M)]

    def cert_writer_data_dir(self, host):
        return sh(host, ["readlink", "-f", f"/var/lib/docker/volumes/{self.reg}_certs/_data/..data"])[1].strip()
