"""Florent: the conversation store behind the RakerOne builder-chat assistant."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask

from .config import Settings, read_settings, sqlalchemy_url

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
MAX_BODY_BYTES = 1024 * 1024


def create_app(settings: Settings | None = None, *, instance_path: str | None = None) -> Flask:
    """Build the app: config -> extensions -> auth -> blueprints -> errors -> cli."""
    settings = settings or read_settings()
    app = Flask(__name__, template_folder=str(TEMPLATES), instance_path=instance_path)
    logging.basicConfig(level=logging.INFO)

    app.config.update(
        SECRET_KEY=settings.secret_key or _development_secret(app),
        FLORENT_ENV=settings.env,
        FLORENT_MODEL=settings.model,
        SQLALCHEMY_DATABASE_URI=sqlalchemy_url(_database_url(app, settings)),
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
    )

    from .extensions import db, migrate

    db.init_app(app)
    migrate.init_app(app, db, directory=str(Path(app.root_path).parent / "migrations"))

    from .auth import Authenticator, init_auth

    init_auth(
        app,
        Authenticator(
            jwks_url=settings.jwks_url,
            issuer=settings.issuer,
            audience=settings.audience,
            # Only development trusts a key of its own; production trusts only the JWKS.
            dev_key=None if settings.is_production else dev_signing_key(app),
        ),
    )

    from .api import bp as api_bp

    app.register_blueprint(api_bp)

    from .errors import register_error_handlers

    register_error_handlers(app)

    from .admin import init_admin

    init_admin(app)

    from .cli import register_cli

    register_cli(app)
    return app


def dev_signing_key(app: Flask):
    from .auth import DevSigningKey

    return DevSigningKey(Path(app.instance_path) / "dev-jwt-key.pem")


def _database_url(app: Flask, settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    # Development only (production refuses to start without DATABASE_URL).
    from .devdb import start_embedded_postgres

    return start_embedded_postgres(Path(app.instance_path) / "postgres", "florent")


def _development_secret(app: Flask) -> str:
    """A per-checkout random secret, kept in the instance folder so sessions survive restarts."""
    import secrets

    path = Path(app.instance_path) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()
