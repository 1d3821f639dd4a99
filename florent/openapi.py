"""GET /api/openapi.json: the OpenAPI 3.1 document, generated with apispec from the
marshmallow schemas (components, bodies, query strings) and the views (paths).

What no schema says (summaries, statuses, headers) is declared here, once per
operation. The seed's operation and components keep their names and fields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import resolve_schema_cls
from apispec_webframeworks.flask import FlaskPlugin
from flask import Blueprint, Flask, Response, current_app
from marshmallow import Schema
from marshmallow import fields as ma_fields

from .assistant import views as assistant
from .assistant.schemas import MessageUnansweredSchema, ReplyDeltaSchema, TurnSchema
from .conversations import views as conversations
from .conversations.schemas import (
    ConversationCreateSchema,
    ConversationDetailSchema,
    ConversationListQuerySchema,
    ConversationPageSchema,
    ConversationQuerySchema,
    ConversationRenameSchema,
    ConversationResponseSchema,
    Count,
    ErrorResponseSchema,
    MessageCreatedSchema,
    MessageCreateSchema,
    MessagePageQuerySchema,
    MessagePageSchema,
    Timestamp,
)
from .errors import json_response
from .validation import Limit, Text

bp = Blueprint("openapi", __name__)

TAGS = ["subpackage_florent"]
TOKEN_DESCRIPTION = (
    "WorkOS session JWT or an organization API key, sent as `Authorization: Bearer <token>`."
)
AUTHORIZATION = {
    "name": "Authorization",
    "in": "header",
    "description": TOKEN_DESCRIPTION,
    "required": True,
    "schema": {"type": "string"},
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "description": "Makes the create safe to retry: the same key and body within 24 hours "
    "replay the first response (with `Idempotent-Replayed: true`); the same key with "
    "another body is a 422. 1 to 255 printable ASCII characters, quoted or not.",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
CONVERSATION_ID = {
    "name": "conversation_id",
    "in": "path",
    "required": True,
    "description": "The conversation id (24 lowercase hex characters).",
    "schema": {"type": "string"},
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
ERRORS = {
    400: "Bad request — the body or parameters failed validation.",
    401: "Unauthorized — missing or invalid bearer token.",
    404: "Not found — unknown, or owned by another caller.",
    405: "Method not allowed on this path (`method_not_allowed`; `Allow` lists those that are).",
    409: "Conflict.",
    413: "The body is over 1 MiB (`payload_too_large`).",
    422: "`idempotency_key_reused`: the key was used for a different body.",
    429: "Too many requests (`rate_limited`); wait `Retry-After` seconds.",
    502: "The model server gave no reply (`assistant_unavailable`); `message` is the caller's "
    "message, stored all the same.",
    503: "A dependency (PostgreSQL, the identity provider's keys) is unavailable "
    "(`service_unavailable`); retry after `Retry-After` seconds.",
}
TURN_DESCRIPTION = (
    "The caller's message is stored, and Florent's reply with it when a model server is configured."
)
SEND_MESSAGE_DESCRIPTION = (
    "Stores the caller's message, then asks the model for Florent's reply with the newest "
    "messages that fit the history budget, and stores it once complete. With "
    "`Accept: text/event-stream` the reply is streamed as server-sent events; otherwise the "
    "response waits for it. One turn at a time per conversation, and a few replies in progress "
    "at once per caller. The first message of a conversation still titled `New conversation` "
    "(and never renamed) titles it. Without a model server, the message is stored and answered "
    "with `assistant: null`."
)
EVENT_STREAM_DESCRIPTION = (
    "Server-sent events, each `event: <name>` and one line of JSON `data`, in this order: "
    "`message` (`FlorentMessageCreated`: the caller's stored message and the conversation), "
    "then `delta` (`FlorentReplyDelta`) as the reply is generated, then either `done` "
    "(`FlorentMessageCreated`: Florent's stored message and the updated conversation) or "
    "`error` (`ErrorResponse`: `assistant_unavailable` when the model server failed, timed "
    "out or cut its reply short; `not_found` when the conversation was deleted meanwhile; "
    "`service_unavailable`). After an `error`, the caller's message stays stored and no "
    "partial reply is. A client that disconnects abandons the reply."
)


def component_name(schema: Any) -> str | None:
    """Output schemas are components, named by their Meta.title; inputs are inlined."""
    return getattr(getattr(resolve_schema_cls(schema), "Meta", None), "title", None)


def text_lengths(converter: Any, field: ma_fields.Field, **kwargs: Any) -> dict[str, Any]:
    if isinstance(field, Text):
        return {"minLength": field.min_length, "maxLength": field.max_length}
    if isinstance(field, Limit):
        return {"minimum": field.minimum, "maximum": field.maximum}
    return {}


def response(description: str, schema: Any = None, **extra: Any) -> dict[str, Any]:
    content = {"content": {"application/json": {"schema": schema}}} if schema else {}
    return {"description": description, **content, **extra}


@dataclass(frozen=True)
class Operation:
    """What the document says of one view: its success, and every error it can answer
    beside those every API operation can (401, 405, 429, 503), all as ErrorResponse."""

    view: Callable[..., Any]
    method: str
    operation_id: str
    summary: str
    success: tuple[int, dict[str, Any]]
    errors: tuple[int, ...] = ()
    description: str | None = None
    parameters: tuple[dict[str, Any], ...] = ()
    body: type[Schema] | None = None
    query: type[Schema] | None = None
    error_descriptions: dict[int, str] = field(default_factory=dict)

    def spec(self) -> dict[str, Any]:
        status, ok = self.success
        descriptions = {**ERRORS, **self.error_descriptions}
        responses = {str(status): ok}
        for code in sorted((*self.errors, 401, 405, 429, 503)):
            headers = {"headers": RETRY_AFTER} if code in (429, 503) else {}
            responses[str(code)] = response(descriptions[code], ErrorResponseSchema, **headers)
        query = [{"in": "query", "schema": self.query}] if self.query else []
        spec: dict[str, Any] = {
            "operationId": self.operation_id,
            "summary": self.summary,
            **({"description": self.description} if self.description else {}),
            "tags": TAGS,
            "parameters": [AUTHORIZATION, *self.parameters, *query],
            "responses": responses,
        }
        if self.body is not None:
            # The seed's create body is optional (no body means `{}`); every other is required.
            required = self.body is not ConversationCreateSchema
            spec["requestBody"] = {
                "content": {"application/json": {"schema": self.body}},
                **({"required": True} if required else {}),
            }
        return spec


LOCATION = {"Location": {"description": "The conversation's URL.", "schema": {"type": "string"}}}
TURN_CONTENT = {
    "application/json": {"schema": {"oneOf": [TurnSchema, MessageUnansweredSchema]}},
    assistant.EVENT_STREAM: {"schema": {"type": "string"}, "description": EVENT_STREAM_DESCRIPTION},
}
OPERATIONS = (
    Operation(
        conversations.create_conversation,
        "post",
        "post-florent-conversations",
        "Create a Florent conversation",
        (201, response("The created conversation.", ConversationResponseSchema, headers=LOCATION)),
        (400, 413, 422),
        description="Starts a new org-level Florent builder-chat conversation owned by the "
        "caller. Open to every org member.",
        parameters=(IDEMPOTENCY_KEY,),
        body=ConversationCreateSchema,
    ),
    Operation(
        conversations.list_conversations,
        "get",
        "get-florent-conversations",
        "List the caller's Florent conversations",
        (200, response("One page of conversations.", ConversationPageSchema)),
        (400,),
        description="Most recently updated first, keyset-paginated.",
        query=ConversationListQuerySchema,
    ),
    Operation(
        conversations.get_conversation,
        "get",
        "get-florent-conversation",
        "Get a Florent conversation with its newest messages",
        (200, response("The conversation and its newest messages.", ConversationDetailSchema)),
        (400, 404),
        description="At most `messagesLimit` messages, the newest, oldest first; "
        "`olderMessagesCursor` pages back through the rest.",
        parameters=(CONVERSATION_ID,),
        query=ConversationQuerySchema,
    ),
    Operation(
        conversations.list_messages,
        "get",
        "get-florent-conversation-messages",
        "Page back through a Florent conversation's messages",
        (200, response("Messages before the cursor, oldest first.", MessagePageSchema)),
        (400, 404),
        parameters=(CONVERSATION_ID,),
        query=MessagePageQuerySchema,
    ),
    Operation(
        conversations.rename_conversation,
        "patch",
        "patch-florent-conversation",
        "Rename a Florent conversation",
        (200, response("The renamed conversation.", ConversationResponseSchema)),
        (400, 404, 413),
        parameters=(CONVERSATION_ID,),
        body=ConversationRenameSchema,
    ),
    Operation(
        conversations.delete_conversation,
        "delete",
        "delete-florent-conversation",
        "Delete a Florent conversation and its messages",
        (204, response("Deleted.")),
        (404,),
        parameters=(CONVERSATION_ID,),
    ),
    Operation(
        assistant.send_message,
        "post",
        "post-florent-conversation-message",
        "Send a message to Florent, and get its reply",
        (201, response(TURN_DESCRIPTION, content=TURN_CONTENT)),
        (400, 404, 409, 413, 502),
        description=SEND_MESSAGE_DESCRIPTION,
        parameters=(CONVERSATION_ID,),
        body=MessageCreateSchema,
        error_descriptions={
            409: "`reply_in_progress`: Florent is still answering in this conversation; "
            "`conversation_full`: it holds as many messages as it may. Nothing was stored.",
            429: "`rate_limited`, or `too_many_replies`: the caller has as many replies in "
            "progress as they may. Nothing was stored; retry after `Retry-After` seconds.",
        },
    ),
)


def build_document(app: Flask) -> dict[str, Any]:
    marshmallow = MarshmallowPlugin(schema_name_resolver=component_name)
    spec = APISpec(
        title="RakerOne API",
        version="1.0.0",
        openapi_version="3.1.0",
        plugins=[FlaskPlugin(), marshmallow],
        servers=[
            {"url": "/api", "description": "Current origin"},
            {"url": "https://app.raker.one/api", "description": "Production"},
        ],
        security=[{"bearerAuth": []}],
    )
    marshmallow.map_to_openapi_type(Text, "string", None)
    marshmallow.map_to_openapi_type(Timestamp, "string", None)
    marshmallow.map_to_openapi_type(Limit, "integer", None)
    marshmallow.map_to_openapi_type(Count, "number", "double")
    marshmallow.converter.add_attribute_function(text_lengths)
    spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": TOKEN_DESCRIPTION}
    )
    for schema in (ErrorResponseSchema, MessageCreatedSchema, ReplyDeltaSchema):
        spec.components.schema(component_name(schema), schema=schema)
    for operation in OPERATIONS:
        spec.path(view=operation.view, app=app, operations={operation.method: operation.spec()})
    document = spec.to_dict()
    # Paths are relative to the server URL (/api), as in the seed.
    document["paths"] = {path.removeprefix("/api"): ops for path, ops in document["paths"].items()}
    return document


@bp.get("/api/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI 3.1 document (public: it describes, it does not reveal)."""
    document = current_app.extensions.get("florent.openapi")
    if document is None:
        document = current_app.extensions["florent.openapi"] = build_document(current_app)
    return json_response(document, 200)
