"""Florent: the conversation store behind the RakerOne builder-chat assistant."""

from __future__ import annotations

import secrets
from pathlib import Path

from flask import Flask, request

from .admin import init_admin
from .api import bp as api_bp
from .assistant import init_assistant
from .auth import Authenticator, DevSigningKey, authenticate_request, init_auth
from .cli import register_cli
from .config import Settings, read_settings, sqlalchemy_url
from .database import database_config, init_database
from .errors import register_error_handlers
from .extensions import db, migrate
from .limits import init_limits
from .observability import init_observability
from .openapi import bp as openapi_bp

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
MAX_BODY_BYTES = 1024 * 1024


def create_app(settings: Settings | None = None, *, instance_path: str | None = None) -> Flask:
    """Build the app: config, extensions, auth, limits, blueprints, errors, admin, cli."""
    settings = settings or read_settings()
    app = Flask(__name__, template_folder=str(TEMPLATES), instance_path=instance_path)
    app.config.update(
        SECRET_KEY=settings.secret_key or _development_secret(app),
        FLORENT_ENV=settings.env,
        FLORENT_MODEL=settings.model,
        **database_config(sqlalchemy_url(_database_url(app, settings))),
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        RATELIMIT_ENABLED=settings.rate_limit_enabled,
        RATELIMIT_STORAGE_URI=settings.rate_limit_storage_uri,
        RATELIMIT_API=settings.rate_limit,
        RATELIMIT_HEADERS_ENABLED=False,
    )

    db.init_app(app)
    init_database(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS))

    init_observability(app)
    init_auth(
        app,
        Authenticator(
            jwks_url=settings.jwks_url,
            issuer=settings.issuer,
            audience=settings.audience,
            # Only development trusts a key of its own; production trusts only the JWKS.
            dev_key=None if settings.is_production else _dev_signing_key(app),
        ),
    )
    init_assistant(app, settings)
    # Authenticate before the rate limiter runs, so limits are per caller.
    app.before_request(_authenticate_api_request)
    app.register_blueprint(api_bp)
    app.register_blueprint(openapi_bp)
    init_limits(app, api_blueprint_name=api_bp.name)

    register_error_handlers(app)
    init_admin(app)
    register_cli(app)
    return app


def _authenticate_api_request() -> None:
    if request.blueprint == api_bp.name:
        authenticate_request()


def _dev_signing_key(app: Flask) -> DevSigningKey:
    return DevSigningKey(Path(app.instance_path) / "dev-jwt-key.pem")


def _database_url(app: Flask, settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    # Development only (production refuses to start without DATABASE_URL).
    from .devdb import start_embedded_postgres

    return start_embedded_postgres(Path(app.instance_path) / "postgres", "florent")


def _development_secret(app: Flask) -> str:
    """A per-checkout random secret, kept in the instance folder so it survives restarts."""
    path = Path(app.instance_path) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()
