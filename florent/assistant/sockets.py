"""The conversation's WebSocket: single-use tickets (a browser cannot put a bearer token
on an upgrade), and the socket itself, which serves any number of turns, one at a time.

Frames are JSON text: `message` and `stop` in; `message`, `delta`, `done`, `stopped` and
`error` out (docs/api.md, "The conversation WebSocket").
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from datetime import timedelta
from typing import Any

import orjson
from flask import Blueprint, current_app, g, request
from simple_websocket import ConnectionClosed
from sqlalchemy import bindparam, delete, func, insert, select

from .. import audit
from ..auth import Caller, impersonation_event
from ..auth.caller import unauthorized
from ..conversations import messages
from ..conversations.schemas import MessageCreateSchema, dump_message_created
from ..conversations.service import OWNED, ConversationNotFound, owner
from ..database import one_statement
from ..errors import ApiError, as_api_error
from ..extensions import sock
from ..housekeeping import now_and_then
from ..models import Conversation, SocketTicket
from ..validation import load, parse_json
from . import assistant, turns
from .reply import HEARTBEAT, Reply
from .schemas import dump_reply_delta, dump_reply_stopped

bp = Blueprint("socket", __name__, url_prefix="/api/florent/conversations")

TICKET_SECONDS = 60
# A socket with no frame in or out for this long is closed.
IDLE_SECONDS = 10 * 60
# How often the socket looks up from waiting for a frame (idle time, a turn's end).
TICK_SECONDS = 1.0

MINT = (
    insert(SocketTicket)
    .from_select(
        ["ticket_hash", "org_id", "user_id", "conversation_id", "expires_at", "acting_key_id"],
        select(
            bindparam("ticket_hash"),
            Conversation.org_id,
            Conversation.user_id,
            Conversation.id,
            func.now() + timedelta(seconds=TICKET_SECONDS),
            bindparam("acting_key_id"),
        ).where(OWNED),
    )
    .returning(SocketTicket.conversation_id)
)
REDEEM = (
    delete(SocketTicket)
    .where(
        SocketTicket.org_id == bindparam("org_id"),
        SocketTicket.ticket_hash == bindparam("hash"),
        SocketTicket.conversation_id == bindparam("conversation_id"),
        SocketTicket.expires_at > func.now(),
    )
    .returning(SocketTicket.org_id, SocketTicket.user_id, SocketTicket.acting_key_id)
)
PURGE = delete(SocketTicket).where(
    SocketTicket.ticket_hash.in_(
        select(SocketTicket.ticket_hash).where(SocketTicket.expires_at < func.now()).limit(1000)
    )
)
message_create_schema = MessageCreateSchema()


def ticket_hash(ticket: str) -> bytes:
    return hashlib.sha256(ticket.encode()).digest()


def mint_ticket(caller: Caller, conversation_id: str) -> str:
    """A ticket for the caller's conversation; only its hash is stored. It names its
    organization, which every lookup of a person's data starts from (docs/scaling.md)."""
    organization = base64.urlsafe_b64encode(caller.org_id.encode()).rstrip(b"=").decode()
    ticket = f"{organization}.{secrets.token_urlsafe(32)}"
    params = {
        **owner(caller, conversation_id),
        "ticket_hash": ticket_hash(ticket),
        "acting_key_id": caller.api_key_id if caller.impersonating else None,
    }
    with one_statement() as connection:
        if connection.execute(MINT, params).first() is None:
            raise ConversationNotFound()
    now_and_then("socket tickets", purge_expired_tickets)
    return ticket


def purge_expired_tickets() -> None:
    with one_statement() as connection:
        connection.execute(PURGE)


def redeem_ticket(ticket: str, conversation_id: str) -> Caller | None:
    """The caller the ticket was minted for, if it is for this conversation and alive;
    it cannot be used again either way."""
    organization, dot, _ = ticket.partition(".")
    try:
        org_id = base64.urlsafe_b64decode(organization + "=" * (-len(organization) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    if not dot:
        return None
    params = {"org_id": org_id, "hash": ticket_hash(ticket), "conversation_id": conversation_id}
    with one_statement() as connection:
        row = connection.execute(REDEEM, params).first()
    if row is None:
        return None
    acting = row.acting_key_id is not None
    return Caller(org_id, row.user_id, api_key_id=row.acting_key_id, impersonating=acting)


@bp.before_request
def admit_with_ticket() -> None:
    """Refuse the upgrade (401, as JSON) unless the ticket opens this conversation."""
    ticket = request.args.get("ticket", "")
    conversation_id = (request.view_args or {}).get("conversation_id", "")
    caller = redeem_ticket(ticket, conversation_id) if 0 < len(ticket) <= 500 else None
    if caller is None:
        raise unauthorized()
    g.caller = caller
    if caller.impersonating:  # the socket is the minting key's, acting for the person
        audit.record_now(impersonation_event(caller))
    # No permessage-deflate, which simple-websocket accepts whenever offered: frames are
    # small deltas, and each socket's compressors cost memory and every frame CPU.
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)
    for server in ("gunicorn.socket", "werkzeug.socket"):  # where simple-websocket looks
        if server in request.environ:
            request.environ[server] = WholeFrames(request.environ[server])


class WholeFrames:
    """The connection as simple-websocket gets it. It writes each frame with one
    `socket.send`, which may take only part of it when the client reads slowly
    (miguelgrinberg/simple-websocket#45): here every frame goes out whole, one at a time."""

    def __init__(self, connection: Any):
        self._connection = connection
        self._lock = threading.Lock()

    def send(self, data: bytes) -> int:
        with self._lock:
            self._connection.sendall(data)
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
        self._relaying: threading.Thread | None = None
        self._last_frame = time.monotonic()

    def serve(self) -> None:
        while True:
            try:
                frame = self.ws.receive(timeout=TICK_SECONDS)
            except ConnectionClosed:
                return
            if frame is not None:
                self._last_frame = time.monotonic()
                self.receive(frame)
            elif self._idle():
                self.ws.close(reason=1000, message="idle")
                return

    def _idle(self) -> bool:
        busy = self._relaying is not None and self._relaying.is_alive()
        return not busy and time.monotonic() - self._last_frame > IDLE_SECONDS

    def receive(self, frame: str | bytes) -> None:
        """One frame in; a bad one, or one the conversation refuses, is answered with an
        `error` frame and the socket stays open."""
        try:
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

    def stop(self) -> None:
        florent = assistant()
        slot = turns.reply_in_progress(self.caller, self.conversation_id, florent.limits)
        florent.stops.publish(self.conversation_id, slot)

    def start_turn(self, content: str) -> None:
        if self._relaying is not None and self._relaying.is_alive():
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
        self.send({"type": "message", **dump_message_created(turn)})
        reply = Reply(
            florent.server,
            self.caller,
            turn,
            app=self.app,
            request_id=self.request_id,
            stops=florent.stops,
            relay=florent.relay,
        )
        self._relaying = threading.Thread(target=self.relay, args=(reply,), daemon=True)
        self._relaying.start()

    def relay(self, reply: Reply) -> None:
        try:
            for text in reply.events():
                if text is not HEARTBEAT:
                    self.send({"type": "delta", **dump_reply_delta({"text": text})})
            message, conversation = reply.store()
            kind = "stopped" if reply.stopped else "done"
            ended = dump_reply_stopped({"message": message, "conversation": conversation})
            self.send({"type": kind, **ended})
        except ConnectionClosed:
            pass  # the person left: as on a stream, no partial reply is kept
        except Exception as error:
            self.send({"type": "error", "error": as_api_error(error).code})
        finally:
            reply.close()

    def send(self, frame: dict[str, Any]) -> None:
        """Send a frame; a socket the person has closed raises ConnectionClosed."""
        with self._send_lock:
            self.ws.send(orjson.dumps(frame).decode())
        self._last_frame = time.monotonic()
