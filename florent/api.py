"""The JSON API under /api: thin views that call schemas and services."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, g, request
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from . import assistant, conversations, idempotency
from .assistant import AssistantUnavailable
from .auth import current_caller
from .conversations import ConversationNotFound, ReplyInProgress, Turn
from .cursors import InvalidCursor, decode_cursor, encode_cursor
from .errors import ApiError, issue, json_response
from .schemas import (
    ConversationCreateSchema,
    ConversationDetailSchema,
    ConversationListQuerySchema,
    ConversationPageSchema,
    ConversationRenameSchema,
    ConversationResponseSchema,
    MessageCreatedSchema,
    MessageCreateSchema,
    MessageUnansweredSchema,
    TurnSchema,
    compile_dump,
    load,
)

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api")

IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}")

conversation_create_schema = ConversationCreateSchema()
conversation_list_query_schema = ConversationListQuerySchema()
conversation_rename_schema = ConversationRenameSchema()
message_create_schema = MessageCreateSchema()
# Output schemas, planned once into fast dumpers (see compile_dump).
dump_conversation_response = compile_dump(ConversationResponseSchema())
dump_conversation_page = compile_dump(ConversationPageSchema())
dump_conversation_detail = compile_dump(ConversationDetailSchema())
dump_message_created = compile_dump(MessageCreatedSchema())
dump_message_unanswered = compile_dump(MessageUnansweredSchema())
dump_turn = compile_dump(TurnSchema())

EVENT_STREAM = "text/event-stream"
EVENT_STREAM_HEADERS = {
    "Cache-Control": "no-store",
    # nginx and some other proxies buffer responses unless told not to.
    "X-Accel-Buffering": "no",
}


def json_body() -> Any:
    """The request body as JSON, whatever Content-Type says; an empty body is `{}`.

    `curl -d` sends form-encoded bodies by default, so the header is not trusted to
    tell us anything.
    """
    raw = request.get_data(cache=False)
    if not raw.strip():
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        # Also covers invalid UTF-8, lone surrogates and nesting deeper than 1024.
        raise ApiError(
            400, "invalid_body", [issue([], "invalid_json", "The body is not valid JSON.")]
        ) from None


@bp.errorhandler(ConversationNotFound)
def conversation_not_found(_: ConversationNotFound) -> Response:
    return json_response({"error": "not_found"}, 404)


def idempotency_key() -> str | None:
    """The `Idempotency-Key` header: a structured-field string, quoted or not."""
    value = request.headers.get("Idempotency-Key")
    if value is None:
        return None
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if not IDEMPOTENCY_KEY.fullmatch(value):
        raise ApiError(
            400,
            "invalid_header",
            [issue(["Idempotency-Key"], "invalid_value", "1 to 255 printable ASCII characters.")],
        )
    return value


@bp.post("/florent/conversations")
def create_conversation() -> Response:
    """Start a new conversation owned by the caller (at most once per Idempotency-Key)."""
    fields = load(conversation_create_schema, json_body())
    caller, model, key = current_caller(), current_app.config["FLORENT_MODEL"], idempotency_key()
    if key is None:
        conversation = conversations.create_conversation(caller, model=model, **fields)
        return json_response(
            dump_conversation_response({"conversation": conversation}),
            201,
            {"Location": conversation_url(conversation.id)},
        )
    try:
        stored = idempotency.create_conversation_once(
            caller,
            key,
            fields,
            model=model,
            render=lambda c: orjson.dumps(dump_conversation_response({"conversation": c})),
        )
    except idempotency.IdempotencyKeyReused:
        raise ApiError(422, "idempotency_key_reused") from None
    conversation_id = orjson.loads(stored.body)["conversation"]["_id"]
    response = Response(stored.body, status=stored.status, mimetype="application/json")
    response.headers["Location"] = conversation_url(conversation_id)
    if stored.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def conversation_url(conversation_id: str) -> str:
    """Where a conversation just created lives: in the collection it was posted to.

    The same path url_for(".get_conversation") builds, without binding a URL adapter on
    every create (measured about 15 us of a create's 500). A test checks they agree.
    """
    return f"{request.script_root}{request.path}/{conversation_id}"


@bp.get("/florent/conversations")
def list_conversations() -> Response:
    """One page of the caller's conversations, most recently updated first."""
    caller, secret = current_caller(), current_app.config["SECRET_KEY"]
    query = load(conversation_list_query_schema, request.args.to_dict(), error_code="invalid_query")
    try:
        after = decode_cursor(query["cursor"], caller, secret) if query["cursor"] else None
    except InvalidCursor:
        raise ApiError(
            400,
            "invalid_query",
            [issue(["cursor"], "invalid_cursor", "Not a cursor from this list.")],
        ) from None
    page = conversations.list_conversations(caller, limit=query["limit"], after=after)
    next_cursor = encode_cursor(page.next_cursor, caller, secret) if page.next_cursor else None
    return json_response(
        dump_conversation_page({"conversations": page.conversations, "next_cursor": next_cursor}),
        200,
    )


@bp.get("/florent/conversations/<conversation_id>")
def get_conversation(conversation_id: str) -> Response:
    """The conversation and its messages, oldest first."""
    conversation, messages = conversations.get_conversation(current_caller(), conversation_id)
    return json_response(
        dump_conversation_detail({"conversation": conversation, "messages": messages}), 200
    )


@bp.patch("/florent/conversations/<conversation_id>")
def rename_conversation(conversation_id: str) -> Response:
    """Give the conversation a new title."""
    fields = load(conversation_rename_schema, json_body())
    conversation = conversations.rename_conversation(current_caller(), conversation_id, **fields)
    return json_response(dump_conversation_response({"conversation": conversation}), 200)


@bp.delete("/florent/conversations/<conversation_id>")
def delete_conversation(conversation_id: str) -> Response:
    """Delete the conversation and all its messages."""
    conversations.delete_conversation(current_caller(), conversation_id)
    return Response(status=204)


@bp.post("/florent/conversations/<conversation_id>/messages")
def append_message(conversation_id: str) -> Response:
    """Add the caller's message to the conversation, and Florent's reply (streamed on request)."""
    fields = load(message_create_schema, json_body())
    caller, server = current_caller(), assistant.model_server()
    if server is None:
        message, conversation = conversations.append_message(
            caller, conversation_id, role="user", **fields
        )
        return json_response(
            dump_message_unanswered(
                {"message": message, "conversation": conversation, "assistant": None}
            ),
            201,
        )
    try:
        turn = conversations.start_turn(
            caller, conversation_id, content=fields["content"], stale_after=server.stale_after
        )
    except ReplyInProgress:
        raise ApiError(409, "reply_in_progress") from None
    reply = assistant.Reply(
        server, caller, turn, app=current_app._get_current_object(), request_id=g.request_id
    )
    if wants_event_stream():
        # The events are sent after this view has returned and its request context is
        # gone: the reply needs none, and takes a database connection only to store itself.
        response = Response(turn_events(reply, turn), 201, mimetype=EVENT_STREAM)
        response.headers.update(EVENT_STREAM_HEADERS)
        response.call_on_close(reply.close)  # even if the stream is never started
        return response
    try:
        message, conversation = reply.wait()
    except AssistantUnavailable:
        raise ApiError(502, "assistant_unavailable") from None
    return json_response(
        dump_turn({"messages": [turn.message, message], "conversation": conversation}), 201
    )


def wants_event_stream() -> bool:
    """The client named text/event-stream in Accept (a wildcard alone means JSON)."""
    return any(
        mimetype == EVENT_STREAM and quality > 0 for mimetype, quality in request.accept_mimetypes
    )


def turn_events(reply: assistant.Reply, turn: Turn) -> Iterator[bytes]:
    """The turn as server-sent events: message, delta..., then done or error.

    The status (201) is long sent by the time the model fails, so failures are events.
    """
    try:
        yield sse(
            "message",
            dump_message_created({"message": turn.message, "conversation": turn.conversation}),
        )
        for text in reply.texts():
            yield sse("delta", {"text": text})
        message, conversation = reply.store()
        yield sse("done", dump_message_created({"message": message, "conversation": conversation}))
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
