"""Raw floor for benchmarks/checklist.py: the security_checklist module's docker/TLS/file operations done
directly by one Python process on the registry host, without Ansible (stdlib + python3-docker +
python3-cryptography, as on the host). Same I/O as the module: container get/inspect of the six
services, logs (agent tail 200, cert-writer tail 50, registry since the window), spire-agent
healthcheck, psql and redis-cli password checks with their controls via exec, image inspect + registry digest of the six
images, TLS probes of :<port> (health, the five federation endpoints without client cert, legacy
header and a positive probe with the SVID), reads of .env.operator, the certs volume, agent-data.json
and x509pop.crt, and the X.509 parsing of them. Network/Docker calls run in a thread pool like the
module's. Prints one JSON line: {"in_process_s", "in_process_with_imports_s", "ops", "errors"}.

    docker cp benchmarks/checklist_floor.py lab-host1:/tmp/ && \
    docker exec lab-host1 python3 /tmp/checklist_floor.py registry1 [8443] [300]
"""

import time

T_START = time.monotonic()

# pylint: disable=wrong-import-position
import base64  # noqa: E402
import datetime  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import ssl  # noqa: E402
import sys  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import docker  # noqa: E402
from cryptography import x509  # noqa: E402

SERVICES = ("spire-agent", "cert-writer", "nginx-federation", "registry", "db", "redis")
ENDPOINTS = (("POST", "/api/v1/events/"), ("GET", "/api/v1/federation/agent-cards"),
             ("POST", "/api/v1/federation/sync-request"), ("POST", "/internal/federation/query"),
             ("POST", "/api/v1/cross-teg/transfer"))


def tls(cert=None, key=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def https(port, method, path, ctx, headers=None, body=None):
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    try:
        conn.connect()
        peer = conn.sock.getpeercert(binary_form=True)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        resp.read(65536)
        return {"status": resp.status, "peer_len": len(peer or b"")}
    except (OSError, http.client.HTTPException) as exc:
        return {"error": type(exc).__name__}
    finally:
        conn.close()


def read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def pem_certs(data):
    marker = b"-----END CERTIFICATE-----"
    blocks = [b + marker for b in (data or b"").split(marker) if b"-----BEGIN CERTIFICATE-----" in b]
    return [x509.load_pem_x509_certificate(b) for b in blocks]


def env_file(path):
    out = {}
    for line in (read(path) or b"").decode().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip().strip("'\"")
    return out


def main():
    registry = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 8443
    window = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    t0 = time.monotonic()
    now = datetime.datetime.now(datetime.timezone.utc)
    stack = "/opt/theprotocol/%s" % registry
    env_path = os.path.join(stack, ".env.operator")
    os.lstat(env_path)
    env = env_file(env_path)
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=30)
    client.ping()
    containers = {s: client.containers.get("%s-%s" % (registry, s)) for s in SERVICES}
    mounts = {s: {m["Destination"]: m["Source"] for m in c.attrs.get("Mounts") or []} for s, c in containers.items()}
    certs = mounts["cert-writer"]["/certs"]
    agent_dir = mounts["spire-agent"]["/opt/spire/data/agent"]
    svid, key = os.path.join(certs, "svid.pem"), os.path.join(certs, "svid_key.pem")
    svid_pem, bundle_pem = read(svid), read(os.path.join(certs, "bundle.pem"))
    read(key)
    os.lstat(os.path.join(certs, "..data") if os.path.lexists(os.path.join(certs, "..data")) else svid)
    agent_data = json.loads(read(os.path.join(agent_dir, "agent-data.json")) or b"{}")
    x509pop = read(os.path.join(stack, "spire", "x509pop.crt"))
    parsed = pem_certs(svid_pem) + pem_certs(bundle_pem)
    parsed += pem_certs(b"".join(base64.b64decode(d) for d in agent_data.get("svid") or []))
    if x509pop:
        parsed += pem_certs(x509pop)
    no_cert, with_cert = tls(), tls(svid, key)

    def image(service):
        ref = containers[service].attrs["Config"]["Image"]
        client.images.get(containers[service].attrs["Image"])
        return client.images.get_registry_data(ref).id

    def execr(service, argv, environment=None):
        return containers[service].exec_run(argv, environment=environment).exit_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        jobs = [pool.submit(https, port, "GET", "/health", no_cert)]
        jobs += [pool.submit(https, port, m, p, no_cert, None, b"{}" if m == "POST" else None) for m, p in ENDPOINTS]
        jobs += [pool.submit(https, port, "POST", "/api/v1/events/", with_cert,
                             {"X-Federation-License": "checklist-probe", "Content-Type": "application/json"}, b"{}"),
                 pool.submit(https, port, "GET", "/api/v1/federation/agent-cards", with_cert),
                 pool.submit(execr, "spire-agent", ["/opt/spire/bin/spire-agent", "healthcheck"]),
                 pool.submit(containers["spire-agent"].logs, timestamps=True, tail=200),
                 pool.submit(containers["cert-writer"].logs, timestamps=True, tail=50),
                 pool.submit(containers["registry"].logs, timestamps=True,
                             since=int((now - datetime.timedelta(seconds=window)).timestamp())),
                 # Password checks as the module makes them: over the network (-h db; the official image
                 # trusts 127.0.0.1) and each with its control (a random wrong password; Redis also none).
                 pool.submit(execr, "db", ["/bin/sh", "-c", " ; ".join(
                     'PGPASSWORD="$P%d" psql -X -w -h db -U "$U" -d "$D" -tAc "SELECT 1"' % i for i in (1, 2))],
                     {"P1": base64.b64encode(os.urandom(18)).decode(), "P2": env.get("POSTGRES_PASSWORD", ""),
                      "U": env.get("POSTGRES_USER", "postgres"),
                      "D": env.get("POSTGRES_DB", env.get("POSTGRES_USER", "postgres")), "PGCONNECT_TIMEOUT": "5"}),
                 pool.submit(execr, "redis", ["/bin/sh", "-c", "redis-cli -h 127.0.0.1 ping ; " + " ; ".join(
                     'REDISCLI_AUTH="$P%d" redis-cli -h 127.0.0.1 --no-auth-warning ping' % i for i in (1, 2))],
                     {"P1": base64.b64encode(os.urandom(18)).decode(), "P2": env.get("REDIS_PASSWORD", "")})]
        jobs += [pool.submit(image, s) for s in SERVICES]
        results = [j.result() for j in jobs]
    client.close()
    end = time.monotonic()
    errors = [r for r in results if isinstance(r, dict) and r.get("error")]
    print(json.dumps({"in_process_s": round(end - t0, 4), "in_process_with_imports_s": round(end - T_START, 4),
                      "ops": len(results), "certs_parsed": len(parsed), "errors": errors}))


if __name__ == "__main__":
    main()
