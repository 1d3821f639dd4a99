"""Replies as production serves them: gunicorn's gevent workers (the default
gunicorn.conf.py), server-sent events, the conversation's WebSocket, and Stop from any
process."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import requests
from simple_websocket import Client
from sqlalchemy import text

from florent.extensions import db

from .conftest import bearer
from .factories import URL
from .serving import gunicorn

pytestmark = pytest.mark.slow  # gunicorn


@pytest.fixture(scope="module")
def service(app, database_url, jwks_server, model_server) -> Iterator[Any]:
    with gunicorn(
        database_url,
        jwks_server.url,
        FLORENT_LLM_BASE_URL=model_server.base_url,
        FLORENT_LLM_READ_TIMEOUT="20",
        FLORENT_STREAM_HEARTBEAT_SECONDS="0.3",
        FLORENT_LLM_MAX_TOKENS="321",
        # Kept-alive connections stay with their worker: how a test reaches a chosen one.
        GUNICORN_KEEPALIVE="5",
    ) as server:
        yield server


@pytest.fixture
def alice_token(make_token) -> str:
    return make_token("user_01ALICE", "org_01ACME")


def create(service, token: str) -> str:
    response = requests.post(f"{service.url}{URL}", json={}, headers=bearer(token), timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["conversation"]["_id"]


def sse_events(response: requests.Response) -> Iterator[tuple[str, Any]]:
    """(event, data) as the events arrive; comments come as ("comment", text)."""
    for block in response.iter_lines(delimiter=b"\n\n"):
        if not block:
            continue
        if block.startswith(b":"):
            yield "comment", block[1:].strip().decode()
            continue
        fields = dict(line.split(b": ", 1) for line in block.split(b"\n"))
        yield fields[b"event"].decode(), orjson.loads(fields[b"data"])


def stream(service, token: str, conversation_id: str, content: str, request_id: str | None = None):
    headers = {**bearer(token), "Accept": "text/event-stream"}
    if request_id:
        headers["X-Request-Id"] = request_id
    response = requests.post(
        f"{service.url}{URL}/{conversation_id}/messages",
        json={"content": content},
        headers=headers,
        stream=True,
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response, sse_events(response)


def test_a_streamed_turn_through_gevent_workers(service, alice_token, model):
    conversation_id = create(service, alice_token)
    model.reply, model.delay = ["Bon", "jour"], 0.05

    _, events = stream(service, alice_token, conversation_id, "Salut")
    events = [event for event in events if event[0] != "comment"]

    assert [name for name, _ in events] == ["message", "delta", "delta", "done"]
    done = events[-1][1]
    assert (done["message"]["content"], done["message"]["status"]) == ("Bonjour", "complete")
    assert events[0][1]["message"]["status"] == "complete"
    assert model.requests[-1]["body"]["max_tokens"] == 321
    body = requests.get(f"{service.url}{URL}/{conversation_id}", headers=bearer(alice_token))
    assert [m["status"] for m in body.json()["messages"]] == ["complete", "complete"]


def test_a_silent_model_gets_heartbeats(service, alice_token, model):
    conversation_id = create(service, alice_token)
    model.stall_after = 1

    _, events = stream(service, alice_token, conversation_id, "Anyone there?")
    assert next(events)[0] == "message"
    seen = [next(events) for _ in range(3)]
    model.release.set()

    assert ("comment", "still thinking") in seen
    assert [name for name, _ in events if name != "comment"][-1] == "done"


def test_one_worker_relays_many_replies_at_once(service, make_token, model):
    """More open replies than workers: each is a greenlet, not a worker."""
    model.reply, model.delay = ["slow "] * 10, 0.1  # a second each
    tokens = [make_token(f"user_{n}", "org_01ACME") for n in range(12)]
    conversations = [create(service, token) for token in tokens]
    results: list[list[str]] = []

    def turn(token: str, conversation_id: str) -> None:
        _, events = stream(service, token, conversation_id, "hi")
        results.append([name for name, _ in events])

    started = time.monotonic()
    threads = [
        threading.Thread(target=turn, args=pair) for pair in zip(tokens, conversations, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len(results) == 12 and all(names[-1] == "done" for names in results)
    assert time.monotonic() - started < 8  # one after another would take 12 s


def connection_to_another_worker(service, token: str, pid: int) -> requests.Session:
    """A kept-alive connection (it stays with the worker that accepted it) to a worker
    other than `pid`, found by asking until the access log names another."""
    for attempt in range(40):
        session = requests.Session()
        request_id = f"probe-{attempt}-{secrets.token_hex(4)}"
        response = session.get(
            f"{service.url}{URL}?limit=1", headers={**bearer(token), "X-Request-Id": request_id}
        )
        assert response.status_code == 200
        if service.pid_of(request_id) != pid:
            return session
        session.close()
    pytest.fail("every connection landed on the same worker")


def test_stop_from_another_worker_ends_a_streamed_reply_within_a_second(
    service, alice_token, model
):
    conversation_id = create(service, alice_token)
    model.reply, model.stall_after = ["Once ", "upon ", "a ", "time"], 2
    _, events = stream(service, alice_token, conversation_id, "A story?", "streaming-1")
    assert [next(events)[0], next(events)[0], next(events)[0]] == ["message", "delta", "delta"]

    other = connection_to_another_worker(service, alice_token, service.pid_of("streaming-1"))
    started = time.monotonic()
    stop = other.post(
        f"{service.url}{URL}/{conversation_id}/stop",
        headers={**bearer(alice_token), "X-Request-Id": "stopping-1"},
    )
    name, data = next(event for event in events if event[0] != "comment")

    other.close()
    assert (stop.status_code, stop.json()) == (202, {"stopping": True})
    assert service.pid_of("stopping-1") != service.pid_of("streaming-1")
    assert time.monotonic() - started < 1.5
    assert name == "stopped"
    assert (data["message"]["content"], data["message"]["status"]) == ("Once upon ", "stopped")
    assert data["conversation"]["messageCount"] == 2
    again = requests.post(f"{service.url}{URL}/{conversation_id}/stop", headers=bearer(alice_token))
    assert (again.status_code, again.json()) == (409, {"error": "no_reply_in_progress"})
    model.release.set()


def test_a_stopped_json_turn_answers_201_with_the_reply_so_far(service, alice_token, model):
    conversation_id = create(service, alice_token)
    model.reply, model.stall_after = ["Half ", "of it"], 1
    result: dict[str, Any] = {}

    def wait_for_reply() -> None:
        result["response"] = requests.post(
            f"{service.url}{URL}/{conversation_id}/messages",
            json={"content": "Tell me"},
            headers=bearer(alice_token),
            timeout=30,
        )

    waiting = threading.Thread(target=wait_for_reply)
    waiting.start()
    assert model.received.wait(10)
    time.sleep(0.3)  # the first piece is relayed
    stop = requests.post(f"{service.url}{URL}/{conversation_id}/stop", headers=bearer(alice_token))
    assert stop.status_code == 202
    waiting.join(10)
    model.release.set()

    response = result["response"]
    assert response.status_code == 201
    _, reply = response.json()["messages"]
    assert (reply["content"], reply["status"]) == ("Half ", "stopped")


def test_stop_is_404_for_another_caller_and_409_without_a_reply(service, alice_token, make_token):
    conversation_id = create(service, alice_token)
    bob = make_token("user_01BOB", "org_01ACME")
    url = f"{service.url}{URL}/{conversation_id}/stop"
    assert requests.post(url, headers=bearer(bob)).status_code == 404
    assert requests.post(url, headers=bearer(alice_token)).status_code == 409


# -- The WebSocket ---------------------------------------------------------------------


def ticket(service, token: str, conversation_id: str) -> dict[str, Any]:
    response = requests.post(
        f"{service.url}{URL}/{conversation_id}/ws-ticket", headers=bearer(token), timeout=10
    )
    assert response.status_code == 201, response.text
    return response.json()


def open_socket(grant: dict[str, Any]) -> Client:
    return Client.connect(f"{grant['wsUrl']}?ticket={grant['ticket']}")


def frames(ws: Client, until: set[str], timeout: float = 15) -> list[dict[str, Any]]:
    received: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = ws.receive(timeout=deadline - time.monotonic())
        if raw is None:
            break
        received.append(orjson.loads(raw))
        if received[-1]["type"] in until:
            return received
    raise AssertionError(f"no {until} frame in {received}")


def test_a_turn_over_the_websocket(service, alice_token, model):
    conversation_id = create(service, alice_token)
    grant = ticket(service, alice_token, conversation_id)
    assert grant["expiresInSeconds"] == 60
    assert grant["wsUrl"] == service.url.replace("http", "ws") + f"{URL}/{conversation_id}/ws"
    model.reply = ["Hello", " there"]
    ws = open_socket(grant)
    try:
        ws.send(orjson.dumps({"type": "message", "content": "Hi"}).decode())
        got = frames(ws, {"done", "error"})
        assert [f["type"] for f in got] == ["message", "delta", "delta", "done"]
        assert got[-1]["message"]["content"] == "Hello there"

        # A bad frame is answered, and the socket serves another turn.
        ws.send("not json")
        assert frames(ws, {"error"})[-1] == {
            "type": "error",
            "error": "invalid_body",
            "issues": [
                {"path": [], "code": "invalid_json", "message": "The body is not valid JSON."}
            ],
        }
        ws.send(orjson.dumps({"type": "message", "content": ""}).decode())
        assert frames(ws, {"error"})[-1]["error"] == "invalid_body"
        ws.send(orjson.dumps({"type": "message", "content": "Again"}).decode())
        assert frames(ws, {"done", "error"})[-1]["type"] == "done"
    finally:
        ws.close()
    body = requests.get(f"{service.url}{URL}/{conversation_id}", headers=bearer(alice_token)).json()
    assert body["conversation"]["messageCount"] == 4


def test_stop_over_the_websocket(service, alice_token, model):
    conversation_id = create(service, alice_token)
    model.reply, model.stall_after = ["Long ", "story"], 1
    ws = open_socket(ticket(service, alice_token, conversation_id))
    try:
        ws.send(orjson.dumps({"type": "message", "content": "Go"}).decode())
        assert [f["type"] for f in frames(ws, {"delta"})] == ["message", "delta"]
        started = time.monotonic()
        ws.send(orjson.dumps({"type": "stop"}).decode())
        stopped = frames(ws, {"stopped", "error"})[-1]
        assert time.monotonic() - started < 1.5
        assert stopped["type"] == "stopped"
        assert (stopped["message"]["content"], stopped["message"]["status"]) == ("Long ", "stopped")
    finally:
        model.release.set()
        ws.close()


def test_a_database_that_fails_a_frame_is_an_error_frame_and_the_socket_stays_open(
    app, service, alice_token, model
):
    conversation_id = create(service, alice_token)
    ws = open_socket(ticket(service, alice_token, conversation_id))
    try:
        # The test holds the conversation's row: the turn's statement waits for it past
        # the statement timeout, which PostgreSQL answers with an error.
        with app.app_context(), db.engine.connect() as holder:
            holder.execute(
                text("SELECT 1 FROM conversations WHERE id = :id FOR UPDATE"),
                {"id": conversation_id},
            )
            ws.send(orjson.dumps({"type": "message", "content": "Hi"}).decode())
            failed = frames(ws, {"error", "done"})
        assert failed == [{"type": "error", "error": "service_unavailable"}]

        ws.send(orjson.dumps({"type": "message", "content": "Again"}).decode())
        assert [f["type"] for f in frames(ws, {"done", "error"})][-1] == "done"
    finally:
        ws.close()


def upgrade(service, path: str, *headers: str) -> tuple[int, bytes, bytes]:
    """A raw WebSocket upgrade request: the status, head and body the server answers with
    (a refusal's JSON body, read whole; none after a 101)."""
    host = service.url.removeprefix("http://")
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        *headers,
    ]
    with socket.create_connection(host.split(":")) as conn:  # type: ignore[arg-type]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        conn.settimeout(10)
        raw = b""
        while b"\r\n\r\n" not in raw or not (raw.endswith(b"}") or b" 101 " in raw[:13]):
            chunk = conn.recv(4096)
            if not chunk:
                break
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), head, body


def test_the_socket_declines_compression(service, alice_token):
    conversation_id = create(service, alice_token)
    grant = ticket(service, alice_token, conversation_id)
    path = f"{URL}/{conversation_id}/ws?ticket={grant['ticket']}"
    offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"
    status, head, _ = upgrade(service, path, offer)
    assert status == 101
    assert b"sec-websocket-extensions" not in head.lower()


def test_every_bad_ticket_is_refused_before_the_upgrade(app, service, alice_token, make_token):
    conversation_id = create(service, alice_token)
    other_conversation = create(service, alice_token)
    path = f"{URL}/{conversation_id}/ws"
    used = ticket(service, alice_token, conversation_id)
    open_socket(used).close()
    expired = ticket(service, alice_token, conversation_id)
    with app.app_context():
        db.session.execute(text("UPDATE socket_tickets SET expires_at = now() - interval '1 s'"))
        db.session.commit()
    elsewhere = ticket(service, alice_token, other_conversation)

    for query in (
        "",
        "?ticket=",
        "?ticket=not-a-ticket",
        f"?ticket={used['ticket']}",
        f"?ticket={expired['ticket']}",
        f"?ticket={elsewhere['ticket']}",
    ):
        status, _, body = upgrade(service, path + query)
        assert (status, orjson.loads(body)) == (401, {"error": "unauthorized"}), query

    bob = make_token("user_01BOB", "org_01ACME")
    response = requests.post(f"{service.url}{URL}/{conversation_id}/ws-ticket", headers=bearer(bob))
    assert response.status_code == 404
    with app.app_context():
        stored = db.session.execute(text("SELECT ticket_hash FROM socket_tickets")).scalars().all()
    assert all(len(value) == 32 for value in stored)  # hashes only, never the ticket


def test_a_reply_in_progress_finishes_when_gunicorn_is_told_to_stop(
    app, database_url, jwks_server, model_server, model, alice_token
):
    with gunicorn(
        database_url,
        jwks_server.url,
        FLORENT_LLM_BASE_URL=model_server.base_url,
        GUNICORN_WORKERS="1",
        GUNICORN_GRACEFUL_TIMEOUT="10",
    ) as stopping:
        conversation_id = create(stopping, alice_token)
        model.reply, model.delay = [f"{n} " for n in range(20)], 0.1  # about 2 s

        _, events = stream(stopping, alice_token, conversation_id, "Count to twenty")
        assert next(events)[0] == "message"
        assert next(events)[0] == "delta"
        stopping.process.terminate()  # SIGTERM: a graceful stop
        rest = [name for name, _ in events if name != "comment"]

        assert rest[-1] == "done"
        assert stopping.process.wait(timeout=15) == 0
    with app.app_context():
        stored = db.session.execute(
            text("SELECT content FROM messages WHERE conversation_id = :id AND role = 'assistant'"),
            {"id": conversation_id},
        ).scalar_one()
        db.session.rollback()
    assert stored == "".join(f"{n} " for n in range(20))
