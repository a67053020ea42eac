"""Issue 2 proof: the lab postgres image keeps the official image's contract, so a changed
POSTGRES_PASSWORD on an existing data dir is ignored (the trap secret rotation must handle)."""

import secrets

import pytest

from conftest import sh, wait_for

# Needs no lab host (controller-side and outer-Docker checks).

IMAGE = "theprotocol-lab/postgres:lab"


def _login(pg, password):
    return sh(pg, ["psql", "-h", "127.0.0.1", "-U", "registry", "-d", "registry", "-tAc",
                   "SELECT count(*) FROM trap_rows"],
              env={"PGPASSWORD": password}, check=False)


@pytest.fixture
def pg_volume(dkr):
    vol = dkr.volumes.create(f"lab-it-pgtrap-{secrets.token_hex(4)}")
    yield vol.name
    for c in dkr.containers.list(all=True, filters={"label": "theprotocol.lab.test=pgtrap"}):
        c.remove(force=True, v=True)
    vol.remove(force=True)


def _run_pg(dkr, volume, password):
    c = dkr.containers.run(IMAGE, detach=True, labels={"theprotocol.lab.test": "pgtrap"},
                           environment={"POSTGRES_USER": "registry", "POSTGRES_DB": "registry",
                                        "POSTGRES_PASSWORD": password},
                           volumes={volume: {"bind": "/var/lib/postgresql/data", "mode": "rw"}})
    wait_for("postgres to accept connections",
             lambda: sh(c, ["pg_isready", "-q", "-h", "127.0.0.1"], check=False)[0] == 0, timeout=90)
    return c


def test_changed_postgres_password_is_ignored_on_existing_data(dkr, pg_volume):
    old, new = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    pg = _run_pg(dkr, pg_volume, old)
    sh(pg, ["psql", "-h", "127.0.0.1", "-U", "registry", "-d", "registry", "-c",
            "CREATE TABLE trap_rows(id int); INSERT INTO trap_rows SELECT generate_series(1, 42)"],
       env={"PGPASSWORD": old})
    pg.remove(force=True)  # the guide's `down` ...

    pg = _run_pg(dkr, pg_volume, new)  # ... and `up -d` with the new .env value
    code, out = _login(pg, new)
    assert code != 0 and "password authentication failed" in out, out
    code, out = _login(pg, old)
    assert code == 0 and out.strip() == "42", out
    assert "ignored" in pg.logs().decode()
