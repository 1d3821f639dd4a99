"""Marshmallow schemas: the contract of every input and output of the API."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import Any

import orjson
from marshmallow import EXCLUDE, Schema, ValidationError, fields

from .errors import ApiError, issue

# Control characters (Unicode Cc) other than tab and newline, and lone surrogates.
# Surrogates survive JSON parsing in Python but cannot be encoded for PostgreSQL,
# and NUL cannot be stored in a text column at all.
CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
SURROGATE = re.compile(r"[\ud800-\udfff]")


@dataclass(frozen=True)
class Issue:
    """A validation error that carries its machine-readable code.

    Marshmallow passes non-string error messages through untouched, so each
    error keeps its code all the way to the response.
    """

    code: str
    message: str


class Text(fields.String):
    """A string of `min` to `max` Unicode code points, free of control characters."""

    default_error_messages = {  # noqa: RUF012 (marshmallow merges this class attribute)
        "required": Issue("required", "This field is required."),
        "null": Issue("invalid_type", "Expected a string, got null."),
        "invalid": Issue("invalid_type", "Expected a string."),
        "invalid_utf8": Issue("invalid_string", "Not valid UTF-8."),
    }

    def __init__(self, *, min_length: int = 0, max_length: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.min_length = min_length
        self.max_length = max_length

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        if SURROGATE.search(value):
            raise ValidationError(Issue("invalid_string", "Contains a lone surrogate."))
        if CONTROL_CHARACTER.search(value):
            raise ValidationError(
                Issue(
                    "invalid_character",
                    "Contains a control character (only tab and newline are allowed).",
                )
            )
        if len(value) < self.min_length:
            raise ValidationError(
                Issue("too_short", f"Must be at least {self.min_length} character(s) long.")
            )
        if len(value) > self.max_length:
            raise ValidationError(
                Issue("too_long", f"Must be at most {self.max_length} characters long.")
            )
        return value


class Timestamp(fields.Field):
    """ISO 8601 in UTC with millisecond precision and a Z suffix."""

    def _serialize(self, value: datetime | None, attr: str | None, obj: Any, **kwargs: Any):
        if value is None:
            return None
        return format_timestamp(value)


_WITH_MICROSECONDS = len(b'"2026-11-27T09:34:01.590000Z"')


def format_timestamp(value: datetime) -> str:
    """'2026-11-27T09:34:01.590Z', as `isoformat(timespec="milliseconds")` would give.

    A page of conversations has sixty of these. orjson writes RFC 3339 three times
    faster than isoformat(), but with microseconds, or no fraction at all when they
    are zero ('"2026-11-27T09:34:01.590000Z"', '"2026-11-27T09:34:01Z"'): cut it to
    milliseconds. A test compares the two over many values.
    """
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    text = orjson.dumps(value, option=orjson.OPT_UTC_Z)
    if len(text) == _WITH_MICROSECONDS:
        return text[1:24].decode() + "Z"
    return text[1:20].decode() + ".000Z"


class InputSchema(Schema):
    class Meta:
        unknown = EXCLUDE


class ConversationCreateSchema(InputSchema):
    title = Text(min_length=1, max_length=120)
    user_display = Text(max_length=200, data_key="userDisplay")
    timezone = Text(max_length=100)


class ConversationSchema(Schema):
    _id = fields.String(attribute="id")
    userId = fields.String(attribute="user_id")
    title = fields.String()
    model = fields.String()
    messageCount = fields.Integer(attribute="message_count")
    lastMessageAt = Timestamp(attribute="last_message_at")
    createdAt = Timestamp(attribute="created_at")
    updatedAt = Timestamp(attribute="updated_at")


class ConversationResponseSchema(Schema):
    conversation = fields.Nested(ConversationSchema)


def load(schema: Schema, data: Any, *, error_code: str = "invalid_body") -> dict[str, Any]:
    """Validate `data` with `schema`, or raise the API's 400 with one issue per problem."""
    if not isinstance(data, dict):
        raise ApiError(400, error_code, [issue([], "invalid_type", "Expected a JSON object.")])
    try:
        return schema.load(data)
    except ValidationError as error:
        raise ApiError(400, error_code, list(_issues(error.messages, []))) from None


def _issues(messages: Any, path: list[str | int]):
    if isinstance(messages, dict):
        for key, value in messages.items():
            yield from _issues(value, path if key == "_schema" else [*path, key])
    elif isinstance(messages, list):
        for message in messages:
            yield from _issues(message, path)
    elif isinstance(messages, Issue):
        yield issue(path, messages.code, messages.message)
    else:
        yield issue(path, "invalid", str(messages))


class Limit(fields.Integer):
    """A page size from the query string."""

    default_error_messages = {  # noqa: RUF012
        "invalid": Issue("invalid_type", "Expected an integer."),
        "null": Issue("invalid_type", "Expected an integer."),
    }

    def __init__(self, *, minimum: int, maximum: int, **kwargs: Any):
        super().__init__(strict=False, **kwargs)
        self.minimum, self.maximum = minimum, maximum

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if not isinstance(value, str) or not re.fullmatch(r"[+-]?[0-9]{1,9}", value.strip()):
            raise self.make_error("invalid")
        number = int(value)
        if not self.minimum <= number <= self.maximum:
            raise ValidationError(
                Issue("out_of_range", f"Must be between {self.minimum} and {self.maximum}.")
            )
        return number


class ConversationListQuerySchema(InputSchema):
    limit = Limit(minimum=1, maximum=100, load_default=30)
    cursor = Text(min_length=1, max_length=200, load_default=None)


class ConversationRenameSchema(InputSchema):
    title = Text(min_length=1, max_length=120, required=True)


class MessageCreateSchema(InputSchema):
    content = Text(min_length=1, max_length=32_000, required=True)


class MessageSchema(Schema):
    _id = fields.String(attribute="id")
    conversationId = fields.String(attribute="conversation_id")
    role = fields.String()
    content = fields.String()
    createdAt = Timestamp(attribute="created_at")


class ConversationPageSchema(Schema):
    conversations = fields.List(fields.Nested(ConversationSchema))
    nextCursor = fields.String(attribute="next_cursor", allow_none=True)


class ConversationDetailSchema(Schema):
    conversation = fields.Nested(ConversationSchema)
    messages = fields.List(fields.Nested(MessageSchema))


class MessageCreatedSchema(Schema):
    message = fields.Nested(MessageSchema)
    conversation = fields.Nested(ConversationSchema)


class MessageUnansweredSchema(MessageCreatedSchema):
    """The person's message, stored with no reply: no model server is configured."""

    assistant = fields.Nested(MessageSchema, allow_none=True)  # always null


class TurnSchema(Schema):
    """A chat turn: the person's message and Florent's reply, and the conversation after."""

    messages = fields.List(fields.Nested(MessageSchema))
    conversation = fields.Nested(ConversationSchema)


def compile_dump(schema: Schema) -> Callable[[Any], dict[str, Any]]:
    """An equivalent of `schema.dump` for the API's output schemas, planned once.

    The schema stays the contract (field names, attributes, formats); this walks its
    fields ahead of time instead of on every object, which is most of the cost of
    dumping a page of rows. A test checks the two agree; a field type this does not
    know is refused here, at start-up, rather than dumped wrongly.
    """
    plan: list[tuple[str, str, Callable[[Any], Any] | None]] = []
    for name, field in schema.dump_fields.items():
        key, attribute = field.data_key or name, field.attribute or name
        if isinstance(field, Timestamp):
            convert: Callable[[Any], Any] | None = format_timestamp
        elif isinstance(field, fields.Nested):
            convert = compile_dump(field.schema)
        elif isinstance(field, fields.List) and isinstance(field.inner, fields.Nested):
            convert = _each(compile_dump(field.inner.schema))
        elif type(field) in (fields.String, fields.Integer):
            convert = None  # values come from typed columns: str and int already
        else:
            raise TypeError(f"compile_dump cannot plan {type(field).__name__} ({name})")
        plan.append((key, attribute, convert))

    keys = tuple(key for key, _, _ in plan)
    attributes = [attribute for _, attribute, _ in plan]
    # Read every field in one call: a dict by key, anything else by attribute.
    by_key, by_attribute = itemgetter(*attributes), attrgetter(*attributes)
    one_field = len(plan) == 1  # then the getters return the value, not a tuple
    conversions = tuple((key, convert) for key, _, convert in plan if convert is not None)

    def dump(obj: Any) -> dict[str, Any]:
        values = by_key(obj) if isinstance(obj, dict) else by_attribute(obj)
        out = dict(zip(keys, (values,) if one_field else values, strict=True))
        for key, convert in conversions:
            if (value := out[key]) is not None:
                out[key] = convert(value)
        return out

    return dump


def _each(dump: Callable[[Any], dict[str, Any]]) -> Callable[[Any], list[dict[str, Any]]]:
    return lambda values: [dump(value) for value in values]
