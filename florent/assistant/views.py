"""Chat turns over HTTP: the person's message and Florent's reply, as JSON or streamed;
Stop; and tickets for the conversation's WebSocket."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, g, request, url_for
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from ..auth import current_caller, requires
from ..conversations import messages
from ..conversations.schemas import MessageCreateSchema, dump_message_created
from ..conversations.service import ConversationNotFound
from ..errors import json_response
from ..models import WRITE
from ..validation import json_body, load
from . import assistant, tickets, turns
from .reply import HEARTBEAT, Reply
from .schemas import (
    dump_message_unanswered,
    dump_reply_delta,
    dump_reply_stopped,
    dump_socket_ticket,
    dump_stopping,
    dump_turn,
)
from .turns import AssistantUnavailable

log = logging.getLogger(__name__)
bp = Blueprint("assistant", __name__, url_prefix="/florent/conversations")

EVENT_STREAM = "text/event-stream"
EVENT_STREAM_HEADERS = {
    "Cache-Control": "no-store",
    # nginx and some other proxies buffer responses unless told not to.
    "X-Accel-Buffering": "no",
}
message_create_schema = MessageCreateSchema()


@bp.post("/<conversation_id>/messages")
@requires(WRITE)
def send_message(conversation_id: str) -> Response:
    """Add the caller's message to the conversation, and Florent's reply (streamed on request)."""
    content = load(message_create_schema, json_body())["content"]
    caller, florent = current_caller(), assistant()
    if florent.server is None:
        message, conversation = messages.append_message(
            caller, conversation_id, content=content, max_messages=florent.limits.max_messages
        )
        return json_response(
            dump_message_unanswered({"message": message, "conversation": conversation}),
            201,
        )
    reply = start_reply(conversation_id, content)
    if wants_event_stream():
        # The events are sent after this view has returned and its request context is
        # gone: the reply needs none, and takes a database connection only to store itself.
        response = Response(turn_events(reply), 201, mimetype=EVENT_STREAM)
        response.headers.update(EVENT_STREAM_HEADERS)
        response.call_on_close(reply.close)  # even if the stream is never started
        return response
    message, conversation = reply.wait()
    said = [reply.turn.message] + ([message] if message is not None else [])
    return json_response(dump_turn({"messages": said, "conversation": conversation}), 201)


def start_reply(conversation_id: str, content: str) -> Reply:
    """Store the person's message, take the reply slot, and make the reply to relay."""
    caller, florent = current_caller(), assistant()
    turn = turns.start_turn(caller, conversation_id, content=content, limits=florent.limits)
    return Reply(
        florent.server,
        caller,
        turn,
        app=current_app._get_current_object(),
        request_id=g.request_id,
        stops=florent.stops,
        relay=florent.relay,
    )


def wants_event_stream() -> bool:
    """The client named text/event-stream in Accept, whatever its case and parameters (a
    wildcard alone means JSON)."""
    return any(
        value.partition(";")[0].strip().lower() == EVENT_STREAM and quality > 0
        for value, quality in request.accept_mimetypes
    )


def turn_events(reply: Reply) -> Iterator[bytes]:
    """The turn as server-sent events: message, delta..., then done, stopped or error.

    The status (201) is long sent by the time the model fails, so failures are events.
    """
    turn = reply.turn
    try:
        yield sse("message", dump_message_created(turn))
        for text in reply.events():
            if text is HEARTBEAT:
                yield b": still thinking\n\n"  # a comment: clients ignore it
            else:
                yield sse("delta", dump_reply_delta({"text": text}))
        message, conversation = reply.store()
        ended = {"message": message, "conversation": conversation}
        if reply.stopped:
            yield sse("stopped", dump_reply_stopped(ended))
        else:
            yield sse("done", dump_message_created(ended))
    except AssistantUnavailable:
        yield sse("error", {"error": "assistant_unavailable"})
    except ConversationNotFound:  # deleted while Florent was replying
        yield sse("error", {"error": "not_found"})
    except (DBAPIError, PoolTimeoutError):
        log.exception("database unavailable while storing a reply")
        yield sse("error", {"error": "service_unavailable"})
    except Exception:
        log.exception("reply stream failed")
        yield sse("error", {"error": "internal_error"})
    finally:
        reply.close()


def sse(event: str, data: Any) -> bytes:
    """One server-sent event; JSON has no raw newline, so the data is one line."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


@bp.post("/<conversation_id>/stop")
@requires(WRITE)
def stop_reply(conversation_id: str) -> Response:
    """Stop Florent's reply in progress in this conversation, wherever it is relayed."""
    florent = assistant()
    slot = turns.reply_in_progress(current_caller(), conversation_id, florent.limits)
    florent.stops.publish(conversation_id, slot)
    return json_response(dump_stopping({"stopping": True}), 202)


@bp.post("/<conversation_id>/ws-ticket")
@requires(WRITE)
def socket_ticket(conversation_id: str) -> Response:
    """A single-use ticket, good for a minute, to open this conversation's WebSocket."""
    ticket = tickets.mint_ticket(current_caller(), conversation_id)
    # A WebSocket route's external URL is ws:// (wss:// when the request came over https).
    ws_url = url_for("socket.conversation_socket", conversation_id=conversation_id, _external=True)
    return json_response(
        dump_socket_ticket(
            {"ticket": ticket, "expires_in": tickets.TICKET_SECONDS, "ws_url": ws_url}
        ),
        201,
    )
