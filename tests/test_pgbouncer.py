"""Behind PgBouncer in transaction pooling: DATABASE_PREPARED_STATEMENTS=false, the stop
listener on DATABASE_LISTEN_URL (straight to PostgreSQL), and every use case works."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import text
from sqlalchemy.exc import ProgrammingError

from florent.config import read_settings
from florent.database import database_config
from florent.extensions import db

from .conftest import TEST_DATABASE, bearer
from .factories import URL
from .serving import gunicorn
from .stack import STATEMENT_TIMEOUT_MS, pgbouncer
from .test_streaming import connection_to_another_worker, create, stream


def engine_options(environ: dict[str, str]) -> dict[str, Any]:
    settings = read_settings(environ)
    return database_config("postgresql+psycopg://db/x", settings)["SQLALCHEMY_ENGINE_OPTIONS"]


def test_prepared_statements_are_on_unless_turned_off():
    assert "prepare_threshold" not in engine_options({})["connect_args"]
    options = engine_options({"DATABASE_PREPARED_STATEMENTS": "false"})
    assert options["connect_args"]["prepare_threshold"] is None
    assert options["connect_args"]["options"].startswith("-c statement_timeout=")


@pytest.fixture(scope="module")
def bouncer(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The test database through PgBouncer (transaction pooling, two server connections)."""
    with pgbouncer(server_url, tmp_path_factory.mktemp("pgbouncer")) as url:
        yield url.format(database=TEST_DATABASE)


def run_interleaved(app: Any, statement: str, times: int) -> None:
    """Run `statement` on two pooled connections in turn, as two requests would."""
    with app.app_context(), db.engine.connect() as first, db.engine.connect() as second:
        for n in range(times):
            for connection in (first, second):
                connection.execute(text(statement), {"n": n})
                connection.commit()


@pytest.mark.slow  # PgBouncer
def test_prepared_statements_break_behind_a_transaction_pooler(app, make_app, bouncer):
    prepared = make_app(None, database_url=bouncer)
    with pytest.raises(ProgrammingError, match="prepared statement"):
        run_interleaved(prepared, "SELECT CAST(:n AS integer) + 1", 8)

    unprepared = make_app(None, database_url=bouncer, database_prepared_statements=False)
    run_interleaved(unprepared, "SELECT CAST(:n AS integer) + 1", 8)


@pytest.mark.slow  # PgBouncer
def test_sessions_through_pgbouncer_keep_the_timezone_and_statement_timeout(app, make_app, bouncer):
    through = make_app(None, database_url=bouncer, database_prepared_statements=False)
    with through.app_context(), db.engine.connect() as connection:
        assert connection.scalar(text("SHOW timezone")) == "UTC"
        assert connection.scalar(text("SHOW statement_timeout")) == f"{STATEMENT_TIMEOUT_MS}ms"
        assert connection.scalar(text("SELECT now()")).utcoffset().total_seconds() == 0


@pytest.fixture(scope="module")
def service(app, database_url, bouncer, jwks_server, model_server) -> Iterator[Any]:
    """The service on gunicorn, every statement through PgBouncer, Stop heard directly."""
    with gunicorn(
        bouncer,
        jwks_server.url,
        DATABASE_PREPARED_STATEMENTS="false",
        DATABASE_LISTEN_URL=database_url,
        FLORENT_LLM_BASE_URL=model_server.base_url,
        # Kept-alive connections stay with their worker: how Stop reaches another one.
        GUNICORN_KEEPALIVE="5",
    ) as server:
        wait_for_both_workers(server)
        yield server


def wait_for_both_workers(service: Any, timeout: float = 30) -> None:
    """gunicorn answers once one worker is up: wait until the access log names two."""
    deadline, pids = time.monotonic() + timeout, set()
    while len(pids) < 2 and time.monotonic() < deadline:
        request_id = f"probe-{secrets.token_hex(4)}"
        requests.get(f"{service.url}/healthz", headers={"X-Request-Id": request_id}, timeout=5)
        pids.add(service.pid_of(request_id))
    assert len(pids) == 2, "the second worker did not come up"


@pytest.mark.slow  # PgBouncer, gunicorn
def test_every_use_case_works_through_pgbouncer(service, make_token, model):
    token = make_token("user_01ALICE", "org_01ACME")
    base, headers = f"{service.url}{URL}", bearer(token)
    conversations = [create(service, token) for _ in range(3)]
    # More than psycopg's five runs of a statement before it would prepare it.
    for n in range(8):
        conversation_id = conversations[n % 3]
        assert requests.get(base, headers=headers).status_code == 200
        assert requests.get(f"{base}/{conversation_id}", headers=headers).status_code == 200
        renamed = requests.patch(
            f"{base}/{conversation_id}", json={"title": f"T{n}"}, headers=headers
        )
        assert renamed.json()["conversation"]["title"] == f"T{n}"
        turn = requests.post(
            f"{base}/{conversation_id}/messages", json={"content": f"Hi {n}"}, headers=headers
        )
        assert turn.status_code == 201, turn.text
    model.reply, model.delay = ["Bon", "jour"], 0.05
    _, events = stream(service, token, conversations[0], "Salut")
    assert [name for name, _ in events if name != "comment"] == [
        "message",
        "delta",
        "delta",
        "done",
    ]

    page = requests.get(f"{base}/{conversations[0]}", headers=headers).json()
    assert page["conversation"]["messageCount"] == 2 * 3 + 2
    assert not [line for line in service.lines if line.get("level") == "error"]


@pytest.mark.slow  # PgBouncer, gunicorn
def test_stop_reaches_another_worker_through_its_direct_listener(service, make_token, model):
    token = make_token("user_01ALICE", "org_01ACME")
    conversation_id = create(service, token)
    model.reply, model.stall_after = ["Once ", "upon ", "a ", "time"], 2
    _, events = stream(service, token, conversation_id, "A story?", "bouncer-stream")
    assert [next(events)[0] for _ in range(3)] == ["message", "delta", "delta"]

    other = connection_to_another_worker(service, token, service.pid_of("bouncer-stream"))
    stop = other.post(f"{service.url}{URL}/{conversation_id}/stop", headers=bearer(token))
    other.close()
    name, data = next(event for event in events if event[0] != "comment")
    model.release.set()

    assert stop.status_code == 202
    assert (name, data["message"]["content"]) == ("stopped", "Once upon ")
