"""simple-websocket writes a frame with one socket.send, which may send part of it when
the client reads slowly; the socket the service hands it (WholeFrames) sends every frame
whole. Both are checked on the library itself, over a real socket pair, as is how the
service's socket ends when the library is closing it."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
from flask import g
from simple_websocket import ConnectionClosed, Server
from wsproto import ConnectionType, WSConnection
from wsproto.events import CloseConnection, Request
from wsproto.utilities import LocalProtocolError

from florent.assistant.sockets import ConversationSocket, WholeFrames
from florent.auth import Caller

BIG = "x" * (1 << 20)


def messages_sent_through(wrap: Any) -> list[str]:
    """What a slow client decodes of a 1 MiB text message and a short one, sent by
    simple-websocket's Server on a socket that `wrap` gives it."""
    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ours.settimeout(10)  # as a server's socket is: a send takes what fits, then returns
    received = bytearray()

    def read_slowly() -> None:
        while chunk := theirs.recv(16384):
            received.extend(chunk)
            time.sleep(0.001)

    reader = threading.Thread(target=read_slowly)
    reader.start()
    server = upgraded(wrap(ours))
    server.send(BIG)
    server.send("end")
    ours.shutdown(socket.SHUT_WR)
    reader.join(timeout=30)
    server.close()
    ours.close()
    theirs.close()

    return texts_in(bytes(received[received.index(b"\r\n\r\n") + 4 :]))


def upgraded(connection: Any) -> Server:
    """simple-websocket's Server on `connection`, as the upgrade of a client's request."""
    request = WSConnection(ConnectionType.CLIENT).send(Request(host="florent.test", target="/"))
    key = next(
        line.split(b": ", 1)[1]
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    return Server(
        {
            "gunicorn.socket": connection,
            "HTTP_HOST": "florent.test",
            "HTTP_CONNECTION": "Upgrade",
            "HTTP_UPGRADE": "websocket",
            "HTTP_SEC_WEBSOCKET_KEY": key.decode(),
            "HTTP_SEC_WEBSOCKET_VERSION": "13",
        }
    )


def texts_in(stream: bytes) -> list[str]:
    """The text frames a server sent (unmasked), as far as they parse."""
    texts = []
    while len(stream) >= 2 and stream[0] == 0x81:  # a whole text message in one frame
        length, start = stream[1] & 0x7F, 2
        if length == 126:
            length, start = int.from_bytes(stream[2:4]), 4
        elif length == 127:
            length, start = int.from_bytes(stream[2:10]), 10
        texts.append(stream[start : start + length].decode(errors="replace"))
        stream = stream[start + length :]
    return texts


def test_every_frame_arrives_whole_through_the_services_socket():
    assert messages_sent_through(WholeFrames) == [BIG, "end"]


def test_simple_websocket_alone_loses_part_of_a_frame_to_a_slow_client():
    # The reason for WholeFrames: when this fails, simple-websocket sends whole frames
    # itself, and WholeFrames can go.
    assert messages_sent_through(lambda connection: connection) != [BIG, "end"]


def test_a_socket_simple_websocket_is_closing_ends_as_a_close(app):
    """simple-websocket closes a socket itself (a ping unanswered, a frame too big) by
    putting wsproto in its closing state before it marks itself disconnected; a send in
    between raises wsproto's LocalProtocolError. The service's socket ends as a close."""
    ours, theirs = socket.socketpair()
    try:
        server = upgraded(ours)
        server.ws.send(CloseConnection(code=1008))  # the first step of the library's close
        with pytest.raises(LocalProtocolError):
            server.send("the library's own behaviour")
        with app.test_request_context():
            g.request_id = "request"
            service_socket = ConversationSocket(server, Caller("org", "user"), "id")
            with pytest.raises(ConnectionClosed):
                service_socket.send({"type": "delta", "text": "Hi"})
            service_socket.close(1000, "idle")
    finally:
        theirs.close()
        ours.close()
