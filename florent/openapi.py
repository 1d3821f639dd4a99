"""GET /api/openapi.json: the OpenAPI 3.1 document, generated with apispec from the
marshmallow schemas (components, bodies, query strings) and the views (paths).

What no schema says (summaries, statuses, headers) each domain declares beside its views,
an `Operation` per view (conversations/docs.py, assistant/docs.py). The seed's operation
and components keep their names and fields.
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

from .auth import ACT_AS_USER
from .conversations.schemas import Count, ErrorResponseSchema, Timestamp
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
CONVERSATION_ID = {
    "name": "conversation_id",
    "in": "path",
    "required": True,
    "description": "The conversation id (24 lowercase hex characters).",
    "schema": {"type": "string"},
}
ACT_AS_USER_HEADER = {
    "name": ACT_AS_USER,
    "in": "header",
    "required": False,
    "description": "With an API key that may impersonate: act as this person of the key's "
    "organization (their conversations, owned by them); the audit trail records the request. "
    "From any other caller: 403 `impersonation_not_allowed`. Empty, over 255 characters, or "
    "not a user id (control characters, spaces): 400 `invalid_header`.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
ERRORS = {
    # The seed's words; `invalid_header` (X-Act-As-User) is told with the header.
    400: "Bad request — the body or parameters failed validation.",
    401: "Unauthorized — missing or invalid bearer token.",
    403: "`forbidden`: the API key lacks this operation's permission (`x-permission`); "
    "`impersonation_not_allowed`: X-Act-As-User from a session token or a key that may not "
    "impersonate.",
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


def component_name(schema: Any) -> str | None:
    """Output schemas are components, named by their Meta.title; inputs are inlined."""
    return getattr(getattr(resolve_schema_cls(schema), "Meta", None), "title", None)


def text_lengths(converter: Any, field: ma_fields.Field, **kwargs: Any) -> dict[str, Any]:
    if isinstance(field, Text):
        return {"minLength": field.min_length, "maxLength": field.max_length}
    if isinstance(field, Limit):
        return {"minimum": field.minimum, "maximum": field.maximum}
    return {}


def null_constants(converter: Any, field: ma_fields.Field, **kwargs: Any) -> dict[str, Any]:
    # A field that is always null: apispec knows no type for a Constant, and its nullable
    # rule would add "null" to any type given, so the type is said here, after that rule.
    if isinstance(field, ma_fields.Constant) and field.constant is None:
        return {"type": "null"}
    return {}


def response(description: str, schema: Any = None, **extra: Any) -> dict[str, Any]:
    content = {"content": {"application/json": {"schema": schema}}} if schema else {}
    return {"description": description, **content, **extra}


@dataclass(frozen=True)
class Operation:
    """What the document says of one view: its success, and every error it can answer
    beside those every API operation can (400, 401, 403, 405, 429, 503), as ErrorResponse
    unless `error_schemas` names the schema of an error that says more. The permission it
    needs is the view's own (auth.requires)."""

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
    error_schemas: dict[int, type[Schema]] = field(default_factory=dict)
    optional_body: bool = False

    def spec(self) -> dict[str, Any]:
        status, ok = self.success
        descriptions = {**ERRORS, **self.error_descriptions}
        responses = {str(status): ok}
        for code in sorted({*self.errors, 400, 401, 403, 405, 429, 503}):
            headers = {"headers": RETRY_AFTER} if code in (429, 503) else {}
            schema = self.error_schemas.get(code, ErrorResponseSchema)
            responses[str(code)] = response(descriptions[code], schema, **headers)
        query = [{"in": "query", "schema": self.query}] if self.query else []
        spec: dict[str, Any] = {
            "operationId": self.operation_id,
            "summary": self.summary,
            **({"description": self.description} if self.description else {}),
            "tags": TAGS,
            "x-permission": self.view.permission,
            "parameters": [AUTHORIZATION, ACT_AS_USER_HEADER, *self.parameters, *query],
            "responses": responses,
        }
        if self.body is not None:
            # The seed's create body is optional (no body means `{}`); every other is required.
            required = not self.optional_body
            spec["requestBody"] = {
                "content": {"application/json": {"schema": self.body}},
                **({"required": True} if required else {}),
            }
        return spec


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
    marshmallow.converter.add_attribute_function(null_constants)
    spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": TOKEN_DESCRIPTION}
    )
    # Imported here: the domains' docs import this module's Operation.
    from .assistant.docs import COMPONENTS as ASSISTANT_COMPONENTS
    from .assistant.docs import OPERATIONS as ASSISTANT
    from .conversations.docs import OPERATIONS as CONVERSATIONS

    for schema in (ErrorResponseSchema, *ASSISTANT_COMPONENTS):
        spec.components.schema(component_name(schema), schema=schema)
    for operation in (*CONVERSATIONS, *ASSISTANT):
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
