"""Issue 2 proof: real SPIRE x509pop attestation and the cert-writer on a lab host, and the
EventStore stand-in accepting a write with a valid SVID and refusing others."""

import datetime as dt
import json
import re

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import CERTS_DIR, put_file, server_cli, sh, wait_for

from ansible_collections.theprotocol.operator.plugins.module_utils import _x509

# Lab host of this module: host1. make integration runs modules in parallel (one worker per
# module); modules that share a host must not disturb each other.


def test_agent_attests_with_x509pop(dkr, lab, host1_agent):
    sha1 = host1_agent.rsplit("/", 1)[1]
    assert re.fullmatch(r"[0-9a-f]{40}", sha1), host1_agent
    assert host1_agent == f"spiffe://example.com/spire/agent/x509pop/{sha1}"
    listed = json.loads(server_cli(dkr, lab, "agent", "list", "-output", "json"))
    ids = {f"spiffe://{a['id']['trust_domain']}{a['id']['path']}": a for a in listed["agents"]}
    assert host1_agent in ids, f"{host1_agent} not in {sorted(ids)}"
    assert ids[host1_agent]["attestation_type"] == "x509pop"
    assert not ids[host1_agent].get("banned", False)
    # The guide's command, verbatim apart from the binary's place in the lab host.
    host = dkr.containers.get(lab["hosts"]["host1"]["container"])
    out = sh(host, ["/usr/local/bin/lab-spire-agent", "healthcheck"])[1]
    assert out.strip() == "Agent is healthy."


def test_cert_writer_writes_the_registered_svid_and_rewrites_it(dkr, lab, host1_svid):
    host = dkr.containers.get(lab["hosts"]["host1"]["container"])
    svid = sh(host, ["cat", f"{CERTS_DIR}/svid.pem"])[1].encode()
    bundle = sh(host, ["cat", f"{CERTS_DIR}/bundle.pem"])[1].encode()
    key = sh(host, ["cat", f"{CERTS_DIR}/svid_key.pem"])[1].encode()
    chain = _x509.load_pem_chain(svid)
    cas = _x509.load_pem_chain(bundle)
    assert _x509.svid_spiffe_id(chain[0])[0] == host1_svid
    _x509.verify_chain(chain[0], chain[1:], cas)  # raises on a broken chain
    assert _x509.key_matches_certificate(_x509.load_pem_key(key), chain[0])
    # The bundle the cert-writer writes is the frame's bundle.
    frame_cas = _x509.load_pem_chain(open(lab["bundle"], "rb").read())
    assert {c.fingerprint(c.signature_hash_algorithm) for c in cas} >= \
        {c.fingerprint(c.signature_hash_algorithm) for c in frame_cas}
    # The write is atomic: the three names are symlinks into one ..data directory.
    links = sh(host, f"readlink {CERTS_DIR}/svid.pem {CERTS_DIR}/svid_key.pem {CERTS_DIR}/bundle.pem")[1]
    assert links.split() == ["..data/svid.pem", "..data/svid_key.pem", "..data/bundle.pem"]
    first = sh(host, ["readlink", f"{CERTS_DIR}/..data"])[1].strip()
    wait_for("a second write after the 3 s interval",
             lambda: sh(host, ["readlink", f"{CERTS_DIR}/..data"])[1].strip() != first, timeout=30)
    journal = sh(host, ["journalctl", "-u", "lab-cert-writer", "-o", "cat", "--no-pager"])[1]
    fetches = [line for line in journal.splitlines() if "fetched SVID" in line]
    assert len(fetches) >= 2, journal
    assert f"spiffe_id={host1_svid}" in fetches[-1]
    assert f"serial={chain[0].serial_number:x}" in "\n".join(fetches)
    assert "not_after=" in fetches[-1]
    assert "PRIVATE KEY" not in journal


EVENT = '{"event_type":"TokensTransferred","amount":1}'


def _post(host, lab, *cert_args):
    cmd = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", f"{CERTS_DIR}/bundle.pem",
           "--resolve", f"lab-eventstore:8443:{lab['eventstore']['address']}",
           "-H", "Content-Type: application/json", "-d", EVENT, lab["eventstore"]["url"], *cert_args]
    out = sh(host, cmd, check=False)[1]
    return out.strip()


def _self_signed_svid(spiffe_id):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "forged")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def test_eventstore_accepts_valid_svid_and_refuses_others(dkr, lab, host1_svid):
    host = dkr.containers.get(lab["hosts"]["host1"]["container"])
    assert _post(host, lab, "--cert", f"{CERTS_DIR}/svid.pem", "--key", f"{CERTS_DIR}/svid_key.pem") == "201"
    assert _post(host, lab) == "403"
    cert, key = _self_signed_svid(host1_svid)
    put_file(host, "/tmp/forged/svid.pem", cert)
    put_file(host, "/tmp/forged/key.pem", key, 0o600)
    assert _post(host, lab, "--cert", "/tmp/forged/svid.pem", "--key", "/tmp/forged/key.pem") == "403"
