"""GET /api/openapi.json: the OpenAPI 3.1 document of the API.

The create operation and the `FlorentConversation`, `FlorentConversationResponse`
and `ErrorResponse` components are the seed page's, unchanged; the rest follows
the same conventions. Tests validate real responses against this document.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response

from .errors import json_response

bp = Blueprint("openapi", __name__)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("ErrorResponse"), description)


BAD_REQUEST = _error("Bad request — the body or parameters failed validation.")
UNAUTHORIZED = _error("Unauthorized — missing or invalid bearer token.")
NOT_FOUND = _error("Not found — unknown, or owned by another caller.")
AUTHORIZATION = {
    "name": "Authorization",
    "in": "header",
    "description": "WorkOS session JWT or an organization API key, sent as "
    "`Authorization: Bearer <token>`.",
    "required": True,
    "schema": {"type": "string"},
}
CONVERSATION_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The conversation id (24 lowercase hex characters).",
    "schema": {"type": "string"},
}
TIMESTAMP = {"type": "string", "format": "date-time"}
EVENT_STREAM = "text/event-stream"
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


def _text(max_length: int, min_length: int = 0) -> dict[str, Any]:
    return {"type": "string", "minLength": min_length, "maxLength": max_length}


def _required_text_body(name: str, max_length: int) -> dict[str, Any]:
    """A JSON body with one required string field of 1 to `max_length` code points."""
    schema = {
        "type": "object",
        "properties": {name: _text(max_length, 1)},
        "required": [name],
    }
    return {"required": True, "content": {"application/json": {"schema": schema}}}


COMPONENTS: dict[str, Any] = {
    "schemas": {
        "FlorentConversation": {
            "type": "object",
            "properties": {
                "_id": {"type": "string"},
                "userId": {"type": "string"},
                "title": {"type": "string"},
                "model": {"type": "string"},
                "messageCount": {"type": "number", "format": "double"},
                "lastMessageAt": {"type": ["string", "null"]},
                "createdAt": {"type": "string"},
                "updatedAt": {"type": "string"},
            },
            "required": [
                "_id",
                "userId",
                "title",
                "model",
                "messageCount",
                "lastMessageAt",
                "createdAt",
                "updatedAt",
            ],
            "title": "FlorentConversation",
        },
        "FlorentConversationResponse": {
            "type": "object",
            "properties": {"conversation": _ref("FlorentConversation")},
            "required": ["conversation"],
            "title": "FlorentConversationResponse",
        },
        "FlorentMessage": {
            "type": "object",
            "properties": {
                "_id": {"type": "string"},
                "conversationId": {"type": "string"},
                "role": {"type": "string", "enum": ["user", "assistant"]},
                "content": {"type": "string"},
                "createdAt": TIMESTAMP,
            },
            "required": ["_id", "conversationId", "role", "content", "createdAt"],
            "additionalProperties": False,
            "title": "FlorentMessage",
        },
        "FlorentConversationList": {
            "type": "object",
            "properties": {
                "conversations": {"type": "array", "items": _ref("FlorentConversation")},
                "nextCursor": {"type": ["string", "null"]},
            },
            "required": ["conversations", "nextCursor"],
            "additionalProperties": False,
            "title": "FlorentConversationList",
        },
        "FlorentConversationDetail": {
            "type": "object",
            "properties": {
                "conversation": _ref("FlorentConversation"),
                "messages": {"type": "array", "items": _ref("FlorentMessage")},
            },
            "required": ["conversation", "messages"],
            "additionalProperties": False,
            "title": "FlorentConversationDetail",
        },
        "FlorentMessageCreated": {
            "type": "object",
            "properties": {
                "message": _ref("FlorentMessage"),
                "conversation": _ref("FlorentConversation"),
            },
            "required": ["message", "conversation"],
            "additionalProperties": False,
            "title": "FlorentMessageCreated",
        },
        "FlorentMessageUnanswered": {
            "type": "object",
            "description": "The caller's message, stored without a reply: no model server is "
            "configured, so Florent does not answer (`assistant` is always null).",
            "properties": {
                "message": _ref("FlorentMessage"),
                "conversation": _ref("FlorentConversation"),
                "assistant": {"type": "null"},
            },
            "required": ["message", "conversation", "assistant"],
            "additionalProperties": False,
            "title": "FlorentMessageUnanswered",
        },
        "FlorentTurn": {
            "type": "object",
            "description": "A chat turn: the caller's message and Florent's reply, both "
            "stored, and the conversation after them.",
            "properties": {
                "messages": {
                    "type": "array",
                    "items": _ref("FlorentMessage"),
                    "minItems": 2,
                    "maxItems": 2,
                    "description": "`[user message, assistant message]`.",
                },
                "conversation": _ref("FlorentConversation"),
            },
            "required": ["messages", "conversation"],
            "additionalProperties": False,
            "title": "FlorentTurn",
        },
        "FlorentReplyDelta": {
            "type": "object",
            "description": "The data of a `delta` event: the next piece of Florent's reply.",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
            "additionalProperties": False,
            "title": "FlorentReplyDelta",
        },
        "ErrorResponse": {
            "type": "object",
            "properties": {
                "error": {
                    "type": "string",
                    "description": "Machine-readable error code "
                    "(e.g. `invalid_body`, `not_found`).",
                },
                "issues": {
                    "type": "array",
                    "items": {"description": "Any type"},
                    "description": "Schema-validation issues, present when `error` is "
                    "`invalid_body`.",
                },
            },
            "required": ["error"],
            "description": "Standard API error response.",
            "title": "ErrorResponse",
        },
    },
    "securitySchemes": {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "WorkOS session JWT or an organization API key, sent as "
            "`Authorization: Bearer <token>`.",
        }
    },
}

PATHS: dict[str, Any] = {
    "/florent/conversations": {
        "post": {
            "operationId": "post-florent-conversations",
            "summary": "Create a Florent conversation",
            "description": "Starts a new org-level Florent builder-chat conversation owned by "
            "the caller. Open to every org member.",
            "tags": ["subpackage_florent"],
            "parameters": [AUTHORIZATION],
            "responses": {
                "201": _json(_ref("FlorentConversationResponse"), "The created conversation."),
                "400": BAD_REQUEST,
                "401": UNAUTHORIZED,
            },
            "requestBody": {
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "title": {"type": "string"},
                                "userDisplay": {"type": "string"},
                                "timezone": {"type": "string"},
                            },
                        }
                    }
                }
            },
        },
        "get": {
            "operationId": "get-florent-conversations",
            "summary": "List the caller's Florent conversations",
            "description": "Most recently updated first, keyset-paginated.",
            "tags": ["subpackage_florent"],
            "parameters": [
                AUTHORIZATION,
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 30},
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "description": "The `nextCursor` of the previous page.",
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": _json(_ref("FlorentConversationList"), "One page of conversations."),
                "400": BAD_REQUEST,
                "401": UNAUTHORIZED,
            },
        },
    },
    "/florent/conversations/{id}": {
        "get": {
            "operationId": "get-florent-conversation",
            "summary": "Get a Florent conversation with its messages",
            "tags": ["subpackage_florent"],
            "parameters": [AUTHORIZATION, CONVERSATION_ID],
            "responses": {
                "200": _json(_ref("FlorentConversationDetail"), "The conversation and messages."),
                "401": UNAUTHORIZED,
                "404": NOT_FOUND,
            },
        },
        "patch": {
            "operationId": "patch-florent-conversation",
            "summary": "Rename a Florent conversation",
            "tags": ["subpackage_florent"],
            "parameters": [AUTHORIZATION, CONVERSATION_ID],
            "requestBody": _required_text_body("title", 120),
            "responses": {
                "200": _json(_ref("FlorentConversationResponse"), "The renamed conversation."),
                "400": BAD_REQUEST,
                "401": UNAUTHORIZED,
                "404": NOT_FOUND,
            },
        },
        "delete": {
            "operationId": "delete-florent-conversation",
            "summary": "Delete a Florent conversation and its messages",
            "tags": ["subpackage_florent"],
            "parameters": [AUTHORIZATION, CONVERSATION_ID],
            "responses": {
                "204": {"description": "Deleted."},
                "401": UNAUTHORIZED,
                "404": NOT_FOUND,
            },
        },
    },
    "/florent/conversations/{id}/messages": {
        "post": {
            "operationId": "post-florent-conversation-message",
            "summary": "Send a message to Florent, and get its reply",
            "description": "Stores the caller's message, then asks the model for Florent's "
            "reply with the conversation so far and stores it once complete. "
            "With `Accept: text/event-stream` the reply is streamed as server-sent events; "
            "otherwise the response waits for it. One turn at a time per conversation. "
            "The first message of a conversation still titled `New conversation` (and never "
            "renamed) titles it. Without a configured model server, the message is stored "
            "and answered with `assistant: null` (as JSON, whatever `Accept` says), and no "
            "title is derived.",
            "tags": ["subpackage_florent"],
            "parameters": [AUTHORIZATION, CONVERSATION_ID],
            "requestBody": _required_text_body("content", 32_000),
            "responses": {
                "201": {
                    "description": "The caller's message is stored, and Florent's reply with "
                    "it when a model server is configured.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [_ref("FlorentTurn"), _ref("FlorentMessageUnanswered")]
                            }
                        },
                        EVENT_STREAM: {
                            "schema": {"type": "string"},
                            "description": EVENT_STREAM_DESCRIPTION,
                        },
                    },
                },
                "400": BAD_REQUEST,
                "401": UNAUTHORIZED,
                "404": NOT_FOUND,
                "409": _error(
                    "Reply in progress — Florent is still answering a previous message in "
                    "this conversation (`reply_in_progress`); nothing was stored."
                ),
                "502": _error(
                    "Assistant unavailable — the model server failed, timed out or cut its "
                    "reply short (`assistant_unavailable`). The caller's message stays stored; "
                    "no partial reply is."
                ),
            },
        }
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "RakerOne API", "version": "1.0.0"},
    "servers": [
        {"url": "/api", "description": "Current origin"},
        {"url": "https://app.raker.one/api", "description": "Production"},
    ],
    "paths": PATHS,
    "components": COMPONENTS,
    "security": [{"bearerAuth": []}],
}


@bp.get("/api/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI 3.1 document (public: it describes, it does not reveal)."""
    return json_response(DOCUMENT, 200)
