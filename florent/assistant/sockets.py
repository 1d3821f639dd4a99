"""The conversation's WebSocket, opened with a ticket (florent/assistant/tickets.py): it
serves any number of turns, one at a time.

Frames are JSON text: `message` and `stop` in; `message`, `delta`, `done`, `stopped` and
`error` out (docs/api.md, "The conversation WebSocket").
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from typing import Any

import orjson
from flask import Blueprint, current_app, g, request
from simple_websocket import ConnectionClosed
from wsproto.utilities import LocalProtocolError

from .. import audit
from ..auth import Caller, impersonation_event
from ..auth.apikeys import key_is_live
from ..auth.caller import unauthorized
from ..conversations import messages
from ..conversations.schemas import MessageCreateSchema, dump_message_created
from ..errors import ApiError, as_api_error
from ..extensions import sock
from ..limits import caller_key, frame_within_limit
from ..validation import load, parse_json
from . import assistant, tickets, turns
from .reply import HEARTBEAT, Reply
from .schemas import dump_reply_delta, dump_reply_stopped

bp = Blueprint("socket", __name__, url_prefix="/api/florent/conversations")

# A socket with no frame in or out for this long is closed.
IDLE_SECONDS = 10 * 60
# How often a socket looks up from waiting for a frame once a reply has kept it open
# past its idle time (a model silent for that long).
TICK_SECONDS = 1.0
# Sockets one caller may hold open in one process. Each holds a greenlet (or a thread)
# and a connection for as long as it is used, so tickets alone, minted within the rate
# limit, would let one caller fill a worker.
MAX_OPEN_SOCKETS = 20

message_create_schema = MessageCreateSchema()
_open_sockets: Counter[str] = Counter()
_open_sockets_lock = threading.Lock()


@bp.before_request
def admit_with_ticket() -> None:
    """Refuse the upgrade (401, as JSON) unless the ticket opens this conversation, and
    (429) when its caller holds as many sockets as they may."""
    ticket = request.args.get("ticket", "")
    conversation_id = (request.view_args or {}).get("conversation_id", "")
    caller = tickets.redeem_ticket(ticket, conversation_id)
    if caller is None:
        raise unauthorized()
    g.caller = caller
    if caller.impersonating:  # the socket is the minting key's, acting for the person
        audit.record_now(impersonation_event(caller))
    _take_socket_place(caller_key())
    # No permessage-deflate, which simple-websocket accepts whenever offered: frames are
    # small deltas, and each socket's compressors cost memory and every frame CPU.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    for server in ("gunicorn.socket", "werkzeug.socket"):  # where simple-websocket looks
        if server in request.environ:
            request.environ[server] = WholeFrames(request.environ[server])


def _take_socket_place(key: str) -> None:
    with _open_sockets_lock:
        if _open_sockets[key] >= MAX_OPEN_SOCKETS:
            raise ApiError(429, "too_many_sockets", headers={"Retry-After": "60"})
        _open_sockets[key] += 1
    g.socket_place = key


@bp.teardown_request
def _free_socket_place(_: BaseException | None) -> None:
    """When the socket's request ends: the socket closed, or its upgrade failed."""
    key = g.pop("socket_place", None)
    if key is not None:
        with _open_sockets_lock:
            _open_sockets[key] -= 1
            if not _open_sockets[key]:
                del _open_sockets[key]


class WholeFrames:
    """The connection as simple-websocket gets it. It writes each frame with one
    `socket.send`, which may take only part of it when the client reads slowly
    (miguelgrinberg/simple-websocket#45): here every frame goes out whole, one at a time."""

    def __init__(self, connection: Any):
        self._connection = connection
        self._lock = threading.Lock()

    def send(self, data: bytes) -> int:
        with self._lock:
            # One send takes a frame whole unless the client lags; gevent's sendall
            # spends a getsockopt on every call, so it only finishes what is left.
            sent = self._connection.send(data)
            if sent < len(data):
                self._connection.sendall(memoryview(data)[sent:])
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


@sock.route("/<conversation_id>/ws", bp=bp)
def conversation_socket(ws: Any, conversation_id: str) -> None:
    """The conversation's WebSocket, once the ticket has admitted its caller."""
    ConversationSocket(ws, g.caller, conversation_id).serve()


class ConversationSocket:
    """One open socket: frames in on this greenlet (or thread), a turn's reply relayed on
    another; sends are serialized, since both send."""

    def __init__(self, ws: Any, caller: Caller, conversation_id: str):
        self.ws, self.caller, self.conversation_id = ws, caller, conversation_id
        self.app = current_app._get_current_object()
        self.request_id = g.request_id
        self._send_lock = threading.Lock()
        # A turn is in progress from its start until it is settled (stored, or its slot
        # freed), which is before its last frame is sent.
        self._replying = False
        self._last_frame = time.monotonic()

    def serve(self) -> None:
        while True:
            # Wait until the socket would be idle, not a tick at a time: a thousand open
            # sockets would wake a worker a thousand times a second for nothing.
            until_idle = self._last_frame + IDLE_SECONDS - time.monotonic()
            try:
                frame = self.ws.receive(timeout=until_idle if until_idle > 0 else TICK_SECONDS)
            except ConnectionClosed:
                return
            if frame is not None:
                self._last_frame = time.monotonic()
                if not self.receive(frame):
                    return
            elif self._idle():
                self.close(1000, "idle")
                return

    # A socket stops working when the credential that opened it would be refused on a
    # request: a session token once expired, a key once revoked. The next frame is
    # answered `unauthorized`, and the socket closed.

    def _token_expired(self) -> bool:
        valid_until = self.caller.valid_until
        return valid_until is not None and valid_until <= time.time()

    def _key_revoked(self) -> bool:
        key_id = self.caller.api_key_id
        return key_id is not None and not key_is_live(key_id)

    def _refuse(self) -> bool:
        self.send({"type": "error", "error": "unauthorized"})
        self.close(1008, "unauthorized")
        return False

    def _idle(self) -> bool:
        return not self._replying and time.monotonic() - self._last_frame > IDLE_SECONDS

    def receive(self, frame: str | bytes) -> bool:
        """One frame in; a bad one, or one the conversation refuses, is answered with an
        `error` frame and the socket stays open. False when the socket was closed."""
        try:
            if self._token_expired():
                return self._refuse()
            # Before the key's lookup: a frame over the limit costs no statement.
            if not frame_within_limit():
                raise ApiError(429, "rate_limited")
            if self._key_revoked():
                return self._refuse()
            data = parse_json(frame)
            if not isinstance(data, dict) or data.get("type") not in ("message", "stop"):
                raise ApiError(400, "invalid_body")
            if data["type"] == "stop":
                self.stop()
            else:
                self.start_turn(load(message_create_schema, data)["content"])
        except ConnectionClosed:
            raise
        except Exception as error:
            self.send({"type": "error", **as_api_error(error).body()})
        return True

    def stop(self) -> None:
        florent = assistant()
        slot = turns.reply_in_progress(self.caller, self.conversation_id, florent.limits)
        florent.stops.publish(self.conversation_id, slot)

    def start_turn(self, content: str) -> None:
        if self._replying:
            raise ApiError(409, "reply_in_progress")
        florent = assistant()
        if florent.server is None:  # Florent makes no replies: the message is stored
            message, conversation = messages.append_message(
                self.caller,
                self.conversation_id,
                content=content,
                max_messages=florent.limits.max_messages,
            )
            said = {"message": message, "conversation": conversation}
            self.send({"type": "message", **dump_message_created(said)})
            self.send({"type": "done", **dump_reply_stopped({**said, "message": None})})
            return
        turn = turns.start_turn(
            self.caller, self.conversation_id, content=content, limits=florent.limits
        )
        reply = Reply(
            florent.server,
            self.caller,
            turn,
            app=self.app,
            request_id=self.request_id,
            stops=florent.stops,
            relay=florent.relay,
        )
        try:
            self.send({"type": "message", **dump_message_created(turn)})
        except BaseException:
            reply.close()  # the person left as the turn started: its slot is freed
            raise
        self._replying = True
        threading.Thread(target=self.relay, args=(reply,), daemon=True).start()

    def relay(self, reply: Reply) -> None:
        last: dict[str, Any] | None = None
        try:
            for text in reply.events():
                if text is not HEARTBEAT:
                    self.send({"type": "delta", **dump_reply_delta({"text": text})})
            message, conversation = reply.store()
            kind = "stopped" if reply.stopped else "done"
            ended = dump_reply_stopped({"message": message, "conversation": conversation})
            last = {"type": kind, **ended}
        except ConnectionClosed:
            pass  # the person left: as on a stream, no partial reply is kept
        except Exception as error:
            last = {"type": "error", "error": as_api_error(error).code}
        finally:
            reply.close()
            self._replying = False
        if last is not None:
            with contextlib.suppress(ConnectionClosed):
                self.send(last)

    def send(self, frame: dict[str, Any]) -> None:
        """Send a frame; a socket the person has closed, or reset, or that simple-websocket
        is closing (a ping unanswered), raises ConnectionClosed: it names only the first."""
        try:
            with self._send_lock:
                self.ws.send(orjson.dumps(frame).decode())
        except (OSError, LocalProtocolError) as error:  # closing under us, in wsproto
            raise ConnectionClosed() from error
        self._last_frame = time.monotonic()

    def close(self, reason: int, message: str) -> None:
        """Close the socket, if the person has not closed or reset it already."""
        with contextlib.suppress(ConnectionClosed, OSError, LocalProtocolError):
            self.ws.close(reason=reason, message=message)
