"""The gunicorn worker the service runs in (gunicorn.conf.py names it)."""

from __future__ import annotations

import socket
import ssl
from typing import Any

from gunicorn.http.body import LengthReader
from gunicorn.workers.sync import SyncWorker as GunicornSyncWorker

TCP_CORK = getattr(socket, "TCP_CORK", None)  # Linux only


class SyncWorker(GunicornSyncWorker):
    """gunicorn's sync worker with two changes, each measured (README, "gunicorn").

    A response leaves in as few packets as it fits. gunicorn writes a response's head
    and its body separately, and with Nagle's algorithm off each write is a packet of
    its own, then the FIN a third; corked, they go as one when the connection closes.
    A corked partial packet can wait up to 200 ms for more, so this worker is for the
    API without streamed replies, as gunicorn.conf.py uses it.

    It closes a finished connection at once when the client has nothing more to send.
    After every response gunicorn half-closes the connection and waits, up to 2 s, for
    the client to hang up, so that closing never lands on request bytes still unread:
    the kernel would answer those with a reset, and the client could lose the response.
    A sync worker serves nothing else meanwhile, a client round trip on every request.
    Like nginx's lingering close, this waits only when the client may still be sending.
    """

    def handle_request(self, listener: Any, req: Any, client: Any, addr: Any) -> None:
        if can_cork(req, client):
            client.setsockopt(socket.IPPROTO_TCP, TCP_CORK, 1)
        super().handle_request(listener, req, client, addr)
        # Returning means the whole response was written. Closing (or gunicorn's own
        # close, which does nothing to a socket already closed) sends it with the FIN.
        if client_is_done_sending(req, client):
            client.close()


def can_cork(req: Any, client: socket.socket) -> bool:
    """TCP only, and not when the client waits for `100 Continue` before it sends its
    body: gunicorn sends that first, and corked it would sit for 200 ms."""
    if TCP_CORK is None or client.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    return all(name != "EXPECT" for name, _ in req.headers)


def client_is_done_sending(req: Any, client: socket.socket) -> bool:
    """Whether the request's body was read to its end and no more bytes wait behind
    it, in gunicorn's buffer or the kernel's (a pipelined request, say)."""
    body = req.body.reader
    if not isinstance(body, LengthReader) or body.length or req.unreader.buf.getvalue():
        return False
    if isinstance(client, ssl.SSLSocket):  # cannot peek under TLS
        return False
    try:
        # Empty means the client has already hung up: nothing more can come.
        return client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return True
    except OSError:
        return False
