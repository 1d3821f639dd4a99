"""Florent: the conversation store behind the RakerOne builder-chat assistant."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from .admin import init_admin
from .api import init_api
from .assistant import init_assistant
from .assistant.sockets import bp as sockets_bp
from .auth import EXTENSION as AUTH_EXTENSION
from .auth import Authenticator
from .auth.sessions import DevSigningKey, SessionTokens
from .cli import register_cli
from .config import Settings, read_settings, sqlalchemy_url
from .database import database_config, init_database
from .devdb import EmbeddedPostgres
from .errors import register_error_handlers
from .extensions import db, migrate, sock
from .limits import Throttle
from .observability import init_observability
from .openapi import bp as openapi_bp

ROOT = Path(__file__).resolve().parent.parent
MAX_BODY_BYTES = 1024 * 1024
# The server pings an open socket this often; a socket that does not answer is closed.
SOCKET_PING_SECONDS = 25


def create_app(settings: Settings | None = None, *, instance_path: str | None = None) -> Flask:
    """Build the app: config, extensions, auth, API, errors, admin, cli."""
    settings = settings or read_settings()
    app = Flask(__name__, template_folder=str(ROOT / "templates"), instance_path=instance_path)
    embedded = None
    if settings.database_url is None:  # development only: production refuses to start
        embedded = EmbeddedPostgres(Path(app.instance_path) / "postgres", "florent")
    app.config.update(
        SECRET_KEY=settings.secret_key or _development_secret(app),
        FLORENT_ENV=settings.env,
        FLORENT_MODEL=settings.model,
        FLORENT_AUDIT_RETENTION_DAYS=settings.audit_retention_days,
        **database_config(
            embedded.placeholder_url if embedded else sqlalchemy_url(settings.database_url),
            settings,
        ),
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        RATELIMIT_ENABLED=settings.rate_limit_enabled,
        RATELIMIT_STORAGE_URI=settings.limits_storage_uri,
        RATELIMIT_API=settings.rate_limit,
        RATELIMIT_HEADERS_ENABLED=False,
    )

    trust_proxies(app, settings.trusted_proxies)
    db.init_app(app)
    init_database(app)
    if embedded:
        with app.app_context():
            embedded.attach(db.engine)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))

    init_observability(app)
    app.extensions[AUTH_EXTENSION] = Authenticator(
        SessionTokens(
            jwks_url=settings.jwks_url,
            issuer=settings.issuer,
            audience=settings.audience,
            # Only development trusts a key of its own; production trusts only the JWKS.
            dev_key=None if settings.is_production else _dev_signing_key(app),
        ),
        failures=Throttle.from_uri(settings.limits_storage_uri, settings.auth_failure_limit)
        if settings.rate_limit_enabled
        else None,
    )
    init_assistant(app, settings, listen_url=_listen_url(settings, embedded))
    init_api(app)
    app.register_blueprint(openapi_bp)
    init_sockets(app)

    register_error_handlers(app)
    init_admin(app, throttle_storage_uri=settings.limits_storage_uri)
    register_cli(app)
    return app


def trust_proxies(app: Flask, hops: int) -> None:
    """Believe the X-Forwarded-For, -Proto and -Host that the `hops` proxies in front
    set: the client's address (throttles, limits), and the scheme and host of the URLs
    the service hands out (the WebSocket's wsUrl). With 0, those headers change nothing.

    X-Forwarded-Port and -Prefix stay untrusted: the host carries the port, the service
    is served at the root, and a header the proxy does not set is the client's own.
    """
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)


def _listen_url(settings: Settings, embedded: EmbeddedPostgres | None) -> Callable[[], str]:
    """Where stop signals are listened for: PostgreSQL itself (a pooler cannot LISTEN)."""
    if settings.database_listen_url:
        return lambda: settings.database_listen_url
    if embedded is not None:
        return embedded.url
    return lambda: settings.database_url


def init_sockets(app: Flask) -> None:
    app.config["SOCK_SERVER_OPTIONS"] = {
        "ping_interval": SOCKET_PING_SECONDS,
        # A message frame follows the REST body's rules, its size limit included: 32,000
        # characters escaped as JSON may take twelve bytes each ("\ud83d\ude00").
        "max_message_size": MAX_BODY_BYTES,
    }
    sock.init_app(app)
    app.register_blueprint(sockets_bp)


def _dev_signing_key(app: Flask) -> DevSigningKey:
    return DevSigningKey(Path(app.instance_path) / "dev-jwt-key.pem")


def _development_secret(app: Flask) -> str:
    """A per-checkout random secret, kept in the instance folder so it survives restarts."""
    path = Path(app.instance_path) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()
