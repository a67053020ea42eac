"""Pure parts of the lab controller: input validation, addressing, the lab PKI."""

import datetime as dt
import sys
from pathlib import Path

import pytest
from cryptography import x509

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import labctl  # noqa: E402
import labpki  # noqa: E402


@pytest.mark.parametrize("raw", ["abc", "", "1.5", "0", "-1", "9", "100"])
def test_parse_hosts_rejects_bad_values(raw, monkeypatch):
    monkeypatch.setenv("LAB_HOSTS", raw if raw else "x")
    with pytest.raises(labctl.LabError) as exc:
        labctl.parse_hosts(raw or None)
    assert "LAB_HOSTS" in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("raw,want", [("1", 1), (" 4 ", 4), ("8", 8)])
def test_parse_hosts_accepts_range(raw, want):
    assert labctl.parse_hosts(raw) == want


def test_parse_hosts_defaults_to_env(monkeypatch):
    monkeypatch.setenv("LAB_HOSTS", "3")
    assert labctl.parse_hosts(None) == 3


def test_lab_addresses_are_distinct_and_in_subnet():
    addrs = labctl.lab_addresses("172.31.250.0/24", 4)
    assert len(set(addrs.values())) == len(addrs) == 8  # frame, EventStore, image registry, SMTP sink, 4 hosts
    assert addrs["lab-host4"] == "172.31.250.104"
    with pytest.raises(labctl.LabError, match="too small"):
        labctl.lab_addresses("10.0.0.0/28", 1)


def test_pki_is_idempotent_and_x509pop_certs_are_attestation_grade(tmp_path):
    first = labpki.ensure_pki(tmp_path, ["host1", "host2"], ["lab-image-registry", "localhost"], ["127.0.0.1"])
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    labpki.ensure_pki(tmp_path, ["host1", "host2"], ["lab-image-registry", "localhost"], ["127.0.0.1"])
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert before == after, "a second run must not re-issue anything"

    ca = labpki.load_cert(first["frame_ca_cert"])
    cert = labpki.load_cert(first["hosts"]["host1"]["cert"])
    cert.verify_directly_issued_by(ca)
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = labpki.load_key(first["hosts"]["host1"]["key"])
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    assert (first["hosts"]["host1"]["key"].stat().st_mode & 0o777) == 0o600


def test_pki_reissues_registry_cert_when_names_change(tmp_path):
    labpki.ensure_pki(tmp_path, [], ["lab-image-registry"], ["127.0.0.1"])
    old = (tmp_path / "image-registry.crt").read_bytes()
    labpki.ensure_pki(tmp_path, [], ["lab-image-registry", "localhost"], ["127.0.0.1"])
    assert (tmp_path / "image-registry.crt").read_bytes() != old


def test_needs_renewal(tmp_path):
    ca, key = labpki.make_ca("t")
    now = dt.datetime.now(dt.timezone.utc)
    cert, _ = labpki.issue_x509pop(ca, key, "h", not_after=now + dt.timedelta(hours=1))
    p = tmp_path / "c.pem"
    labpki._write_cert(p, cert)
    assert labpki.needs_renewal(p, 2 * 3600)
    assert not labpki.needs_renewal(p, 60)
    assert labpki.needs_renewal(tmp_path / "missing.pem", 60)
