"""What a model server's bytes say: the lines and events of a server-sent event stream,
whatever the chunks' boundaries; the text of each `chat.completion.chunk`; the text of a
completion sent whole. Anything else raises BadStream."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

ERROR_LOGGED = 300  # how much of a model server's error (body or event) goes into the log


class BadStream(ValueError):
    """What the model server sent is not a reply: not JSON, not a chunk, an error event,
    or a line or an event longer than any the reader takes."""


def sse_lines(chunks: Iterable[bytes], longest: int) -> Iterator[str]:
    """Lines of an event stream, whatever the chunks' boundaries: split as bytes (a
    newline is never part of a UTF-8 character), then decoded, as SSE always is UTF-8.
    A line not ended within `longest` bytes raises BadStream."""
    rest = b""
    for chunk in chunks:
        *lines, rest = (rest + chunk).split(b"\n")
        for line in lines:
            yield line.removesuffix(b"\r").decode("utf-8", "replace")
        if len(rest) > longest:  # so no line is longer than that and one chunk
            raise BadStream(f"a line over {longest} bytes")
    if rest:
        yield rest.decode("utf-8", "replace")


def sse_data(lines: Iterable[str], longest: int) -> Iterator[str]:
    """The data of each server-sent event; comments and other fields are of no use here.
    An event whose data runs past `longest` characters raises BadStream."""
    data: list[str] = []
    length = 0
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data, length = [], 0
            continue
        field, _, value = line.partition(":")
        if field == "data":
            value = value[1:] if value.startswith(" ") else value
            length += len(value) + 1
            if length > longest:
                raise BadStream(f"an event over {longest} characters")
            data.append(value)
    if data:  # a last event without its blank line
        yield "\n".join(data)


def chunk_parts(data: str) -> Iterator[tuple[str, str | None]]:
    """(text, finish reason) of the first choice of a `chat.completion.chunk`."""
    chunk = json_object(data)
    if "error" in chunk:
        raise BadStream(f"error event: {str(chunk['error'])[:ERROR_LOGGED]!r}")
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta") or {}
        text = delta.get("content") if isinstance(delta, dict) else None
        yield (storable(text) if isinstance(text, str) else ""), choice.get("finish_reason")


def completion_text(raw: bytes) -> str:
    try:
        text = json_object(raw)["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise BadStream("a completion without a message") from None
    if not isinstance(text, str):
        raise BadStream("a completion without text")
    return storable(text)


def storable(text: str) -> str:
    """The model's text as PostgreSQL can store it: a text value cannot hold U+0000, which
    JSON can, so it becomes U+FFFD (the replacement character) in the relay and the store
    alike."""
    return text.replace("\x00", "\ufffd")


def json_object(raw: str | bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadStream("an event that is not JSON") from None
    if not isinstance(value, dict):
        raise BadStream("an event that is not a JSON object")
    return value
