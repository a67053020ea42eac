"""PostgreSQL and Redis access, kept small so tests can swap them.

Every call opens a NEW connection with the credentials as they are now (secrets are
re-read from *_FILE on each call) and closes it again: /health thereby proves the
current credentials work, and a rotated password takes effect without a restart.
Drivers (Debian's python3-psycopg2 and python3-redis) are imported lazily.
Errors propagate as exceptions; callers report only the exception class.
"""

import contextlib

CONNECT_TIMEOUT = 2  # seconds, for both PostgreSQL and Redis

SCHEMA_SQL = (
    "CREATE TABLE IF NOT EXISTS events ("
    " id bigserial primary key,"
    " event_type text not null,"
    " status int,"
    " created_at timestamptz default now())"
)

LAST_EVENT_KEY = "registry:last_event_status"

_AUTH_MARKERS = ("password authentication failed", "wrongpass", "noauth",
                 "invalid password", "invalid username-password", "authentication failed",
                 "no password supplied", "authentication required")
_UNREACHABLE_MARKERS = ("connection refused", "could not translate host name",
                        "name or service not known", "no route to host",
                        "network is unreachable", "temporary failure in name resolution",
                        "could not connect")
_TIMEOUT_MARKERS = ("timeout expired", "timed out")


def classify_error(exc):
    """A coarse reason token for a backend failure: auth_failed, unreachable, timeout
    or None.  The exception text is only matched against fixed markers, never
    returned or logged."""
    name = type(exc).__name__
    if name == "AuthenticationError":
        return "auth_failed"
    if name == "TimeoutError" or isinstance(exc, TimeoutError):
        return "timeout"
    try:
        text = str(exc).lower()
    except Exception:  # pylint: disable=broad-except
        return None
    if any(marker in text for marker in _AUTH_MARKERS):
        return "auth_failed"
    if any(marker in text for marker in _TIMEOUT_MARKERS):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError) or any(m in text for m in _UNREACHABLE_MARKERS):
        return "unreachable"
    return None


class Backends:
    def __init__(self, settings):
        self.settings = settings

    # -- PostgreSQL -------------------------------------------------------------
    @contextlib.contextmanager
    def _pg(self):
        import psycopg2  # pylint: disable=import-outside-toplevel

        s = self.settings
        conn = psycopg2.connect(
            host=s.postgres_host,
            port=s.postgres_port,
            user=s.secret("POSTGRES_USER") or None,
            password=s.secret("POSTGRES_PASSWORD") or None,
            dbname=s.secret("POSTGRES_DB") or None,
            connect_timeout=CONNECT_TIMEOUT,
            application_name="registry",
        )
        try:
            yield conn
        finally:
            conn.close()

    def postgres_ping(self):
        with self._pg() as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                cur.fetchone()

    def ensure_schema(self):
        with self._pg() as conn:
            with conn.cursor() as cur:
                cur.execute(SCHEMA_SQL)
            conn.commit()

    def insert_event(self, event_type, status):
        with self._pg() as conn:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO events (event_type, status) VALUES (%s, %s)",
                            (event_type, status))
            conn.commit()

    def count_events(self):
        with self._pg() as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM events")
                return int(cur.fetchone()[0])

    # -- Redis ------------------------------------------------------------------
    @contextlib.contextmanager
    def _redis(self):
        import redis  # pylint: disable=import-outside-toplevel

        s = self.settings
        password = s.secret("REDIS_PASSWORD") or None
        client = redis.Redis(
            host=s.redis_host,
            port=s.redis_port,
            username=(s.secret("REDIS_USERNAME") or "default") if password else None,
            password=password,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=CONNECT_TIMEOUT,
            single_connection_client=True,
        )
        try:
            yield client
        finally:
            try:
                client.close()
            except Exception:  # pylint: disable=broad-except
                pass

    def redis_ping(self):
        """AUTH (on connect) + PING on a new connection."""
        with self._redis() as client:
            if not client.ping():
                raise RuntimeError("PING failed")

    def set_last_event_status(self, value):
        with self._redis() as client:
            client.set(LAST_EVENT_KEY, value)
