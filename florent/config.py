"""Settings read from the environment once, at start-up.

A missing or unsafe production setting stops the app with a message naming the
variable, rather than letting it start half-configured.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

WORKOS_JWKS_URL_TEMPLATE = "https://api.workos.com/sso/jwks/{client_id}"
ENVIRONMENTS = ("development", "production")
FALSE_WORDS = ("0", "false", "no", "off")
# What the limits library reads; redis+unix:// names a socket (redis-py calls it unix://).
REDIS_SCHEMES = ("redis", "rediss", "redis+unix")
N = TypeVar("N", int, float)
# The audit trail keeps every event at least this long, whatever it is told: the database
# refuses to purge a younger one (migration 0016). At most a century: longer is no
# retention, and past PostgreSQL's range of times.
AUDIT_MIN_RETENTION_DAYS, AUDIT_MAX_RETENTION_DAYS = 90, 36_500


class ConfigError(RuntimeError):
    """The environment does not describe a service that can start."""


@dataclass(frozen=True)
class Settings:
    env: str
    database_url: str | None
    secret_key: str | None
    jwks_url: str | None
    issuer: str | None
    audience: str | None
    model: str = "florent-gpt-4"
    # Connections each process may hold: the pool, and how far past it a burst may go.
    database_pool_size: int = 8
    database_max_overflow: int = 0
    # Per-caller API limits, in Flask-Limiter's notation; generous by default.
    rate_limit: str = "100 per second;6000 per minute"
    # Failed authentications allowed per client address (a flood of bad tokens).
    auth_failure_limit: str = "30 per minute"
    rate_limit_enabled: bool = True
    # One Redis for everything processes and instances must share: the rate limits, the
    # failure throttles and the stop signals. None: each process keeps its own (memory)
    # and stops travel through PostgreSQL.
    redis_url: str | None = None
    # Where limits and throttles count, when not in REDIS_URL (any `limits` storage URI).
    rate_limit_storage_uri: str | None = None
    # A conversation holds at most this many messages.
    max_messages: int = 10_000
    # Replies Florent may be generating at once for one caller.
    max_replies_in_progress: int = 3
    # An OpenAI-compatible model server (".../v1"); None means Florent makes no replies.
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    # A local model may take a while before its first token: `read` is the longest wait
    # for the next bytes (the first token included), not for the whole reply.
    llm_connect_timeout: float = 5.0
    llm_read_timeout: float = 60.0
    # The longest a whole reply may take; it also bounds how long a turn holds its conversation.
    llm_turn_timeout: float = 180.0
    # History sent with each turn, in code points: about 12k tokens for most models.
    llm_history_chars: int = 48_000
    # The longest reply asked of the model (sent as `max_tokens`).
    llm_max_tokens: int = 4096
    # Connections a process may open to the model server: one per reply it relays, so
    # at least what a worker may serve at once (gunicorn's worker_connections).
    llm_max_connections: int = 1000
    # While the model is silent, a streamed reply sends a comment this often, so proxies
    # and clients see the connection alive.
    stream_heartbeat_seconds: float = 15.0
    # Pieces of a reply generated within this window are sent as one (0: each at once).
    stream_coalesce_ms: float = 0.0
    # Where stop signals are listened for: PostgreSQL itself, not a transaction pooler.
    database_listen_url: str | None = None
    # psycopg prepares a statement its connection runs often; behind a transaction pooler
    # (PgBouncer) the next transaction may get a server connection where it does not exist.
    database_prepared_statements: bool = True
    # Proxy hops in front of the service whose X-Forwarded-* headers are believed.
    trusted_proxies: int = 0
    # Audit events older than this are purged as the service goes.
    audit_retention_days: int = 365

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def limits_storage_uri(self) -> str:
        """Where rate limits and throttles count: memory:// is per process."""
        return self.rate_limit_storage_uri or self.redis_url or "memory://"


def read_settings(environ: Mapping[str, str] = os.environ) -> Settings:
    def get(name: str) -> str | None:
        value = environ.get(name, "").strip()
        return value or None

    def number(kind: type[N], name: str, field: str) -> N:
        return _positive(kind, name, get(name), getattr(Settings, field))

    env = get("FLORENT_ENV") or "development"
    if env not in ENVIRONMENTS:
        raise ConfigError(f"FLORENT_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")

    jwks_url = get("WORKOS_JWKS_URL")
    client_id = get("WORKOS_CLIENT_ID")
    if jwks_url is None and client_id is not None:
        jwks_url = WORKOS_JWKS_URL_TEMPLATE.format(client_id=client_id)

    settings = Settings(
        env=env,
        database_url=get("DATABASE_URL"),
        secret_key=get("SECRET_KEY"),
        jwks_url=jwks_url,
        issuer=get("WORKOS_ISSUER"),
        audience=get("WORKOS_AUDIENCE"),
        model=get("FLORENT_MODEL") or Settings.model,
        database_pool_size=number(int, "DATABASE_POOL_SIZE", "database_pool_size"),
        database_max_overflow=_count(
            get("DATABASE_MAX_OVERFLOW"), Settings.database_max_overflow, "DATABASE_MAX_OVERFLOW"
        ),
        rate_limit=get("RATELIMIT_DEFAULT") or Settings.rate_limit,
        auth_failure_limit=get("RATELIMIT_AUTH_FAILURES") or Settings.auth_failure_limit,
        rate_limit_enabled=(get("RATELIMIT_ENABLED") or "true").lower() not in FALSE_WORDS,
        redis_url=get("REDIS_URL"),
        rate_limit_storage_uri=get("RATELIMIT_STORAGE_URI"),
        max_messages=number(int, "FLORENT_MAX_MESSAGES", "max_messages"),
        max_replies_in_progress=number(
            int, "FLORENT_MAX_REPLIES_IN_PROGRESS", "max_replies_in_progress"
        ),
        llm_base_url=get("FLORENT_LLM_BASE_URL"),
        llm_api_key=get("FLORENT_LLM_API_KEY"),
        llm_connect_timeout=number(float, "FLORENT_LLM_CONNECT_TIMEOUT", "llm_connect_timeout"),
        llm_read_timeout=number(float, "FLORENT_LLM_READ_TIMEOUT", "llm_read_timeout"),
        llm_turn_timeout=number(float, "FLORENT_LLM_TURN_TIMEOUT", "llm_turn_timeout"),
        llm_history_chars=number(int, "FLORENT_LLM_HISTORY_CHARS", "llm_history_chars"),
        llm_max_tokens=number(int, "FLORENT_LLM_MAX_TOKENS", "llm_max_tokens"),
        llm_max_connections=number(int, "GUNICORN_WORKER_CONNECTIONS", "llm_max_connections"),
        stream_heartbeat_seconds=number(
            float, "FLORENT_STREAM_HEARTBEAT_SECONDS", "stream_heartbeat_seconds"
        ),
        stream_coalesce_ms=_count(
            get("FLORENT_STREAM_COALESCE_MS"), 0, "FLORENT_STREAM_COALESCE_MS"
        ),
        database_listen_url=get("DATABASE_LISTEN_URL"),
        database_prepared_statements=(get("DATABASE_PREPARED_STATEMENTS") or "true").lower()
        not in FALSE_WORDS,
        trusted_proxies=_count(
            get("FLORENT_TRUSTED_PROXIES"), Settings.trusted_proxies, "FLORENT_TRUSTED_PROXIES"
        ),
        audit_retention_days=number(int, "FLORENT_AUDIT_RETENTION_DAYS", "audit_retention_days"),
    )
    check(settings)
    return settings


def check(settings: Settings) -> None:
    """Refuse settings no service should start with; production refuses more."""
    if settings.jwks_url is not None and not _is_http_url(settings.jwks_url):
        raise ConfigError("WORKOS_JWKS_URL must be an http(s) URL")
    if settings.llm_base_url is not None and not _is_http_url(settings.llm_base_url):
        raise ConfigError("FLORENT_LLM_BASE_URL must be an http(s) URL, e.g. http://host:8000/v1")
    if settings.redis_url is not None and not _is_redis_url(settings.redis_url):
        raise ConfigError("REDIS_URL must be a redis://, rediss:// or redis+unix:// URL")
    if not AUDIT_MIN_RETENTION_DAYS <= settings.audit_retention_days <= AUDIT_MAX_RETENTION_DAYS:
        raise ConfigError(
            "FLORENT_AUDIT_RETENTION_DAYS must be from "
            f"{AUDIT_MIN_RETENTION_DAYS} to {AUDIT_MAX_RETENTION_DAYS}"
        )
    if not settings.is_production:
        return
    missing = [
        name
        for name, value in (
            ("DATABASE_URL", settings.database_url),
            ("SECRET_KEY", settings.secret_key),
            ("WORKOS_JWKS_URL or WORKOS_CLIENT_ID", settings.jwks_url),
            ("WORKOS_ISSUER", settings.issuer),
        )
        if value is None
    ]
    if missing:
        raise ConfigError(f"production needs {', '.join(missing)} in the environment")
    jwks = urlsplit(settings.jwks_url)
    if jwks.scheme != "https" and not _is_loopback(jwks.hostname):
        # Keys fetched in the clear could be swapped by anyone on the path.
        raise ConfigError("production needs an https:// WORKOS_JWKS_URL (loopback aside)")


def _positive(kind: type[N], name: str, value: str | None, default: N) -> N:
    if value is None:
        return default
    try:
        number = kind(value)
    except ValueError:
        number = None
    if number is None or not 0 < number < float("inf"):
        raise ConfigError(f"{name} must be a positive {kind.__name__}, not {value!r}")
    return number


def _count(value: str | None, default: int, name: str) -> int:
    """A whole number, zero allowed."""
    if value is None:
        return default
    if not value.isdigit():
        raise ConfigError(f"{name} must be a whole number, not {value!r}")
    return int(value)


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _is_redis_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in REDIS_SCHEMES and bool(parts.netloc or parts.path)


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def sqlalchemy_url(database_url: str) -> str:
    """Turn a libpq-style URL into one for SQLAlchemy's psycopg 3 dialect.

    Operators hand us the URL their other tools use (`postgres://`, `postgresql://`,
    `?host=/socket/dir`); the driver choice is ours, not theirs.
    """
    parts = urlsplit(database_url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgres", "postgresql"):
        raise ConfigError("DATABASE_URL must be a postgresql:// URL")
    return urlunsplit(parts._replace(scheme="postgresql+psycopg"))


Parse = Callable[[str], object]
