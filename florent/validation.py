"""Reading what clients send: JSON bodies, query strings and headers, validated by
marshmallow into the API's one 400 shape, each issue with a machine-readable code."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from flask import request
from marshmallow import EXCLUDE, Schema, ValidationError, fields
from werkzeug.exceptions import RequestEntityTooLarge

from .errors import ApiError, issue

# Control characters (Unicode Cc) other than tab and newline, and lone surrogates.
# Surrogates survive JSON parsing in Python but cannot be encoded for PostgreSQL,
# and NUL cannot be stored in a text column at all.
CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
SURROGATE = re.compile(r"[\ud800-\udfff]")
INTEGER = re.compile(r"[+-]?[0-9]{1,9}")


@dataclass(frozen=True)
class Issue:
    """A validation error that carries its machine-readable code.

    Marshmallow passes non-string error messages through untouched, so each error
    keeps its code all the way to the response.
    """

    code: str
    message: str


class Text(fields.String):
    """A string of `min_length` to `max_length` code points, free of control characters."""

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


class Limit(fields.Integer):
    """A page size from the query string, `minimum` to `maximum`."""

    default_error_messages = {  # noqa: RUF012
        "invalid": Issue("invalid_type", "Expected an integer."),
        "null": Issue("invalid_type", "Expected an integer."),
    }

    def __init__(self, *, minimum: int, maximum: int, **kwargs: Any):
        super().__init__(strict=False, **kwargs)
        self.minimum, self.maximum = minimum, maximum

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if not isinstance(value, str) or not INTEGER.fullmatch(value.strip()):
            raise self.make_error("invalid")
        number = int(value)
        if not self.minimum <= number <= self.maximum:
            raise ValidationError(
                Issue("out_of_range", f"Must be between {self.minimum} and {self.maximum}.")
            )
        return number


class InputSchema(Schema):
    """What a client sends: unknown keys are ignored, as the contract says."""

    class Meta:
        unknown = EXCLUDE


def load(schema: Schema, data: Any, *, error_code: str = "invalid_body") -> dict[str, Any]:
    """Validate `data` with `schema`, or raise the API's 400 with one issue per problem."""
    if not isinstance(data, Mapping):
        raise ApiError(400, error_code, [issue([], "invalid_type", "Expected a JSON object.")])
    try:
        return schema.load(data)
    except ValidationError as error:
        raise ApiError(400, error_code, list(_issues(error.messages, []))) from None


def load_query(schema: Schema) -> dict[str, Any]:
    return load(schema, request.args.to_dict(), error_code="invalid_query")


def json_body() -> Any:
    """The request body as JSON, whatever Content-Type says; an empty body is `{}`.

    `curl -d` sends form-encoded bodies by default, so the header is not trusted to
    tell us anything.
    """
    raw = request.get_data(cache=False)
    if _cut_at_the_limit(raw):
        raise RequestEntityTooLarge()
    if not raw.strip():
        return {}
    return parse_json(raw)


def _cut_at_the_limit(raw: bytes) -> bool:
    """A body of no stated length (chunked) is read up to the limit and no further, and
    werkzeug does not say whether more followed: the server's stream does. (Around
    werkzeug, by one byte of `wsgi.input`; tested on werkzeug's server and gunicorn.)"""
    limit = request.max_content_length
    if request.content_length is not None or limit is None or len(raw) < limit:
        return False
    return bool(request.environ["wsgi.input"].read(1))


def parse_json(raw: bytes | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        # Also covers invalid UTF-8, lone surrogates and nesting deeper than 1024.
        raise ApiError(
            400, "invalid_body", [issue([], "invalid_json", "The body is not valid JSON.")]
        ) from None


def _issues(messages: Any, path: list[str | int]) -> Iterator[dict[str, Any]]:
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
