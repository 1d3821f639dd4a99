"""POST .../messages: the person's message, and Florent's reply as JSON or streamed."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, g, request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from ..auth import current_caller
from ..conversations import messages, service
from ..conversations.schemas import MessageCreateSchema, message_created_schema
from ..errors import json_response
from ..validation import json_body, load
from . import model_server, turn_limits, turns
from .reply import Reply
from .schemas import message_unanswered_schema, reply_delta_schema, turn_schema
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
def send_message(conversation_id: str) -> Response:
    """Add the caller's message to the conversation, and Florent's reply (streamed on request)."""
    content = load(message_create_schema, json_body())["content"]
    caller, server, limits = current_caller(), model_server(), turn_limits()
    if server is None:
        message, conversation = messages.append_message(
            caller, conversation_id, content=content, max_messages=limits.max_messages
        )
        return json_response(
            message_unanswered_schema.dump({"message": message, "conversation": conversation}),
            201,
        )
    turn = turns.start_turn(caller, conversation_id, content=content, limits=limits)
    reply = Reply(
        server, caller, turn, app=current_app._get_current_object(), request_id=g.request_id
    )
    if wants_event_stream():
        # The events are sent after this view has returned and its request context is
        # gone: the reply needs none, and takes a database connection only to store itself.
        response = Response(turn_events(reply), 201, mimetype=EVENT_STREAM)
        response.headers.update(EVENT_STREAM_HEADERS)
        response.call_on_close(reply.close)  # even if the stream is never started
        return response
    message, conversation = reply.wait()
    return json_response(
        turn_schema.dump({"messages": [turn.message, message], "conversation": conversation}), 201
    )


def wants_event_stream() -> bool:
    """The client named text/event-stream in Accept (a wildcard alone means JSON)."""
    return any(
        mimetype == EVENT_STREAM and quality > 0 for mimetype, quality in request.accept_mimetypes
    )


def turn_events(reply: Reply) -> Iterator[bytes]:
    """The turn as server-sent events: message, delta..., then done or error.

    The status (201) is long sent by the time the model fails, so failures are events.
    """
    turn = reply.turn
    try:
        yield sse(
            "message",
            message_created_schema.dump(
                {"message": turn.message, "conversation": turn.conversation}
            ),
        )
        for text in reply.texts():
            yield sse("delta", reply_delta_schema.dump({"text": text}))
        message, conversation = reply.store()
        yield sse(
            "done", message_created_schema.dump({"message": message, "conversation": conversation})
        )
    except AssistantUnavailable:
        yield sse("error", {"error": "assistant_unavailable"})
    except service.ConversationNotFound:  # deleted while Florent was replying
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
