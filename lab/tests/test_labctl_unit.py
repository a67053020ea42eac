"""Pure parts of the lab controller: input validation, addressing, the lab PKI."""

import datetime as dt
import sys
from pathlib import Path

import pytest
from cryptography import x509

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import labctl  # noqa: E402
import labpki  # noqa: E402


@pytest.mark.parametrize("raw", ["abc", "", "1.5", "0", "-1", str(labctl.MAX_HOSTS + 1), "100"])
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
    assert labctl.parse_hosts(None, 8) == 3  # an explicit size wins, even if it shrinks the lab


def test_parse_hosts_without_a_size_keeps_the_running_lab(monkeypatch):
    monkeypatch.setenv("LAB_HOSTS", "")
    assert labctl.parse_hosts("", 8) == 8  # make molecule after make integration must not remove hosts
    assert labctl.parse_hosts(None, 0) == 1
    monkeypatch.delenv("LAB_HOSTS")
    assert labctl.parse_hosts(None, 3) == 3


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


def test_ssh_host_is_host8_in_a_lab_of_eight_or_more():
    assert labctl.ssh_host(7) is None
    assert labctl.ssh_host(8) == "host8" and labctl.ssh_host(9) == "host8"
    assert labctl.MAX_HOSTS == 11


def test_ssh_key_is_made_once_private_0600_openssh_ed25519(tmp_path, monkeypatch):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    monkeypatch.setattr(labctl, "log", lambda msg: None)
    private, public = labctl.ensure_ssh_key(tmp_path / "ssh")
    assert (tmp_path / "ssh").stat().st_mode & 0o777 == 0o700
    assert private.stat().st_mode & 0o777 == 0o600
    assert private.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    key = serialization.load_ssh_private_key(private.read_bytes(), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    assert public.startswith("ssh-ed25519 ")
    assert (tmp_path / "ssh" / "id_ed25519.pub").read_text() == public + "\n"
    pub_key = serialization.load_ssh_public_key(public.encode())
    assert pub_key.public_bytes_raw() == key.public_key().public_bytes_raw()

    before = private.read_bytes()
    private.chmod(0o644)
    again, public_again = labctl.ensure_ssh_key(tmp_path / "ssh")
    assert (again, public_again) == (private, public)
    assert private.read_bytes() == before, "a second run must reuse the key"
    assert private.stat().st_mode & 0o777 == 0o600


def _facts(tmp_path, hosts):
    ca = tmp_path / "tls-ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    return {
        "trust_domain": "example.com", "frame_ca_cert": "/x/frame-ca.crt", "frame_ca_key": "/x/frame-ca.key",
        "spire_server": {"address": "172.31.250.10", "port": 8081},
        "eventstore": {"url": "https://lab-eventstore:8443/api/v1/events/", "address": "172.31.250.11"},
        "image_registry": {"lab_name": "lab-image-registry:5000", "images": {"spire-agent": "r/spire-agent:lab"}},
        "tls_ca_cert": str(ca), "bundle": "/x/bundle.pem", "hosts": hosts,
    }


def test_inventory_reaches_the_ssh_host_over_ssh_with_become_and_the_others_over_docker(tmp_path, monkeypatch):
    import yaml

    monkeypatch.setattr(labctl, "STATE", tmp_path)
    ssh = {"address": "172.31.250.108", "user": "operator", "nosudo_user": "nosudo",
           "private_key": str(tmp_path / "ssh" / "id_ed25519"), "common_args": labctl.SSH_COMMON_ARGS}
    labctl.write_inventory(_facts(tmp_path, {
        "host1": {"container": "lab-host1", "address": "172.31.250.101"},
        "host8": {"container": "lab-host8", "address": "172.31.250.108", "ssh": ssh},
    }))
    inv = yaml.safe_load((tmp_path / "inventory.yml").read_text())["all"]
    assert inv["vars"]["ansible_connection"] == "community.docker.docker"
    hosts = inv["children"]["theprotocol_registries"]["hosts"]
    assert hosts["host1"]["ansible_host"] == "lab-host1"
    assert "ansible_connection" not in hosts["host1"] and "ansible_user" not in hosts["host1"]
    h8 = hosts["host8"]
    assert h8["ansible_connection"] == "ssh"
    assert h8["ansible_host"] == "172.31.250.108"
    assert h8["ansible_user"] == "operator"
    assert h8["ansible_become"] is True
    assert h8["ansible_ssh_private_key_file"] == ssh["private_key"]
    assert h8["ansible_ssh_common_args"] == "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
    assert h8["theprotocol_registry_name"] == "registry8"
    # The lab frame is a container reached as root without sudo.
    assert inv["children"]["theprotocol_frame"]["hosts"]["frame"]["ansible_become"] is False


def test_ssh_host_setup_script_is_valid_sh_and_validates_sudoers():
    import subprocess

    subprocess.run(["sh", "-n", "-c", labctl.SSH_HOST_SETUP], check=True)
    script = labctl.SSH_HOST_SETUP
    assert "visudo -cqf" in script and "-m 0440" in script
    assert "NOPASSWD" in script and "$SSH_NOSUDO_USER" not in script.split("sudoers=")[1]
