#!/usr/bin/env python3
"""Offline lab for theprotocol.operator: build the images, bring the lab up and down.

    labctl.py build            build (or reuse) the base image, SPIRE binaries, lab images
    labctl.py up [--hosts N]   build, then start the frame, EventStore, image registry, N hosts
                               (with N >= 8, host8 is the SSH host: reached over SSH as the
                               non-root user "operator" with passwordless sudo)
    labctl.py down             remove every lab container, network, volume and lab/state
    labctl.py status           show what runs

Everything is idempotent: a second `up` reuses the cached base image, SPIRE binaries,
images and running containers whose configuration did not change.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import docker
import docker.errors
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

import labpki

REPO = Path(__file__).resolve().parent.parent
LAB = REPO / "lab"
IMAGES_DIR = LAB / "images"
STATE = Path(os.environ.get("LAB_STATE_DIR", LAB / "state"))
CACHE = Path(
    os.environ.get("THEPROTOCOL_LAB_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "theprotocol-lab"
)

SPIRE_VERSION = "1.13.3"
TRUST_DOMAIN = "example.com"
LABEL = "theprotocol.lab"
NETWORK = "theprotocol-lab"
IMAGE_PREFIX = "theprotocol-lab"
IMAGE_TAG = "lab"
BASE_IMAGE = f"{IMAGE_PREFIX}/base:bookworm"
MAX_HOSTS = 11  # the integration tests use 11: one host per test module that changes its stack

FRAME = "lab-spire-server"
EVENTSTORE = "lab-eventstore"
REGISTRY = "lab-image-registry"
SMTP_SINK = "lab-smtp-sink"

# The SSH host: the lab host that Ansible reaches the way operators reach their VMs, over SSH as a
# non-root user with passwordless sudo (ansible_become), when the lab has that many hosts. The
# other lab hosts keep the docker connection (as root).
SSH_HOST = "host8"
SSH_USER = "operator"          # passwordless sudo
SSH_NOSUDO_USER = "nosudo"     # the same key, no sudo at all (the become failure is tested with it)
SSH_COMMON_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"  # lab only

# name -> extra build inputs (binaries copied into the build context)
IMAGES = {
    "spire-server": ["spire-server"],
    "spire-agent": ["spire-agent"],
    "cert-writer": ["cert-writer"],
    "nginx": [],
    "postgres": [],
    "redis": [],
    "registry": [],
    "image-registry": [],
    "host": [],
    "smtp-sink": [],
}
# images pushed to the lab registry (what an operator stack pulls)
STACK_IMAGES = ["spire-agent", "cert-writer", "nginx", "postgres", "redis", "registry"]


class LabError(Exception):
    """An error with a message that says what to do; printed as one line."""


def log(msg: str) -> None:
    print(f"lab: {msg}", flush=True)


def image_ref(name: str) -> str:
    return f"{IMAGE_PREFIX}/{name}:{IMAGE_TAG}"


def docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=300)
        client.ping()
        return client
    except Exception as exc:  # noqa: BLE001 - any failure here means the same thing
        raise LabError(f"cannot reach dockerd ({exc.__class__.__name__}); run 'bash lab/bootstrap.sh' first") from None


# ---------------------------------------------------------------------------- build

def _run(cmd: list[str], cwd: Path | None = None, env: dict | None = None, what: str = "") -> None:
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise LabError(f"{what or cmd[0]} failed (exit {proc.returncode}):\n{tail}")


def spire_binaries() -> Path:
    """SPIRE server and agent built from the Go module proxy, cached per version."""
    out = CACHE / f"spire-{SPIRE_VERSION}"
    if (out / "spire-server").is_file() and (out / "spire-agent").is_file():
        return out
    if not shutil.which("go"):
        raise LabError(
            f"SPIRE {SPIRE_VERSION} is not cached in {out} and the Go toolchain is missing: "
            "install Go >= 1.24 (https://go.dev/doc/install) and re-run"
        )
    if not (shutil.which("cc") or shutil.which("gcc")):
        raise LabError("spire-server needs cgo (sqlite): install a C compiler (apt-get install gcc) and re-run")
    log(f"building SPIRE v{SPIRE_VERSION} from the Go module proxy (once; cached in {out})")
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="spire-build-") as tmp:
        # The one cgo package, go-sqlite3 (the server's datastore), compiles the SQLite amalgamation in one
        # serial job: 61 s with Go's default -O2 -g, 28 s with -O1 -g0 (benchmarks/README.md, the cold run
        # of 2026-11-28 09:45).
        env = dict(os.environ, CGO_ENABLED="1", GOBIN=str(Path(tmp) / "bin"), GOFLAGS="-buildvcs=false",
                   CGO_CFLAGS="-O1 -g0")
        _run(["go", "mod", "init", "spirebuild"], cwd=Path(tmp), env=env, what="go mod init")
        for cmd in ("spire-server", "spire-agent"):
            _run(["go", "get", "-tool", f"github.com/spiffe/spire/cmd/{cmd}@v{SPIRE_VERSION}"],
                 cwd=Path(tmp), env=env, what=f"go get {cmd}")
        _run(["go", "install", "-ldflags=-s -w",
              "github.com/spiffe/spire/cmd/spire-server", "github.com/spiffe/spire/cmd/spire-agent"],
             cwd=Path(tmp), env=env, what="go install spire")
        out.mkdir(parents=True, exist_ok=True)
        for cmd in ("spire-server", "spire-agent"):
            shutil.copy2(Path(tmp) / "bin" / cmd, out / f".{cmd}.tmp")
            os.replace(out / f".{cmd}.tmp", out / cmd)
    log(f"built SPIRE v{SPIRE_VERSION} in {time.monotonic() - start:.0f}s")
    return out


def _tree_hash(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            if "__pycache__" in f.parts or f.name.endswith(".pyc") or f.name == "tests" or "tests" in f.relative_to(root.parent).parts[1:2]:
                continue
            h.update(str(f.relative_to(root.parent)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def cert_writer_binary() -> Path:
    src = IMAGES_DIR / "cert-writer"
    digest = _tree_hash([p for p in src.iterdir() if p.suffix in (".go", ".mod", ".sum") and not p.name.endswith("_test.go")])[:16]
    out = CACHE / f"cert-writer-{digest}" / "cert-writer"
    if out.is_file():
        return out
    if not shutil.which("go"):
        raise LabError("the cert-writer needs the Go toolchain to build: install Go >= 1.24 and re-run")
    log("building cert-writer")
    out.parent.mkdir(parents=True, exist_ok=True)
    _run(["bash", str(src / "build.sh"), str(out)], cwd=src, what="cert-writer build")
    return out


def base_image(client: docker.DockerClient) -> str:
    try:
        return client.images.get(BASE_IMAGE).id
    except docker.errors.ImageNotFound:
        pass
    if not shutil.which("debootstrap"):
        raise LabError("debootstrap is missing: run 'bash lab/bootstrap.sh' first")
    log("building the base image with debootstrap (once)")
    _run(["bash", str(IMAGES_DIR / "base" / "build.sh"), BASE_IMAGE], what="base image build")
    return client.images.get(BASE_IMAGE).id


def build_images(client: docker.DockerClient, only: list[str] | None = None) -> dict[str, str]:
    """Build every lab image whose inputs changed; return name -> image id."""
    base_id = base_image(client)
    binaries: dict[str, Path] = {}
    names = only or list(IMAGES)
    if any(b in ("spire-server", "spire-agent") for n in names for b in IMAGES[n]):
        spire = spire_binaries()
        binaries.update({"spire-server": spire / "spire-server", "spire-agent": spire / "spire-agent"})
    if any("cert-writer" in IMAGES[n] for n in names):
        binaries["cert-writer"] = cert_writer_binary()
    ids = {}
    for name in names:
        ctx = IMAGES_DIR / name
        extra = [binaries[b] for b in IMAGES[name]]
        digest = hashlib.sha256((base_id + _tree_hash([ctx] + extra)).encode()).hexdigest()
        ref = image_ref(name)
        try:
            img = client.images.get(ref)
            if img.labels.get(f"{LABEL}.image.inputs") == digest:
                ids[name] = img.id
                continue
        except docker.errors.ImageNotFound:
            pass
        log(f"building image {ref}")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for f in sorted(ctx.rglob("*")):
                rel = f.relative_to(ctx)
                if "__pycache__" in rel.parts or rel.parts[0] == "tests" or f.suffix == ".pyc":
                    continue
                if name == "cert-writer" and f.is_file() and f.name != "Dockerfile":
                    continue  # the Go sources are built outside; only the binary goes in
                tar.add(f, arcname=str(rel), recursive=False)
            for b in extra:
                tar.add(b, arcname=b.name)
        buf.seek(0)
        try:
            img, _ = client.images.build(fileobj=buf, custom_context=True, tag=ref, rm=True, forcerm=True,
                                         labels={f"{LABEL}.image.inputs": digest}, pull=False)
        except docker.errors.BuildError as exc:
            tail = "".join(str(c.get("stream", c.get("error", ""))) for c in list(exc.build_log)[-12:])
            raise LabError(f"building {ref} failed: {exc.msg}\n{tail}") from None
        ids[name] = img.id
    return ids


# ---------------------------------------------------------------------------- run

def _config_hash(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def ensure_container(client: docker.DockerClient, name: str, image: str, ip: str, *, image_id: str,
                     command=None, environment=None, binds=None, ports=None, host_config_extra=None,
                     hostname=None, aliases=None, role="frame") -> tuple:
    """Create/start a container on the lab network, recreating it when its spec changed."""
    spec = dict(image_id=image_id, command=command, environment=environment, binds=binds, ports=ports,
                extra=host_config_extra, hostname=hostname, ip=ip)
    want = _config_hash(spec)
    try:
        c = client.containers.get(name)
        if c.labels.get(f"{LABEL}.config") == want:
            if c.status != "running":
                c.start()
            return c, False
        c.remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    api = client.api
    host_config = api.create_host_config(
        binds=binds or [], port_bindings=ports or {}, restart_policy={"Name": "unless-stopped"},
        log_config={"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
        **{k: v for k, v in (host_config_extra or {}).items() if k != "systempaths_unconfined"},
    )
    if (host_config_extra or {}).get("systempaths_unconfined"):
        # what `docker run --security-opt systempaths=unconfined` sends: no masked, no read-only paths
        host_config["MaskedPaths"] = []
        host_config["ReadonlyPaths"] = []
    net_cfg = api.create_networking_config(
        {NETWORK: api.create_endpoint_config(ipv4_address=ip, aliases=aliases or [])})
    api.create_container(
        image, name=name, hostname=hostname or name, command=command, environment=environment,
        labels={LABEL: "1", f"{LABEL}.config": want, f"{LABEL}.role": role}, host_config=host_config, networking_config=net_cfg,
        ports=[int(p.split("/")[0]) for p in (ports or {})],
    )
    c = client.containers.get(name)
    c.start()
    return c, True


def wait_healthy(client, name: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = client.containers.get(name)
        health = c.attrs["State"].get("Health", {}).get("Status")
        if c.status == "running" and health in (None, "healthy"):
            return
        if c.status in ("exited", "dead"):
            break
        time.sleep(1)
    logs = client.containers.get(name).logs(tail=15).decode(errors="replace")
    raise LabError(f"{name} did not become healthy within {timeout:.0f}s; last log lines:\n{logs}")


def exec_ok(container, cmd: list[str], what: str) -> str:
    res = container.exec_run(cmd, demux=False)
    out = res.output.decode(errors="replace")
    if res.exit_code != 0:
        raise LabError(f"{what} failed in {container.name} (exit {res.exit_code}): {out.strip()[-800:]}")
    return out


def read_file_from(container, path: str) -> bytes:
    stream, _ = container.get_archive(path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.getmembers()[0]
        return tar.extractfile(member).read()


def lab_addresses(subnet: str, hosts: int) -> dict[str, str]:
    net = ipaddress.ip_network(subnet)
    if net.num_addresses < 256:
        raise LabError(f"LAB_SUBNET {subnet} is too small: use a /24 or larger")
    base = net.network_address
    addrs = {FRAME: str(base + 10), EVENTSTORE: str(base + 11), REGISTRY: str(base + 12), SMTP_SINK: str(base + 13)}
    for i in range(1, hosts + 1):
        addrs[f"lab-host{i}"] = str(base + 100 + i)
    return addrs


def ensure_network(client, subnet: str):
    try:
        net = client.networks.get(NETWORK)
        have = net.attrs["IPAM"]["Config"][0]["Subnet"]
        if have != subnet:
            raise LabError(f"network {NETWORK} exists with subnet {have}, not {subnet}: run 'make lab-down' first")
        return net
    except docker.errors.NotFound:
        pass
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
    try:
        return client.networks.create(NETWORK, driver="bridge", ipam=ipam, labels={LABEL: "1"})
    except docker.errors.APIError as exc:
        raise LabError(f"cannot create network {NETWORK} with subnet {subnet} ({exc.explanation}); "
                       "set LAB_SUBNET to a free /24") from None


SERVER_CONF = """\
server {{
    bind_address = "0.0.0.0"
    bind_port = "8081"
    trust_domain = "{td}"
    data_dir = "/opt/spire/data/server"
    log_level = "INFO"
    ca_ttl = "168h"
    default_x509_svid_ttl = "1h"
    ca_subject {{
        country = ["US"]
        organization = ["TheProtocol lab frame"]
    }}
}}

plugins {{
    DataStore "sql" {{
        plugin_data {{
            database_type = "sqlite3"
            connection_string = "/opt/spire/data/server/datastore.sqlite3"
        }}
    }}
    KeyManager "disk" {{
        plugin_data {{
            keys_path = "/opt/spire/data/server/keys.json"
        }}
    }}
    NodeAttestor "x509pop" {{
        plugin_data {{
            ca_bundle_path = "/opt/spire/conf/server/frame-ca.pem"
        }}
    }}
}}
"""

EVENTSTORE_CONF = """\
# EventStore stand-in: requires a client certificate chaining to the SPIRE bundle.
# Tests make it refuse a registry host (403, like a suspended operator) by writing
# "<host address> 1;" lines into /etc/eventstore/deny/denied.geo and reloading nginx.
geo $eventstore_denied {
    default 0;
    include /etc/eventstore/deny/denied.geo;
}

server {
    listen 8443 ssl;
    server_name lab-eventstore;
    ssl_certificate     /etc/eventstore/tls/svid.pem;
    ssl_certificate_key /etc/eventstore/tls/key.pem;
    ssl_client_certificate /etc/eventstore/tls/bundle.pem;
    ssl_verify_client optional;
    ssl_verify_depth 3;
    ssl_protocols TLSv1.2 TLSv1.3;
    default_type application/json;
    # A client certificate that does not verify (495) is refused like a missing one.
    error_page 495 496 = @refused;
    location @refused {
        return 403 '{"error":"mTLS client certificate from the federation trust domain required"}';
    }

    location = /health { return 200 '{"status":"ok"}'; }

    location = /api/v1/events/ {
        if ($ssl_client_verify != SUCCESS) {
            return 403 '{"error":"mTLS client certificate from the federation trust domain required"}';
        }
        if ($request_method != POST) { return 405 '{"error":"POST only"}'; }
        if ($eventstore_denied) {
            return 403 '{"error":"operator suspended by the EventStore"}';
        }
        return 201 '{"accepted":true}';
    }

    location / {
        if ($ssl_client_verify != SUCCESS) {
            return 403 '{"error":"mTLS client certificate from the federation trust domain required"}';
        }
        return 404 '{"error":"not found"}';
    }
}
"""


def _write(path: Path, data: bytes | str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    tmp.chmod(mode)
    os.replace(tmp, path)


def ssh_host(hosts: int) -> str | None:
    """The inventory name of the lab's SSH host when a lab of `hosts` hosts has it."""
    return SSH_HOST if hosts >= int(SSH_HOST.removeprefix("host")) else None


def ensure_ssh_key(directory: Path) -> tuple[Path, str]:
    """The lab's SSH key pair (ed25519, OpenSSH format) in `directory`: made once, reused after.
    Returns the private key's path (0600) and the public key line."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    private, public = directory / "id_ed25519", directory / "id_ed25519.pub"
    if private.exists():
        key = serialization.load_ssh_private_key(private.read_bytes(), password=None)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
        _write(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()), 0o600)
        log(f"made the lab SSH key {private}")
    if private.stat().st_mode & 0o077:
        private.chmod(0o600)  # ssh refuses a private key that others can read
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    line += " theprotocol-lab"
    if not public.exists() or public.read_text().strip() != line:
        _write(public, line + "\n")
    return private, line


# Run in the SSH host as root; prints "changed" when it changed anything. Host keys made once,
# both users with the lab key, sudoers checked by visudo before it is installed, sshd on.
SSH_HOST_SETUP = r"""
set -eu
changed=0
if [ ! -s /etc/ssh/ssh_host_ed25519_key ]; then ssh-keygen -A >/dev/null; changed=1; fi
for user in "$SSH_USER" "$SSH_NOSUDO_USER"; do
  if ! id -u "$user" >/dev/null 2>&1; then
    # Debian has a system group "operator": no user group, primary group "users";
    # password "*": no password login, yet not a locked account for sshd.
    useradd --create-home --shell /bin/bash --no-user-group --password '*' "$user"
    changed=1
  fi
  home=$(getent passwd "$user" | cut -d: -f6)
  group=$(id -gn "$user")
  if [ ! -d "$home/.ssh" ] || [ "$(stat -c %a:%U "$home/.ssh")" != "700:$user" ]; then
    install -d -m 0700 -o "$user" -g "$group" "$home/.ssh"; changed=1
  fi
  keys=$home/.ssh/authorized_keys
  if [ "$(cat "$keys" 2>/dev/null)" != "$SSH_PUBLIC_KEY" ] || [ "$(stat -c %a:%U "$keys")" != "600:$user" ]; then
    printf '%s
' "$SSH_PUBLIC_KEY" > "$keys.tmp"
    chown "$user:$group" "$keys.tmp"; chmod 0600 "$keys.tmp"; mv "$keys.tmp" "$keys"; changed=1
  fi
done
sudoers=/etc/sudoers.d/theprotocol-lab-$SSH_USER
want="$SSH_USER ALL=(ALL:ALL) NOPASSWD: ALL"
if [ "$(cat "$sudoers" 2>/dev/null)" != "$want" ] || [ "$(stat -c %a "$sudoers")" != 440 ]; then
  tmp=$(mktemp)
  printf '%s
' "$want" > "$tmp"
  visudo -cqf "$tmp"
  install -m 0440 -o root -g root "$tmp" "$sudoers"
  rm -f "$tmp"
  changed=1
fi
if [ "$(systemctl is-enabled ssh.service 2>/dev/null)" != enabled ] || ! systemctl is-active -q ssh.service; then
  systemctl enable --now -q ssh.service
  changed=1
fi
[ "$changed" = 0 ] || echo changed
"""


def ensure_ssh_host(client, name: str, address: str) -> dict:
    """Make the lab host `name` an SSH host (see SSH_HOST_SETUP) and wait until SSH lets the
    operator user in with the lab key. Idempotent: a second run changes nothing."""
    private, public = ensure_ssh_key(STATE / "ssh")
    container = client.containers.get(f"lab-{name}")
    res = container.exec_run(["/bin/sh", "-c", SSH_HOST_SETUP], environment={
        "SSH_USER": SSH_USER, "SSH_NOSUDO_USER": SSH_NOSUDO_USER, "SSH_PUBLIC_KEY": public})
    out = res.output.decode(errors="replace")
    if res.exit_code != 0:
        raise LabError(f"setting up SSH in lab-{name} failed (exit {res.exit_code}): {out.strip()[-800:]}")
    if "changed" in out:
        log(f"lab-{name}: sshd on, users {SSH_USER} (passwordless sudo) and {SSH_NOSUDO_USER} (no sudo) with the lab key")
    wait_ssh(address, private)
    return {"address": address, "user": SSH_USER, "nosudo_user": SSH_NOSUDO_USER, "private_key": str(private),
            "common_args": SSH_COMMON_ARGS}


def wait_ssh(address: str, private: Path, timeout: float = 60) -> None:
    """Wait until `ssh operator@address true` works with the lab key (Ansible's ssh connection
    needs the OpenSSH client on the controller too)."""
    if not shutil.which("ssh"):
        raise LabError("the OpenSSH client is missing on this machine (Ansible's ssh connection needs it): "
                       "run 'bash lab/bootstrap.sh' or apt-get install openssh-client")
    cmd = ["ssh", "-i", str(private), "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes",
           *SSH_COMMON_ARGS.split(), "-o", "LogLevel=ERROR", f"{SSH_USER}@{address}", "true"]
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode == 0:
            return
        last = (proc.stderr or proc.stdout).strip()[-300:]
        time.sleep(1)
    raise LabError(f"SSH to {SSH_USER}@{address} does not answer within {timeout:.0f}s ({last}); "
                   f"see 'docker exec lab-{SSH_HOST} journalctl -u ssh'")


# The lab SMTP sink (incident_response escalation mails); lab-only credentials.
SMTP_SINK_PORT = 2525
SMTP_SINK_USER = "incident"
SMTP_SINK_PASSWORD = "lab-smtp-sink-password"


def ensure_smtp_sink(client, subnet: str, image_id: str | None = None) -> dict:
    """lab-smtp-sink at base + 13: STARTTLS (required) with a certificate from the lab TLS CA,
    AUTH with the lab credentials, each message stored under /var/spool/smtp-sink."""
    if image_id is None:
        image_id = build_images(client, ["smtp-sink"])["smtp-sink"]
    ip = lab_addresses(subnet, 1)[SMTP_SINK]
    pki_dir, tls_dir = STATE / "pki", STATE / "smtp-sink"
    ca_cert, ca_key = labpki.load_cert(pki_dir / "tls-ca.crt"), labpki.load_key(pki_dir / "tls-ca.key")
    crt = tls_dir / "server.crt"
    if labpki.needs_renewal(crt, 30 * 86400) or labpki.load_cert(crt).issuer != ca_cert.subject:
        cert, key = labpki.issue_server(ca_cert, ca_key, [SMTP_SINK], [ip])
        _write(tls_dir / "server.key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()), 0o600)
        _write(crt, cert.public_bytes(serialization.Encoding.PEM))
    ensure_container(client, SMTP_SINK, image_ref("smtp-sink"), ip, image_id=image_id + _tree_hash([tls_dir])[:16],
                     binds=[f"{tls_dir}:/etc/smtp-sink/tls:ro"],
                     environment={"SMTP_SINK_USER": SMTP_SINK_USER, "SMTP_SINK_PASSWORD": SMTP_SINK_PASSWORD})
    wait_healthy(client, SMTP_SINK, 60)
    return {"container": SMTP_SINK, "address": ip, "port": SMTP_SINK_PORT, "user": SMTP_SINK_USER,
            "password": SMTP_SINK_PASSWORD, "spool": "/var/spool/smtp-sink", "ca_cert": str(pki_dir / "tls-ca.crt")}


def parse_hosts(value: str | None, current: int = 0) -> int:
    """The number of lab hosts: ``value``, else $LAB_HOSTS, else the running lab's size (at least 1),
    so that a plain ``make lab-up`` (or a target that needs the lab, like ``make molecule``) never
    shrinks a lab that was brought up bigger; only an explicit LAB_HOSTS does."""
    raw = value if value not in (None, "") else os.environ.get("LAB_HOSTS") or str(max(current, 1))
    try:
        n = int(str(raw).strip())
    except ValueError:
        raise LabError(f"LAB_HOSTS={raw!r} is not a number: use an integer from 1 to {MAX_HOSTS}, e.g. LAB_HOSTS=4") from None
    if not 1 <= n <= MAX_HOSTS:
        raise LabError(f"LAB_HOSTS={n} is out of range: use an integer from 1 to {MAX_HOSTS}")
    return n


def up(hosts: int, subnet: str, registry_port: int) -> dict:
    client = docker_client()
    start = time.monotonic()
    ids = build_images(client)
    addrs = lab_addresses(subnet, hosts)
    ensure_network(client, subnet)
    pki = labpki.ensure_pki(STATE / "pki", [f"host{i}" for i in range(1, hosts + 1)],
                            registry_names=[REGISTRY, "localhost"], registry_ips=[addrs[REGISTRY], "127.0.0.1"])

    # Frame: SPIRE server with x509pop trusting the frame CA.
    frame_dir = STATE / "frame"
    _write(frame_dir / "server.conf", SERVER_CONF.format(td=TRUST_DOMAIN))
    shutil.copy2(pki["frame_ca_cert"], frame_dir / "frame-ca.pem")
    server, _ = ensure_container(
        client, FRAME, image_ref("spire-server"), addrs[FRAME], image_id=ids["spire-server"],
        binds=[f"{frame_dir / 'server.conf'}:/opt/spire/conf/server/server.conf:ro",
               f"{frame_dir / 'frame-ca.pem'}:/opt/spire/conf/server/frame-ca.pem:ro",
               "theprotocol-lab-frame-data:/opt/spire/data/server"],
    )
    wait_healthy(client, FRAME, 120)
    bundle = exec_ok(server, ["/opt/spire/bin/spire-server", "bundle", "show", "-format", "pem"], "bundle show")
    _write(frame_dir / "bundle.pem", bundle)

    # EventStore stand-in: nginx with an SVID minted by the frame, verifying clients against the bundle.
    es_dir = STATE / "eventstore"
    es_bundle = es_dir / "tls" / "bundle.pem"
    if labpki.needs_renewal(es_dir / "tls" / "svid.pem", min_seconds=6 * 3600) or \
            not es_bundle.exists() or es_bundle.read_text() != bundle:
        exec_ok(server, ["rm", "-rf", "/tmp/eventstore-mint"], "cleanup")
        exec_ok(server, ["mkdir", "-p", "/tmp/eventstore-mint"], "mkdir")
        exec_ok(server, ["/opt/spire/bin/spire-server", "x509", "mint", "-spiffeID",
                         f"spiffe://{TRUST_DOMAIN}/service/eventstore", "-dns", EVENTSTORE, "-ttl", "48h",
                         "-write", "/tmp/eventstore-mint"], "x509 mint (eventstore)")
        for src, dst, mode in (("svid.pem", "svid.pem", 0o644), ("key.pem", "key.pem", 0o600)):
            _write(es_dir / "tls" / dst, read_file_from(server, f"/tmp/eventstore-mint/{src}"), mode)
        _write(es_dir / "tls" / "bundle.pem", bundle)
        exec_ok(server, ["rm", "-rf", "/tmp/eventstore-mint"], "cleanup")
    _write(es_dir / "eventstore.conf", EVENTSTORE_CONF)
    (es_dir / "deny").mkdir(exist_ok=True)
    if not (es_dir / "deny" / "denied.geo").exists():
        _write(es_dir / "deny" / "denied.geo", "# <registry host address> 1;  (one line per refused host)\n")
    es_inputs = _tree_hash([es_dir])[:16]
    ensure_container(
        client, EVENTSTORE, image_ref("nginx"), addrs[EVENTSTORE], image_id=ids["nginx"] + es_inputs,
        binds=[f"{es_dir / 'eventstore.conf'}:/etc/nginx/conf.d/eventstore.conf:ro",
               f"{es_dir / 'tls'}:/etc/eventstore/tls:ro", f"{es_dir / 'deny'}:/etc/eventstore/deny:ro"],
    )

    # Image registry with the lab images the operator stack pulls.
    reg_dir = STATE / "image-registry"
    reg_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy2(pki["registry_cert"], reg_dir / "server.crt")
    shutil.copy2(pki["registry_key"], reg_dir / "server.key")
    ensure_container(
        client, REGISTRY, image_ref("image-registry"), addrs[REGISTRY], image_id=ids["image-registry"],
        binds=[f"{reg_dir}:/etc/docker/registry/tls:ro", "theprotocol-lab-registry-data:/var/lib/docker-registry"],
        ports={"5000/tcp": ("127.0.0.1", registry_port)},
    )
    wait_healthy(client, EVENTSTORE, 60)
    wait_registry(registry_port, pki["tls_ca_cert"])
    push_images(client, registry_port)
    smtp_sink = ensure_smtp_sink(client, subnet, ids["smtp-sink"])

    # Hosts: systemd containers that behave like VMs.
    want_hosts = {f"lab-host{i}" for i in range(1, hosts + 1)}
    for c in client.containers.list(all=True, filters={"label": f"{LABEL}.role=host"}):
        if c.name not in want_hosts:
            log(f"removing {c.name} (LAB_HOSTS={hosts})")
            c.remove(force=True, v=True)
    for i in range(1, hosts + 1):
        name = f"lab-host{i}"
        ensure_container(
            client, name, image_ref("host"), addrs[name], image_id=ids["host"], hostname=f"host{i}", role="host",
            binds=["/sys/fs/cgroup:/sys/fs/cgroup:rw"],
            host_config_extra=dict(
                cap_add=["ALL"], cap_drop=["SYS_RESOURCE"],
                security_opt=["seccomp=unconfined", "apparmor=unconfined"],
                tmpfs={"/run": "", "/run/lock": ""}, cgroupns="host", systempaths_unconfined=True,
            ),
        )
    for i in range(1, hosts + 1):
        wait_systemd(client, f"lab-host{i}")
    ssh_name = ssh_host(hosts)
    ssh = ensure_ssh_host(client, ssh_name, addrs[f"lab-{ssh_name}"]) if ssh_name else None

    facts = {
        "trust_domain": TRUST_DOMAIN, "network": NETWORK, "subnet": subnet, "addresses": addrs,
        "spire_server": {"container": FRAME, "address": addrs[FRAME], "port": 8081},
        "eventstore": {"container": EVENTSTORE, "address": addrs[EVENTSTORE], "port": 8443,
                       "url": f"https://{EVENTSTORE}:8443/api/v1/events/"},
        "image_registry": {"container": REGISTRY, "address": addrs[REGISTRY], "lab_name": f"{REGISTRY}:5000",
                           "local_name": f"localhost:{registry_port}",
                           "images": {n: f"{REGISTRY}:5000/theprotocol/{n}:{IMAGE_TAG}" for n in STACK_IMAGES}},
        "bundle": str(frame_dir / "bundle.pem"),
        "frame_ca_cert": str(pki["frame_ca_cert"]), "frame_ca_key": str(pki["frame_ca_key"]),
        "tls_ca_cert": str(pki["tls_ca_cert"]),
        "smtp_sink": smtp_sink,
        "hosts": {f"host{i}": {"container": f"lab-host{i}", "address": addrs[f"lab-host{i}"],
                               "x509pop_cert": str(pki["hosts"][f"host{i}"]["cert"]),
                               "x509pop_key": str(pki["hosts"][f"host{i}"]["key"]),
                               **({"ssh": ssh} if f"host{i}" == ssh_name else {})}
                  for i in range(1, hosts + 1)},
    }
    _write(STATE / "lab.json", json.dumps(facts, indent=2) + "\n")
    write_inventory(facts)
    log(f"up in {time.monotonic() - start:.0f}s")
    return facts


def wait_systemd(client, name: str, timeout: float = 90) -> None:
    c = client.containers.get(name)
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        res = c.exec_run(["systemctl", "is-system-running"])
        state = res.output.decode().strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    raise LabError(f"{name}: systemd did not finish booting within {timeout:.0f}s (state {state!r}); "
                   f"see 'docker logs {name}'")


def wait_registry(registry_port: int, ca_file: Path, timeout: float = 60) -> None:
    """Wait until the lab registry answers its API over TLS (it is pushed to right after it starts)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"https://localhost:{registry_port}/v2/", context=context, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (OSError, urllib.error.URLError) as exc:
            last = exc
        time.sleep(0.5)
    raise LabError(f"the lab image registry on localhost:{registry_port} does not answer ({last}); "
                   f"see 'docker logs {REGISTRY}'")


def push_images(client, registry_port: int) -> None:
    """Push the stack images to the lab registry (docker skips layers it already has)."""
    for name in STACK_IMAGES:
        local = f"localhost:{registry_port}/theprotocol/{name}"
        img = client.images.get(image_ref(name))
        img.tag(local, IMAGE_TAG)
        error = None
        for _ in range(5):
            try:
                error = next((line["error"] for line in client.images.push(local, IMAGE_TAG, stream=True, decode=True)
                              if "error" in line), None)
            except docker.errors.APIError as exc:
                error = str(exc)
            if error is None:
                break
            time.sleep(2)
        else:
            raise LabError(f"push {local}:{IMAGE_TAG} failed: {error}")


def ssh_inventory_vars(ssh: dict) -> dict:
    """Connection variables of the SSH host: as operators reach their VMs (non-root user, sudo)."""
    return {
        "ansible_connection": "ssh",
        "ansible_host": ssh["address"],
        "ansible_user": ssh["user"],
        "ansible_become": True,
        "ansible_ssh_private_key_file": ssh["private_key"],
        "ansible_ssh_common_args": ssh["common_args"],
    }


def write_inventory(facts: dict) -> None:
    """The lab inventory: the frame, the registry hosts, and the lab's values for the
    playbooks' theprotocol_* inputs (the inventory contract, playbooks/vars/theprotocol_inputs.yml) and the
    docker_engine role."""
    hosts = {}
    for h, info in facts["hosts"].items():
        n = h.removeprefix("host")
        hosts[h] = {
            "ansible_host": info["container"],
            "theprotocol_lab_address": info["address"],
            "theprotocol_operator_name": f"operator{n}",
            "theprotocol_registry_name": f"registry{n}",
            "theprotocol_registry_did": f"did:web:registry{n}.lab.example.com",
        }
        if "ssh" in info:
            hosts[h].update(ssh_inventory_vars(info["ssh"]))
    images = {n.replace("-", "_"): ref for n, ref in facts["image_registry"]["images"].items()}
    inv = {
        "all": {
            "vars": {
                "ansible_connection": "community.docker.docker",
                "ansible_python_interpreter": "/usr/bin/python3",
                "theprotocol_trust_domain": facts["trust_domain"],
                "theprotocol_spire_server_address": facts["spire_server"]["address"],
                "theprotocol_spire_server_port": facts["spire_server"]["port"],
                "theprotocol_frame_ca_cert": facts["frame_ca_cert"],
                "theprotocol_frame_ca_key": facts["frame_ca_key"],
                "theprotocol_onboarding_dir": str(STATE / "onboarding"),
                "theprotocol_images": images,
                "theprotocol_eventstore_url": facts["eventstore"]["url"],
                "theprotocol_extra_hosts": [f"{EVENTSTORE}:{facts['eventstore']['address']}"],
                # Short lifetimes so that rotation is seen within a test.
                "theprotocol_svid_ttl": 120,
                "theprotocol_cert_writer_interval": 15,
                "docker_engine_install_method": "distribution",
                "docker_engine_compose_plugin_source": "controller",
                "docker_engine_compose_plugin_controller_path": "/usr/local/lib/docker/cli-plugins/docker-compose",
                "docker_engine_registry_ca_certs": [
                    {"registry": facts["image_registry"]["lab_name"],
                     "ca_pem": Path(facts["tls_ca_cert"]).read_text()},
                ],
                "theprotocol_lab_bundle": facts["bundle"],
                "theprotocol_lab_eventstore_address": facts["eventstore"]["address"],
            },
            "children": {
                # The lab frame is a container reached as root (docker exec) without sudo: the
                # plays' become (sudo) is not needed there and would fail.
                "theprotocol_frame": {"hosts": {"frame": {"ansible_host": FRAME, "ansible_become": False}}},
                "theprotocol_registries": {"hosts": hosts},
            },
        }
    }
    _write(STATE / "inventory.yml", "# written by lab/labctl.py up; do not edit\n" + yaml.safe_dump(inv, sort_keys=False))


def down() -> None:
    client = docker_client()
    for c in client.containers.list(all=True, filters={"label": LABEL}):
        log(f"removing {c.name}")
        c.remove(force=True, v=True)
    for net in client.networks.list(names=[NETWORK]):
        net.remove()
    for vol in client.volumes.list(filters={"name": "theprotocol-lab-frame-data"}):
        vol.remove(force=True)
    if STATE.exists():
        shutil.rmtree(STATE)
    log("down (cached base image, SPIRE binaries, images and the lab registry's storage are kept)")


def status() -> int:
    client = docker_client()
    rows = client.containers.list(all=True, filters={"label": LABEL})
    if not rows:
        log("not running")
        return 1
    for c in sorted(rows, key=lambda c: c.name):
        health = c.attrs["State"].get("Health", {}).get("Status", "-")
        print(f"{c.name:24} {c.status:10} {health}")
    return 0


def print_usage(facts: dict) -> None:
    inv = STATE / "inventory.yml"
    hosts = ", ".join(f"{h} ({i['container']}, {i['address']})" for h, i in facts["hosts"].items())
    ssh = next((dict(i["ssh"], name=h) for h, i in facts["hosts"].items() if "ssh" in i), None)
    if ssh:
        ssh_line = (f"{ssh['name']} over SSH as {ssh['user']} (passwordless sudo, ansible_become: true; "
                    f"{ssh['nosudo_user']} has no sudo):\n"
                       f"                       ssh -i {ssh['private_key']} {ssh['user']}@{ssh['address']}")
    else:
        ssh_line = f"none ({SSH_HOST} is the SSH host with LAB_HOSTS={SSH_HOST.removeprefix('host')})"
    print(f"""
Lab is up (trust domain {facts['trust_domain']}, network {facts['network']} {facts['subnet']}):
  frame SPIRE server : {FRAME} {facts['spire_server']['address']}:8081 (x509pop, lab frame CA)
  EventStore         : {facts['eventstore']['url']}
  image registry     : {facts['image_registry']['local_name']} (hosts use {facts['image_registry']['lab_name']})
  hosts              : {hosts}
  SSH host           : {ssh_line}
Inventory: {inv}
  .venv/bin/ansible -i {inv} all -m ansible.builtin.ping
  .venv/bin/ansible-inventory -i {inv} --graph
Tear down: make lab-down""")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("images", nargs="*", help=f"images to build (default all): {', '.join(IMAGES)}")
    b.add_argument("--go", choices=("only", "none"), default=None,
                   help="only the images that need a Go build (SPIRE, cert-writer), or none of them; "
                        "make test builds the two groups at the same time (the Go build is CPU-bound, the others "
                        "mostly download Debian packages)")
    u = sub.add_parser("up")
    u.add_argument("--hosts", default=None, help=f"number of lab hosts, 1..{MAX_HOSTS} (default $LAB_HOSTS, else the running lab's size, else 1); "
                   f"with {SSH_HOST.removeprefix('host')}, {SSH_HOST} is the SSH host (user {SSH_USER}, sudo)")
    sub.add_parser("down")
    sub.add_parser("status")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "build":
            unknown = [i for i in args.images if i not in IMAGES]
            if unknown:
                raise LabError(f"unknown image(s) {', '.join(unknown)}; known: {', '.join(IMAGES)}")
            names = args.images or list(IMAGES)
            if args.go:
                names = [n for n in names if bool(IMAGES[n]) == (args.go == "only")]
            build_images(docker_client(), names)
            log("images ready")
        elif args.cmd == "up":
            running = docker_client().containers.list(all=True, filters={"label": f"{LABEL}.role=host"})
            hosts = parse_hosts(args.hosts, len(running))
            subnet = os.environ.get("LAB_SUBNET", "172.31.250.0/24")
            try:
                port = int(os.environ.get("LAB_REGISTRY_PORT", "5000"))
            except ValueError:
                raise LabError("LAB_REGISTRY_PORT must be a port number") from None
            print_usage(up(hosts, subnet, port))
        elif args.cmd == "down":
            down()
        else:
            return status()
    except LabError as exc:
        print(f"lab: ERROR: {exc}", file=sys.stderr)
        return 2
    except docker.errors.APIError as exc:
        print(f"lab: ERROR: dockerd refused a request: {exc.explanation or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
