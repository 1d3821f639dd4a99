"""Turns over the conversation's WebSocket, on the development server with a model server
on loopback (the gunicorn path is in test_streaming.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
import requests
from flask import Flask, g
from simple_websocket import Client, ConnectionClosed
from sqlalchemy import text

from florent.assistant import sockets
from florent.auth import Caller
from florent.extensions import db

from .conftest import bearer
from .factories import URL
from .sockets import hang_up, say, socket_opened


def frames_within(ws: Client, seconds: float) -> list[dict]:
    got = []
    while (frame := ws.receive(timeout=seconds)) is not None:
        got.append(orjson.loads(frame))
    return got


def alice(make_token: Any) -> dict[str, str]:
    return bearer(make_token("user_01ALICE", "org_01ACME"))


@contextmanager
def turn_started(florent: Flask, make_token: Any) -> Iterator[tuple[Client, str]]:
    """Alice's turn ("Go") on a new conversation's socket, once its first frames (message,
    delta) are read: the socket and the conversation's id."""
    with socket_opened(florent, alice(make_token)) as (_, ws, conversation_id):
        ws.send(orjson.dumps({"type": "message", "content": "Go"}).decode())
        assert [f["type"] for f in frames_within(ws, 1)] == ["message", "delta"]
        yield ws, conversation_id


@pytest.mark.slow  # holds a row while a reply fails, for seconds
def test_a_failed_turn_is_settled_before_its_last_frame(
    app, make_app, jwks_server, make_token, model
):
    """Its reply slot is freed before the `error` frame is sent, so the client may send the
    next message as soon as it reads it (not be told `reply_in_progress`). The test holds
    the conversation's row, which freeing the slot waits for."""
    florent = make_app(jwks_server.url, llm_base_url=model.base_url)
    model.stall_after, model.error_after = 1, 2  # a piece, a wait, a piece, then an error
    with turn_started(florent, make_token) as (ws, conversation_id):
        with florent.app_context(), db.engine.connect() as holder:
            holder.execute(
                text("SELECT 1 FROM conversations WHERE id = :id FOR UPDATE"),
                {"id": conversation_id},
            )
            model.release.set()
            while_held = frames_within(ws, 1)
        after = frames_within(ws, 2)
        assert [f["type"] for f in while_held] == ["delta"]
        assert after == [{"type": "error", "error": "assistant_unavailable"}]

        model.stall_after = model.error_after = None
        again = [f["type"] for f in say(ws, "Again")]
        assert (again[0], again[-1]) == ("message", "done")


@pytest.mark.slow  # waits out a shortened idle time, twice
def test_a_socket_idle_past_its_time_is_closed_but_never_during_a_reply(
    app, make_app, jwks_server, make_token, model, monkeypatch
):
    """No frame in or out for IDLE_SECONDS closes the socket (1000, "idle"); a reply in
    progress keeps it open however long the model is silent."""
    monkeypatch.setattr(sockets, "IDLE_SECONDS", 1.0)
    monkeypatch.setattr(sockets, "TICK_SECONDS", 0.1)
    florent = make_app(jwks_server.url, llm_base_url=model.base_url)
    model.stall_after = 1  # a piece, then silence until released
    with turn_started(florent, make_token) as (ws, _):
        try:
            assert frames_within(ws, 1.5) == []  # silent past the idle time, still open
            model.release.set()
            while (frame := orjson.loads(ws.receive(timeout=5)))["type"] == "delta":
                pass
        except ConnectionClosed:
            pytest.fail("the socket was closed during a reply")
        assert frame["type"] == "done"
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            ws.receive(timeout=5)
        assert 0.5 <= time.monotonic() - started < 4
        assert (ws.close_reason, ws.close_message) == (1000, "idle")


@pytest.mark.slow  # waits out a shortened idle time
def test_an_idle_socket_is_closed_at_its_idle_time_not_at_the_next_look(
    app, make_app, jwks_server, make_token, monkeypatch
):
    """The socket waits for a frame until it would be idle, not a tick at a time: with
    looks far apart, an unused socket still closes once its idle time is up."""
    monkeypatch.setattr(sockets, "IDLE_SECONDS", 1.0)
    monkeypatch.setattr(sockets, "TICK_SECONDS", 30.0)
    with socket_opened(make_app(jwks_server.url), alice(make_token)) as (_, ws, _):
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            ws.receive(timeout=5)
        assert time.monotonic() - started < 4
        assert (ws.close_reason, ws.close_message) == (1000, "idle")


@pytest.mark.slow  # a turn held back, then the person's next message retried
def test_a_socket_closed_as_its_turn_starts_frees_the_reply_slot(
    app, make_app, jwks_server, make_token, model
):
    """The person's message is stored, and the conversation takes their next message at
    once, as when a stream's client leaves: no slot held until it is stale. The test holds
    the conversation's row so that the turn starts only once the socket is closed."""
    florent = make_app(jwks_server.url, llm_base_url=model.base_url)
    # Someone no other test chats as: replies other tests left in progress count for
    # their person (429 too_many_replies), not for Dan.
    dan = bearer(make_token("user_01DAN", "org_01ACME"))
    with socket_opened(florent, dan) as (base, ws, conversation_id):
        with florent.app_context(), db.engine.connect() as holder:
            holder.execute(
                text("SELECT 1 FROM conversations WHERE id = :id FOR UPDATE"),
                {"id": conversation_id},
            )
            ws.send(orjson.dumps({"type": "message", "content": "Bye"}).decode())
            time.sleep(0.3)  # the frame is in; the turn waits for the row
            hang_up(ws)
            time.sleep(1)  # the server's reader sees the close; its turn waits still
        messages = f"{base}{URL}/{conversation_id}/messages"
        answers = []
        for _ in range(20):  # the slot is freed once the failed send is seen
            again = requests.post(messages, json={"content": "Again"}, headers=dan, timeout=10)
            answers.append((again.status_code, again.text[:80]))
            if again.status_code != 409:
                break
            time.sleep(0.25)
        assert answers[-1][0] == 201, answers
        listed = requests.get(messages, headers=dan, timeout=10).json()
    contents = [m["content"] for m in listed["messages"]]
    assert contents[:2] == ["Bye", "Again"], contents  # and no reply to Bye


def test_a_connection_reset_ends_the_socket_as_a_close_does(app):
    """simple-websocket raises ConnectionClosed once the person has closed the socket,
    but lets a send to a reset connection raise OSError, which flask-sock would hand to
    Flask's 500 handler on an upgraded connection. The service's socket turns it into a
    close, and closing a reset socket raises nothing. (A socket the library is closing
    itself: test_websocket_frames.py.)"""
    failure = ConnectionResetError(104, "Connection reset by peer")

    class ResetConnection:
        def send(self, data: str) -> None:
            raise failure

        def close(self, **_: Any) -> None:
            raise failure

    with app.test_request_context():
        g.request_id = "request"
        socket = sockets.ConversationSocket(ResetConnection(), Caller("org", "user"), "id")
        with pytest.raises(ConnectionClosed):
            socket.send({"type": "delta", "text": "Hi"})
        socket.close(1000, "idle")
