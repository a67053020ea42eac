"""Lab PKI: the frame CA that issues x509pop attestation certificates, and the lab TLS CA
(image registry). Files are created once and re-issued only when missing or expiring."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UTC = dt.timezone.utc


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


def _name(cn: str, org: str = "TheProtocol lab") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    os.replace(tmp, path)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tmp.chmod(0o644)
    os.replace(tmp, path)


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def load_key(path: Path):
    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)


def needs_renewal(cert_path: Path, min_seconds: int) -> bool:
    try:
        cert = load_cert(cert_path)
    except (OSError, ValueError):
        return True
    return (cert.not_valid_after_utc - _now()).total_seconds() < min_seconds


def make_ca(cn: str, days: int = 365):
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(cn))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_x509pop(ca_cert, ca_key, cn: str, *, not_before: dt.datetime | None = None,
                  not_after: dt.datetime | None = None, days: int = 90, digital_signature: bool = True):
    """An x509pop attestation certificate (leaf, key usage digitalSignature) for one host."""
    key = ec.generate_private_key(ec.SECP256R1())
    nb = not_before or (_now() - dt.timedelta(minutes=5))
    na = not_after or (_now() + dt.timedelta(days=days))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, "TheProtocol lab operators")).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(nb).not_valid_after(na)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=digital_signature, key_encipherment=not digital_signature,
                                     content_commitment=False, data_encipherment=False, key_agreement=False,
                                     key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False),
                       critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def issue_server(ca_cert, ca_key, names: list[str], ips: list[str], days: int = 365):
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    sans = [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0])).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _ensure_ca(d: Path, stem: str, cn: str):
    cert_p, key_p = d / f"{stem}.crt", d / f"{stem}.key"
    if needs_renewal(cert_p, 30 * 86400) or not key_p.exists():
        cert, key = make_ca(cn)
        _write_key(key_p, key)
        _write_cert(cert_p, cert)
        return cert, key, True
    return load_cert(cert_p), load_key(key_p), False


def ensure_pki(d: Path, hostnames: list[str], registry_names: list[str], registry_ips: list[str]) -> dict:
    d = Path(d)
    frame_cert, frame_key, frame_new = _ensure_ca(d, "frame-ca", "TheProtocol lab frame x509pop CA")
    tls_cert, tls_key, tls_new = _ensure_ca(d, "tls-ca", "TheProtocol lab TLS CA")
    out = {"frame_ca_cert": d / "frame-ca.crt", "frame_ca_key": d / "frame-ca.key",
           "tls_ca_cert": d / "tls-ca.crt", "tls_ca_key": d / "tls-ca.key", "hosts": {}}
    reg_cert_p, reg_key_p = d / "image-registry.crt", d / "image-registry.key"
    want_sans = sorted(registry_names + registry_ips)
    have_sans = []
    if reg_cert_p.exists():
        try:
            san = load_cert(reg_cert_p).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            have_sans = sorted([str(v) for v in san.get_values_for_type(x509.DNSName)] +
                               [str(v) for v in san.get_values_for_type(x509.IPAddress)])
        except (ValueError, x509.ExtensionNotFound):
            have_sans = []
    if tls_new or have_sans != want_sans or needs_renewal(reg_cert_p, 30 * 86400):
        cert, key = issue_server(tls_cert, tls_key, registry_names, registry_ips)
        _write_key(reg_key_p, key)
        _write_cert(reg_cert_p, cert)
    out["registry_cert"], out["registry_key"] = reg_cert_p, reg_key_p
    for host in hostnames:
        cert_p, key_p = d / "hosts" / f"{host}-x509pop.crt", d / "hosts" / f"{host}-x509pop.key"
        if frame_new or needs_renewal(cert_p, 7 * 86400) or not key_p.exists() or \
                load_cert(cert_p).issuer != frame_cert.subject:
            cert, key = issue_x509pop(frame_cert, frame_key, host)
            _write_key(key_p, key)
            _write_cert(cert_p, cert)
        out["hosts"][host] = {"cert": cert_p, "key": key_p}
    return out
