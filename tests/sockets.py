"""Helpers of the WebSocket tests: the app served on loopback as `flask run` serves it,
tickets, sockets and frames."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import orjson
import requests
from flask import Flask
from simple_websocket import Client, ConnectionClosed
from werkzeug.serving import make_server

from .factories import URL


@contextmanager
def served(app: Flask) -> Iterator[str]:
    """The app on loopback, as `flask run` serves it; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def mint(base: str, headers: dict[str, str], conversation_id: str) -> str:
    response = requests.post(f"{base}{URL}/{conversation_id}/ws-ticket", headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["ticket"]


def connect(base: str, conversation_id: str, ticket: str) -> Client:
    url = f"{base.replace('http', 'ws')}{URL}/{conversation_id}/ws?ticket={ticket}"
    return Client.connect(url)


def upgrade_status(base: str, conversation_id: str, ticket: str) -> tuple[int, dict]:
    """An upgrade that the service refuses: its status and JSON body."""
    response = requests.get(
        f"{base}{URL}/{conversation_id}/ws",
        params={"ticket": ticket},
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        },
        timeout=10,
    )
    return response.status_code, response.json()


def hang_up(ws: Client) -> None:
    with suppress(ConnectionClosed):  # the server may have closed it first
        ws.close()


def say(ws: Client, content: str) -> list[dict]:
    """Send a message frame; the frames answered up to `done` or `error`."""
    ws.send(orjson.dumps({"type": "message", "content": content}).decode())
    got = []
    while not got or got[-1]["type"] not in ("done", "error"):
        got.append(orjson.loads(ws.receive(timeout=10)))
    return got


@contextmanager
def socket_opened(app: Flask, person: dict[str, str]) -> Iterator[tuple[str, Client, str]]:
    """A new conversation of the person's (their headers) and its socket, with `app`
    served: the base URL, the socket and the conversation's id. The socket is hung up and
    the app's assistant closed after."""
    try:
        with served(app) as base:
            created = requests.post(f"{base}{URL}", json={}, headers=person, timeout=10)
            conversation_id = created.json()["conversation"]["_id"]
            ws = connect(base, conversation_id, mint(base, person, conversation_id))
            try:
                yield base, ws, conversation_id
            finally:
                hang_up(ws)
    finally:
        app.extensions["florent.assistant"].close()
