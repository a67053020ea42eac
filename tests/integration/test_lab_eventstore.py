"""Issue 2 proof: the EventStore stand-in accepts a write with a valid SVID, refuses others."""

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import CERTS_DIR, put_file, sh

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
