"""Configuration of the lab registry stand-in (environment only).

Every secret may also be given as ``<NAME>_FILE`` (a path); the file wins over the
plain variable and is re-read on every use, so a secret file rotated under the app's
feet takes effect without a restart.  Secret values are registered with the log
redaction filter the first time they are read and are never part of an error message.
"""

import logging
import os
import threading
import urllib.parse

# Variables that are secrets (or may be, like the user names) and accept *_FILE.
SECRET_NAMES = (
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "REDIS_USERNAME",
    "REDIS_PASSWORD",
    "INTERNAL_API_KEY",
    "FEDERATION_LICENSE_KEY",
)

_SECRET_DEFAULTS = {"REDIS_USERNAME": "default"}

# The true secrets: their values are redacted from every log line.  User and database
# names accept *_FILE too but are not redacted (they are ordinary words in log lines).
REDACTED_NAMES = (
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "INTERNAL_API_KEY",
    "FEDERATION_LICENSE_KEY",
)

# Values shorter than this are not redacted from logs (they would mangle every line).
_MIN_REDACT_LEN = 4
_known_secrets = set()
_known_lock = threading.Lock()


class ConfigError(Exception):
    """A configuration problem.  The message never contains a secret value."""


def _remember(value):
    if value and len(value) >= _MIN_REDACT_LEN:
        with _known_lock:
            _known_secrets.add(value)


def known_secrets():
    with _known_lock:
        return tuple(sorted(_known_secrets, key=len, reverse=True))


def _env(environ, name, default=""):
    value = environ.get(name)
    if value is None or value == "":
        return default
    return value


def read_secret(name, environ=None):
    """Return the current value of secret ``name`` (``<name>_FILE`` wins).

    Raises ConfigError (naming the variable, never the value) when the file cannot
    be read.  A trailing newline in the file is not part of the secret.
    """
    environ = os.environ if environ is None else environ
    path = environ.get(name + "_FILE")
    if path:
        try:
            with open(path, "r", encoding="utf-8") as handle:
                value = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("%s_FILE is not readable (%s)" % (name, type(exc).__name__)) from None
        value = value.rstrip("\r\n")
    else:
        value = environ.get(name, "")
    if value == "":
        value = _SECRET_DEFAULTS.get(name, "")
    elif name in REDACTED_NAMES:
        _remember(value)
    return value


class Settings:
    """Non-secret settings, validated once at start-up; secrets are read on use."""

    def __init__(self, environ=None):
        self.environ = os.environ if environ is None else environ
        env = self.environ

        if _env(env, "EVENTSTORE_MTLS_REQUIRED").strip().lower() != "true":
            raise ConfigError(
                "refusing to start: EVENTSTORE_MTLS_REQUIRED must be true "
                "(mTLS via SPIRE SVID is the only accepted federation auth)")
        if _env(env, "MINTING_AUTHORITY").strip().lower() != "disabled":
            raise ConfigError(
                "refusing to start: MINTING_AUTHORITY must be disabled "
                "(federated registries cannot mint)")

        self.port = self._int("REGISTRY_PORT", 8080, 0, 65535)
        self.bind = _env(env, "REGISTRY_BIND", "0.0.0.0")
        self.operator_name = _env(env, "OPERATOR_NAME", "")
        self.registry_did = _env(env, "REGISTRY_DID", "")
        self.trust_domain = _env(env, "TRUST_DOMAIN", "example.com").strip().lower()
        if not self.trust_domain or "/" in self.trust_domain or ":" in self.trust_domain:
            raise ConfigError("refusing to start: TRUST_DOMAIN must be a bare trust domain name")
        self.postgres_host = _env(env, "POSTGRES_HOST", "db")
        self.postgres_port = self._int("POSTGRES_PORT", 5432, 1, 65535)
        self.redis_host = _env(env, "REDIS_HOST", "redis")
        self.redis_port = self._int("REDIS_PORT", 6379, 1, 65535)
        self.certs_dir = _env(env, "CERTS_DIR", "/certs")
        self.db_startup_timeout = self._float("DB_STARTUP_TIMEOUT", 60.0, 0.0, 3600.0)
        self.event_interval = self._float("EVENT_INTERVAL", 10.0, 0.05, 86400.0)
        self.eventstore_url = _env(env, "EVENTSTORE_URL", "").strip()
        if self.eventstore_url:
            parts = urllib.parse.urlsplit(self.eventstore_url)
            if parts.scheme != "https" or not parts.hostname:
                raise ConfigError("refusing to start: EVENTSTORE_URL must be an https:// URL")
            if parts.username or parts.password:
                raise ConfigError("refusing to start: EVENTSTORE_URL must not carry credentials")
            try:
                parts.port  # noqa: B018 -- raises ValueError on a bad port
            except ValueError:
                raise ConfigError("refusing to start: EVENTSTORE_URL has an invalid port") from None

        # Every *_FILE that is set must be readable now (fail early, name only).
        for name in SECRET_NAMES:
            read_secret(name, env)

    def _int(self, name, default, low, high):
        raw = _env(self.environ, name, "")
        if raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError("refusing to start: %s must be an integer" % name) from None
        if not low <= value <= high:
            raise ConfigError("refusing to start: %s out of range" % name)
        return value

    def _float(self, name, default, low, high):
        raw = _env(self.environ, name, "")
        if raw == "":
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError("refusing to start: %s must be a number" % name) from None
        if not low <= value <= high:
            raise ConfigError("refusing to start: %s out of range" % name)
        return value

    def secret(self, name):
        return read_secret(name, self.environ)

    @property
    def svid_path(self):
        return os.path.join(self.certs_dir, "svid.pem")

    @property
    def svid_key_path(self):
        return os.path.join(self.certs_dir, "svid_key.pem")

    @property
    def bundle_path(self):
        return os.path.join(self.certs_dir, "bundle.pem")

    def eventstore_display(self):
        """host:port/path of the EventStore for logs (no query, no userinfo)."""
        if not self.eventstore_url:
            return "disabled"
        parts = urllib.parse.urlsplit(self.eventstore_url)
        return "%s:%s%s" % (parts.hostname, parts.port or 443, parts.path or "/")


class RedactingFilter(logging.Filter):
    """Replaces any known secret value in a log record by ``***`` (defence in depth)."""

    def filter(self, record):
        secrets = known_secrets()
        if not secrets:
            return True
        message = record.getMessage()
        redacted = message
        for value in secrets:
            if value in redacted:
                redacted = redacted.replace(value, "***")
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True
