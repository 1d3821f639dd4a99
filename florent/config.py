"""Settings read from the environment once, at start-up.

A missing production setting stops the app with a message naming the variable,
rather than letting it start half-configured.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

WORKOS_JWKS_URL_TEMPLATE = "https://api.workos.com/sso/jwks/{client_id}"
DEFAULT_MODEL = "florent-gpt-4"
ENVIRONMENTS = ("development", "production")
FALSE_WORDS = ("0", "false", "no", "off")
N = TypeVar("N", int, float)


class ConfigError(RuntimeError):
    """The environment does not describe a service that can start."""


DEFAULT_RATE_LIMIT = "100 per second;6000 per minute"

# Florent's replies. A local model may take a while before its first token, hence the
# generous read timeout (the longest wait for the next bytes, not for the whole reply).
DEFAULT_LLM_CONNECT_TIMEOUT_S = 5.0
DEFAULT_LLM_READ_TIMEOUT_S = 60.0
DEFAULT_LLM_TURN_TIMEOUT_S = 180.0
# About 12k tokens of history for most models: messages beyond it, oldest first, are left out.
DEFAULT_LLM_HISTORY_CHARS = 48_000


@dataclass(frozen=True)
class Settings:
    env: str
    database_url: str | None
    secret_key: str | None
    jwks_url: str | None
    issuer: str | None
    audience: str | None
    model: str
    # Per-caller API limits, in Flask-Limiter's notation; generous by default.
    rate_limit: str = DEFAULT_RATE_LIMIT
    rate_limit_enabled: bool = True
    # memory:// counts per process; give several instances one Redis (redis://...).
    rate_limit_storage_uri: str = "memory://"
    # An OpenAI-compatible model server (".../v1"); None means Florent makes no replies.
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_connect_timeout: float = DEFAULT_LLM_CONNECT_TIMEOUT_S
    llm_read_timeout: float = DEFAULT_LLM_READ_TIMEOUT_S
    # The longest a whole reply may take; it also bounds how long a turn holds its conversation.
    llm_turn_timeout: float = DEFAULT_LLM_TURN_TIMEOUT_S
    # Budget of the history sent with each turn, in code points of message content.
    llm_history_chars: int = DEFAULT_LLM_HISTORY_CHARS

    @property
    def is_production(self) -> bool:
        return self.env == "production"


def read_settings(environ: Mapping[str, str] = os.environ) -> Settings:
    def get(name: str) -> str | None:
        value = environ.get(name, "").strip()
        return value or None

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
        model=get("FLORENT_MODEL") or DEFAULT_MODEL,
        rate_limit=get("RATELIMIT_DEFAULT") or DEFAULT_RATE_LIMIT,
        rate_limit_enabled=(get("RATELIMIT_ENABLED") or "true").lower() not in FALSE_WORDS,
        rate_limit_storage_uri=get("RATELIMIT_STORAGE_URI") or "memory://",
        llm_base_url=get("FLORENT_LLM_BASE_URL"),
        llm_api_key=get("FLORENT_LLM_API_KEY"),
        llm_connect_timeout=_positive(
            float, "FLORENT_LLM_CONNECT_TIMEOUT", get, DEFAULT_LLM_CONNECT_TIMEOUT_S
        ),
        llm_read_timeout=_positive(
            float, "FLORENT_LLM_READ_TIMEOUT", get, DEFAULT_LLM_READ_TIMEOUT_S
        ),
        llm_turn_timeout=_positive(
            float, "FLORENT_LLM_TURN_TIMEOUT", get, DEFAULT_LLM_TURN_TIMEOUT_S
        ),
        llm_history_chars=_positive(
            int, "FLORENT_LLM_HISTORY_CHARS", get, DEFAULT_LLM_HISTORY_CHARS
        ),
    )
    if settings.is_production:
        missing = [
            name
            for name, value in (
                ("DATABASE_URL", settings.database_url),
                ("SECRET_KEY", settings.secret_key),
                ("WORKOS_JWKS_URL or WORKOS_CLIENT_ID", settings.jwks_url),
            )
            if value is None
        ]
        if missing:
            raise ConfigError(f"production needs {', '.join(missing)} in the environment")
    if jwks_url is not None and urlsplit(jwks_url).scheme not in ("http", "https"):
        raise ConfigError("WORKOS_JWKS_URL must be an http(s) URL")
    if settings.llm_base_url is not None and not _is_http_url(settings.llm_base_url):
        raise ConfigError("FLORENT_LLM_BASE_URL must be an http(s) URL, e.g. http://host:8000/v1")
    return settings


def _positive(kind: type[N], name: str, get: Callable[[str], str | None], default: N) -> N:
    value = get(name)
    if value is None:
        return default
    try:
        number = kind(value)
    except ValueError:
        number = None
    if number is None or not 0 < number < float("inf"):
        raise ConfigError(f"{name} must be a positive {kind.__name__}, not {value!r}")
    return number


def _is_http_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


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
