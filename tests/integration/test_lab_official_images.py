"""The lab's postgres and redis images keep the official images' contracts (lab/images/*/README.md),
including the parts that make a naive password check worthless: the lab is a stricter copy of
production, never a friendlier one. Throwaway containers on a throwaway network; no lab host."""

import hashlib
import io
import secrets
import tarfile

import pytest

from conftest import sh, wait_for

PG_IMAGE = "theprotocol-lab/postgres:lab"
REDIS_IMAGE = "theprotocol-lab/redis:lab"
LABEL = {"theprotocol.lab.test": "official-images"}


@pytest.fixture
def net(dkr):
    network = dkr.networks.create(f"lab-it-official-{secrets.token_hex(4)}", labels=LABEL)
    volumes = []
    yield network, volumes
    for c in dkr.containers.list(all=True, filters={"label": "theprotocol.lab.test=official-images"}):
        c.remove(force=True, v=True)
    for name in volumes:
        dkr.volumes.get(name).remove(force=True)
    network.remove()


def _run(dkr, net, image, alias, environment=None, volume=None, mount=None, command=None, files=None):
    network, volumes = net
    binds = {}
    if volume:
        if volume not in volumes:
            dkr.volumes.create(volume, labels=LABEL)
            volumes.append(volume)
        binds[volume] = {"bind": mount, "mode": "rw"}
    c = dkr.containers.create(image, command=command, labels=LABEL, environment=environment or {}, volumes=binds,
                              network=network.name, networking_config={
                                  network.name: dkr.api.create_endpoint_config(aliases=[alias])})
    for path, (data, mode) in (files or {}).items():
        c.put_archive(path.rsplit("/", 1)[0], _tar(path.rsplit("/", 1)[1], data, mode))
    c.start()
    return c


def _tar(name, data, mode, uid=0, directory=None):
    """A tar with ``name`` (and optionally its ``directory`` first), owned by ``uid``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        if directory:
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, 0o700, uid, uid
            tar.addfile(info)
            name = f"{directory}/{name}"
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.uid, info.gid = len(data), mode, uid, uid
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _pg(dkr, net, volume, password, **extra):
    env = {"POSTGRES_USER": "registry", "POSTGRES_DB": "registry", "POSTGRES_PASSWORD": password}
    env.update(extra.pop("environment", {}))
    c = _run(dkr, net, PG_IMAGE, "db", env, volume, "/var/lib/postgresql/data", **extra)
    # The first-init server listens on the socket only: the network answers once the real one runs.
    wait_for("postgres to accept connections over the network",
             lambda: sh(c, ["pg_isready", "-q", "-h", "db"], check=False)[0] == 0, timeout=120)
    return c


def _login(pg, password, host="db"):
    """psql as the registry connects (over the network by default)."""
    return sh(pg, ["psql", "-X", "-w", "-h", host, "-U", "registry", "-d", "registry", "-tAc", "SELECT 1"],
              env={"PGPASSWORD": password}, check=False)


def test_postgres_trusts_loopback_and_asks_the_network(dkr, net):
    password = secrets.token_urlsafe(24)
    pg = _pg(dkr, net, f"lab-it-pg-{secrets.token_hex(4)}", password)
    hba = [line.split() for line in sh(pg, ["cat", "/var/lib/postgresql/data/pg_hba.conf"])[1].splitlines()
           if line.strip() and not line.lstrip().startswith("#")]
    assert ["local", "all", "all", "trust"] in hba, hba
    assert ["host", "all", "all", "127.0.0.1/32", "trust"] in hba and ["host", "all", "all", "::1/128", "trust"] in hba
    assert hba[-1] == ["host", "all", "all", "all", "scram-sha-256"], hba
    # The trap of the official image: ANY password works over 127.0.0.1 inside the container.
    code, out = _login(pg, "not-the-password", host="127.0.0.1")
    assert code == 0 and out.strip() == "1", out
    # Over the network (compose DNS name of the service) the password is checked.
    code, out = _login(pg, "not-the-password")
    assert code != 0 and "password authentication failed" in out, out
    code, out = _login(pg, password)
    assert code == 0 and out.strip() == "1", out
    assert sh(pg, ["id", "-u", "postgres"])[1].strip() == "999"


def test_changed_postgres_password_is_ignored_on_existing_data(dkr, net):
    old, new = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    volume = f"lab-it-pgtrap-{secrets.token_hex(4)}"
    pg = _pg(dkr, net, volume, old)
    sh(pg, ["psql", "-h", "/var/run/postgresql", "-U", "registry", "-d", "registry", "-c",
            "CREATE TABLE trap_rows(id int); INSERT INTO trap_rows SELECT generate_series(1, 42)"])
    pg.remove(force=True)  # the guide's `down` ...
    pg = _pg(dkr, net, volume, new)  # ... and `up -d` with the new .env value
    code, out = _login(pg, new)
    assert code != 0 and "password authentication failed" in out, out
    code, out = sh(pg, ["psql", "-X", "-w", "-h", "db", "-U", "registry", "-d", "registry", "-tAc",
                        "SELECT count(*) FROM trap_rows"], env={"PGPASSWORD": old}, check=False)
    assert code == 0 and out.strip() == "42", out
    assert "Skipping initialization" in pg.logs().decode()


def test_postgres_entrypoint_options(dkr, net):
    """*_FILE, POSTGRES_HOST_AUTH_METHOD, POSTGRES_INITDB_ARGS and /docker-entrypoint-initdb.d."""
    password = secrets.token_urlsafe(24)
    pg = _pg(dkr, net, f"lab-it-pgopt-{secrets.token_hex(4)}", "", environment={
        "POSTGRES_PASSWORD": "", "POSTGRES_PASSWORD_FILE": "/run/pw", "POSTGRES_HOST_AUTH_METHOD": "md5",
        "POSTGRES_INITDB_ARGS": "--data-checksums"}, files={
        "/run/pw": (password.encode(), 0o644),
        "/docker-entrypoint-initdb.d/10-rows.sql": (b"CREATE TABLE seeded(id int); INSERT INTO seeded VALUES (7);", 0o644),
        "/docker-entrypoint-initdb.d/20-mark.sh": (b"echo initdb-hook-ran >/tmp/hook\n", 0o644)})
    code, out = sh(pg, ["psql", "-X", "-w", "-h", "db", "-U", "registry", "-d", "registry", "-tAc",
                        "SELECT id FROM seeded"], env={"PGPASSWORD": password}, check=False)
    assert code == 0 and out.strip() == "7", out
    assert _login(pg, "wrong")[0] != 0
    hba = sh(pg, ["cat", "/var/lib/postgresql/data/pg_hba.conf"])[1].strip().splitlines()
    assert hba[-1].split() == ["host", "all", "all", "all", "md5"], hba[-3:]
    assert sh(pg, ["psql", "-h", "/var/run/postgresql", "-U", "registry", "-d", "registry", "-tAc",
                   "SHOW data_checksums"])[1].strip() == "on"
    assert "sourcing /docker-entrypoint-initdb.d/20-mark.sh" in pg.logs().decode()
    # Both POSTGRES_PASSWORD and its _FILE: refused, as upstream.
    bad = _run(dkr, net, PG_IMAGE, "db2", {"POSTGRES_PASSWORD": "x", "POSTGRES_PASSWORD_FILE": "/run/pw"})
    assert bad.wait(timeout=60)["StatusCode"] != 0
    assert "are exclusive" in bad.logs().decode()


def test_redis_has_no_password_handling(dkr, net):
    password = secrets.token_urlsafe(24)
    # REDIS_PASSWORD means nothing to the official image: Redis runs without a password.
    redis = _run(dkr, net, REDIS_IMAGE, "redis", {"REDIS_PASSWORD": password}, f"lab-it-redis-{secrets.token_hex(4)}",
                 "/data")
    wait_for("redis", lambda: sh(redis, ["redis-cli", "-h", "127.0.0.1", "ping"], check=False)[1].strip() == "PONG")
    # ... and from another container too (protected-mode off, like the official build).
    peer = _run(dkr, net, REDIS_IMAGE, "peer", command=["sleep", "120"])
    assert sh(peer, ["redis-cli", "-h", "redis", "ping"], check=False)[1].strip() == "PONG"
    assert sh(redis, ["stat", "-c", "%u", "/data"])[1].strip() == "999"
    status = dict(line.split(":", 1) for line in sh(redis, ["cat", "/proc/1/status"])[1].splitlines() if ":" in line)
    assert status["Name"].strip() == "redis-server" and status["Uid"].split()[0] == "999", status


def test_redis_authenticates_with_a_mounted_acl_file(dkr, net):
    """What the operator_stack role provides: redis.conf and users.acl in a directory owned by uid 999."""
    password = secrets.token_urlsafe(24)
    acl = f"user default on #{hashlib.sha256(password.encode()).hexdigest()} ~* &* +@all\n".encode()
    conf = b"bind * -::*\nprotected-mode yes\naclfile /usr/local/etc/redis/users.acl\n"
    network, dummy = net
    redis = dkr.containers.create(REDIS_IMAGE, command=["redis-server", "/usr/local/etc/redis/redis.conf"],
                                  labels=LABEL, network=network.name)
    redis.put_archive("/usr/local/etc", _tar("redis.conf", conf, 0o640, uid=999, directory="redis"))
    redis.put_archive("/usr/local/etc/redis", _tar("users.acl", acl, 0o600, uid=999))
    redis.start()
    wait_for("redis with its ACL file",
             lambda: "NOAUTH" in sh(redis, ["redis-cli", "-h", "127.0.0.1", "ping"], check=False)[1], timeout=30)
    auth = ["redis-cli", "-h", "127.0.0.1", "--no-auth-warning", "ping"]
    assert sh(redis, auth, env={"REDISCLI_AUTH": password})[1].strip() == "PONG"
    assert "WRONGPASS" in sh(redis, auth, env={"REDISCLI_AUTH": "wrong"}, check=False)[1]
    # ACL SAVE replaces the file (temp file + rename in the same directory) as uid 999, mode 0600.
    out = sh(redis, ["redis-cli", "-h", "127.0.0.1", "--no-auth-warning", "ACL", "SAVE"],
             env={"REDISCLI_AUTH": password})[1]
    assert out.strip() == "OK", out
    assert sh(redis, ["stat", "-c", "%u %a", "/usr/local/etc/redis/users.acl"])[1].split() == ["999", "600"]
