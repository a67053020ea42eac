"""The security checklist's federation side on lab-host11: nginx-federation stopped or not reloaded
after an SVID rotation, a served SVID of another trust domain, a newer image pushed, and the
mtls_enforced probe matrix on all five federation endpoints, failing on each real fault (a widened
allow-list, an nginx without its checks). Split from test_security_checklist.py (host7) so that
the two halves run in parallel."""

from __future__ import annotations

import datetime
import json
import re

import lab_registry
from checklist_stack import WINDOW, ChecklistHost, assert_only
from conftest import run_playbook, sh, put_file, wait_for

# Lab host of this module: host11. make integration runs modules in parallel (one worker per
# module); modules that share a host must not disturb each other.

CK = ChecklistHost("host11")
HOST, REG, OPERATOR, STACK, COMPOSE = CK.name, CK.reg, CK.operator, CK.stack, CK.compose
stack = CK.fixture()
verify, wait_all_pass, cert_writer_data_dir = CK.verify, CK.wait_all_pass, CK.cert_writer_data_dir


def test_nginx_federation_stopped(stack, tmp_path):
    sh(stack, ["docker", "stop", f"{REG}-nginx-federation"])
    try:
        results, dummy, dummy2 = verify(tmp_path)
        assert_only(results, "nginx_federation_accepting", "fail", "https://localhost:8443/health")
        assert results["served_svid_current"]["status"] == "skip"
    finally:
        sh(stack, ["docker", "start", f"{REG}-nginx-federation"])
    wait_all_pass(tmp_path)


def test_newer_image_pushed(stack, tmp_path):
    """A newer image under the tag the stack runs fails the check. The tag is this module's own
    (a copy of the lab's redis manifest): the lab tags are shared by every host, and a newer image
    under them would fail the checklist of the modules running in parallel on other hosts."""
    repo, tag = "theprotocol/redis", f"checklist-{HOST}"
    with lab_registry.own_tag(repo, tag) as (manifest, media):
        lab_registry.deploy_with_tag(HOST, tmp_path, "redis", tag)
        try:
            lab_registry.push_newer(repo, tag, manifest, media, "org.theprotocol.lab.checklist-newer")
            results, dummy, dummy2 = verify(tmp_path)
            assert_only(results, "images_up_to_date", "fail", f"{repo}:{tag}", "redis runs", "newer image was pushed")
            lab_registry.registry_api("PUT", f"/v2/{repo}/manifests/{tag}", manifest, {"Content-Type": media})
            results, dummy, dummy2 = verify(tmp_path, name="after")
            assert results["images_up_to_date"]["status"] == "pass"
        finally:
            lab_registry.deploy_with_tag(HOST, tmp_path, "redis", "lab")


def test_nginx_not_reloaded_after_rotation(stack, tmp_path):
    pid = sh(stack, ["docker", "inspect", "-f", "{{.State.Pid}}", f"{REG}-nginx-federation"])[1].strip()
    before = cert_writer_data_dir(stack)
    serial = sh(stack, f"openssl x509 -noout -serial -in {before}/svid.pem 2>/dev/null || "
                       f"python3 -c 'print(open(\"{before}/svid.pem\").read()[:200])'")[1]
    sh(stack, ["kill", "-STOP", pid])  # the entrypoint's watch loop: nginx keeps serving, nobody reloads it
    try:
        def rotated():
            now = sh(stack, f"cat /var/lib/docker/volumes/{REG}_certs/_data/svid.pem")[1]
            return serial not in now and now.count("BEGIN CERTIFICATE") and now != serial
        current = sh(stack, f"cat /var/lib/docker/volumes/{REG}_certs/_data/svid.pem")[1]

        def changed():
            return sh(stack, f"cat /var/lib/docker/volumes/{REG}_certs/_data/svid.pem")[1] != current
        wait_for("the SPIRE agent to rotate the SVID (TTL 120 s)", changed, timeout=120, interval=3)
        results, dummy, dummy2 = verify(tmp_path)
        assert_only(results, "served_svid_current", "fail", "not reloaded after the rotation")
    finally:
        sh(stack, ["kill", "-CONT", pid])
    wait_all_pass(tmp_path)


def test_svid_from_another_trust_domain(stack, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "other.org CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(hours=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(
                f"spiffe://other.org/service/registry-{OPERATOR}")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = leaf.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    for attempt in range(3):
        first = cert_writer_data_dir(stack)
        wait_for("a fresh cert-writer write", lambda: cert_writer_data_dir(stack) != first, timeout=40, interval=0.5)
        target = cert_writer_data_dir(stack)
        put_file(stack, f"{target}/svid.pem", pem, 0o644)
        put_file(stack, f"{target}/svid_key.pem", key_pem, 0o640)
        results, dummy, dummy2 = verify(tmp_path, name=f"foreign{attempt}")
        if "other.org" in " ".join(results["svid_valid"]["evidence"]):
            break
    assert_only(results, "svid_valid", "fail", f"spiffe://other.org/service/registry-{OPERATOR}", "chain")
    wait_all_pass(tmp_path, timeout=WINDOW + 120)


# --------------------------------------------------------------------------- mtls_enforced probe matrix (issue 12)

MTLS_PROBES = ["no_cert", "self_signed", "foreign_ca", "non_registry", "legacy_header", "forged_header",
               "registry_svid"]
FEDERATION = ["POST /api/v1/events/", "GET /api/v1/federation/agent-cards", "POST /api/v1/federation/sync-request",
              "POST /internal/federation/query", "POST /api/v1/cross-teg/transfer"]


def test_mtls_probe_matrix_on_the_healthy_stack(stack, tmp_path):
    results, dummy, dummy2 = verify(tmp_path)
    res = results["mtls_enforced"]
    assert res["status"] == "pass", res
    matrix = res["details"]["matrix"]
    assert sorted(matrix) == sorted(MTLS_PROBES), res["details"]
    for probe_id in MTLS_PROBES:
        assert sorted(matrix[probe_id]) == sorted(FEDERATION)
        assert set(matrix[probe_id].values()) == ({"200"} if probe_id == "registry_svid" else {"403"}), \
            (probe_id, matrix[probe_id])
    text = "\n".join(res["evidence"])
    assert "spiffe://example.com/spire/agent/x509pop/" in text  # the agent's own SVID was presented
    assert "no client certificate: 403 403 403 403 403, refused on 5/5" in text


def test_widened_allow_list_fails_mtls_enforced(stack, tmp_path):
    """The real fault of the non-registry probe: nginx-federation lets any SVID of the trust domain through."""
    wide = json.dumps({"operator_stack_federation_allowed_spiffe_ids": ["spiffe://example.com/**"]})
    rc, out = run_playbook("playbooks/site.yml", "-l", HOST, "-e", wide, structured=False)
    assert rc == 0, out[-3000:]
    try:
        results, dummy, dummy2 = verify(tmp_path)
        assert_only(results, "mtls_enforced", "fail", "no registry, the SPIRE agent's own",
                    "spiffe://example.com/spire/agent/x509pop/", "got through on POST /api/v1/events/",
                    "only registry SPIFFE IDs")
        assert set(results["mtls_enforced"]["details"]["matrix"]["non_registry"].values()) == {"200"}
    finally:
        rc, out = run_playbook("playbooks/site.yml", "-l", HOST, structured=False)
        assert rc == 0, out[-3000:]
    wait_all_pass(tmp_path)


def test_nginx_federation_without_its_checks_fails_every_refusal_probe(stack, tmp_path):
    """nginx-federation with the guide's public-proxy laxness (optional_no_ca, no checks) answering for a backend
    that trusts whatever nginx forwards: every probe that must be refused gets through, each named."""
    conf_path = f"{STACK}/nginx/federation.conf"
    conf = sh(stack, ["cat", conf_path])[1]
    lax = conf.replace("ssl_verify_client      optional;", "ssl_verify_client      optional_no_ca;")
    lax = re.sub(r"\n *if \(\$federation_(client_ok|peer_allowed) = 0\) \{\n[^\n]*\n *\}", "", lax)
    lax = lax.replace("proxy_pass $registry_upstream;", "return 200 '{\"status\":\"ok\"}';")
    assert lax.count("return 200") == 2 and "if ($federation" not in lax
    put_file(stack, "/tmp/federation-lax.conf", lax.encode())
    try:
        # Written in place: the container's bind mount keeps the file's inode.
        sh(stack, f"cat /tmp/federation-lax.conf > {conf_path}")
        sh(stack, ["docker", "exec", f"{REG}-nginx-federation", "sh", "-c", "nginx -t -q && nginx -s reload"])
        wait_for("nginx to serve the lax configuration", lambda: "200" == sh(stack, [
            "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5",
            "https://localhost:8443/api/v1/federation/agent-cards"], check=False)[1].strip(), timeout=30)
        results, dummy, dummy2 = verify(tmp_path)
        res = results["mtls_enforced"]
        assert_only(results, "mtls_enforced", "fail")
        failures = "\n".join(e for e in res["evidence"] if "got through" in e or "not 403" in e)
        for words in ("no client certificate", "a self-signed certificate", "a certificate from another CA",
                      "the SPIRE agent's own", "the legacy X-Federation-License header", "a forged X-SSL-Client-Cert"):
            assert words in failures, (words, res["evidence"])
        assert set(res["details"]["matrix"]["self_signed"].values()) == {"200"}
    finally:
        rc, out = run_playbook("playbooks/site.yml", "-l", HOST, structured=False)
        assert rc == 0, out[-3000:]
    wait_all_pass(tmp_path)
