"""The conversations API: thin views between the schemas and the service."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from flask import Blueprint, Response, current_app, request, url_for

from ..auth import current_caller, requires
from ..errors import ApiError, issue, json_response
from ..models import READ, WRITE
from ..validation import json_body, load, load_query
from . import erasure, export, idempotency, messages, search, service
from .cursors import InvalidCursor, Position, decode_cursor, encode_cursor
from .schemas import (
    ConversationCreateSchema,
    ConversationListQuerySchema,
    ConversationQuerySchema,
    ConversationRenameSchema,
    MessagePageQuerySchema,
    dump_conversation_detail,
    dump_conversation_page,
    dump_conversation_response,
    dump_conversation_search_page,
    dump_conversations_erased,
    dump_message_page,
)

# The conversations' routes, and the export of them all (/api/florent/export).
bp = Blueprint("conversations", __name__, url_prefix="/florent")

IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}")
LIST_SCOPE = "conversations"
NDJSON = "application/x-ndjson"

conversation_create_schema = ConversationCreateSchema()
conversation_rename_schema = ConversationRenameSchema()
conversation_list_query_schema = ConversationListQuerySchema()
conversation_query_schema = ConversationQuerySchema()
message_page_query_schema = MessagePageQuerySchema()


def messages_scope(conversation_id: str) -> str:
    return f"messages:{conversation_id}"


def search_scope(q: str) -> str:
    """A search's cursors continue that search only."""
    return f"search:{hashlib.sha256(q.encode()).hexdigest()}"


def read_cursor(token: str | None, scope: str) -> Position | None:
    if token is None:
        return None
    try:
        return decode_cursor(token, current_caller(), current_app.config["SECRET_KEY"], scope)
    except InvalidCursor:
        raise ApiError(
            400,
            "invalid_query",
            [issue(["cursor"], "invalid_cursor", "Not a cursor from this list.")],
        ) from None


def write_cursor(position: Position | None, scope: str) -> str | None:
    if position is None:
        return None
    return encode_cursor(position, current_caller(), current_app.config["SECRET_KEY"], scope)


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


@bp.post("/conversations")
@requires(WRITE)
def create_conversation() -> Response:
    """Start a new conversation owned by the caller (at most once per Idempotency-Key)."""
    fields = load(conversation_create_schema, json_body())
    caller, model, key = current_caller(), current_app.config["FLORENT_MODEL"], idempotency_key()
    if key is None:
        conversation = service.create_conversation(caller, model=model, **fields)
        return json_response(
            dump_conversation_response({"conversation": conversation}),
            201,
            {"Location": url_for(".get_conversation", conversation_id=conversation.id)},
        )
    try:
        stored = idempotency.create_conversation_once(
            caller,
            key,
            fields,
            model=model,
            render=lambda c: json_response(
                dump_conversation_response({"conversation": c}), 201
            ).get_data(),
        )
    except idempotency.IdempotencyKeyReused:
        raise ApiError(422, "idempotency_key_reused") from None
    response = Response(stored.body, status=stored.status, mimetype="application/json")
    conversation_id = response.get_json()["conversation"]["_id"]
    response.headers["Location"] = url_for(".get_conversation", conversation_id=conversation_id)
    if stored.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@bp.get("/conversations")
@requires(READ)
def list_conversations() -> Response:
    """One page of the caller's conversations, most recently updated first; with `q`,
    only those that match every word, each with a snippet."""
    query = load_query(conversation_list_query_schema)
    if query["q"] is not None:
        return search_page(query)
    after = read_cursor(query["cursor"], LIST_SCOPE)
    page = service.list_conversations(current_caller(), limit=query["limit"], after=after)
    return json_response(
        dump_conversation_page(
            {"conversations": page.rows, "next_cursor": write_cursor(page.next, LIST_SCOPE)}
        ),
        200,
    )


def search_page(query: dict[str, Any]) -> Response:
    """One page of the caller's conversations that match `q`, each with a snippet."""
    scope = search_scope(query["q"])
    page = search.search_conversations(
        current_caller(),
        query["q"],
        limit=query["limit"],
        after=read_cursor(query["cursor"], scope),
    )
    return json_response(
        dump_conversation_search_page(
            {"conversations": page.rows, "next_cursor": write_cursor(page.next, scope)}
        ),
        200,
    )


@bp.delete("/conversations")
@requires(WRITE)
def erase_conversations() -> Response:
    """Erase all the caller's conversations, with their messages."""
    deleted = erasure.erase_conversations(current_caller())
    return json_response(dump_conversations_erased({"deleted": deleted}), 200)


@bp.get("/export")
@requires(READ)
def export_conversations() -> Response:
    """All the caller's conversations with all their messages, one JSON object a line."""
    stream = export.export_conversations(current_caller())
    response = Response(stream.lines, mimetype=NDJSON)
    # Called by the server once the response is sent, or abandoned before its first line.
    response.call_on_close(stream.close)
    return response


@bp.get("/conversations/<conversation_id>")
@requires(READ)
def get_conversation(conversation_id: str) -> Response:
    """The conversation and its newest messages, oldest first."""
    query = load_query(conversation_query_schema)
    conversation, newest = messages.get_conversation(
        current_caller(), conversation_id, messages_limit=query["messages_limit"]
    )
    older = write_cursor(newest.next, messages_scope(conversation_id))
    return json_response(
        dump_conversation_detail(
            {"conversation": conversation, "messages": newest.rows, "older_cursor": older}
        ),
        200,
    )


@bp.get("/conversations/<conversation_id>/messages")
@requires(READ)
def list_messages(conversation_id: str) -> Response:
    """Earlier messages of the conversation, a page at a time going back, oldest first."""
    query = load_query(message_page_query_schema)
    scope = messages_scope(conversation_id)
    page = messages.list_messages(
        current_caller(),
        conversation_id,
        limit=query["limit"],
        before=read_cursor(query["cursor"], scope),
    )
    return json_response(
        dump_message_page({"messages": page.rows, "older_cursor": write_cursor(page.next, scope)}),
        200,
    )


@bp.patch("/conversations/<conversation_id>")
@requires(WRITE)
def rename_conversation(conversation_id: str) -> Response:
    """Give the conversation a new title."""
    fields = load(conversation_rename_schema, json_body())
    conversation = service.rename_conversation(current_caller(), conversation_id, **fields)
    return json_response(dump_conversation_response({"conversation": conversation}), 200)


@bp.delete("/conversations/<conversation_id>")
@requires(WRITE)
def delete_conversation(conversation_id: str) -> Response:
    """Delete the conversation and all its messages."""
    service.delete_conversation(current_caller(), conversation_id)
    response = Response(status=204)
    del response.headers["Content-Type"]  # no body, so no type
    return response
