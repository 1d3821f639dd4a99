"""Server-sent events as a model server sends them: lines, whatever the chunks'
boundaries, and the data of each event."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class EventTooLong(ValueError):
    """A line, or an event, longer than any the reader takes: a broken stream."""


def sse_lines(chunks: Iterable[bytes], longest: int) -> Iterator[str]:
    """Lines of an event stream, whatever the chunks' boundaries: split as bytes (a
    newline is never part of a UTF-8 character), then decoded, as SSE always is UTF-8.
    A line not ended within `longest` bytes raises EventTooLong."""
    rest = b""
    for chunk in chunks:
        *lines, rest = (rest + chunk).split(b"\n")
        for line in lines:
            yield line.removesuffix(b"\r").decode("utf-8", "replace")
        if len(rest) > longest:  # so no line is longer than that and one chunk
            raise EventTooLong(f"a line over {longest} bytes")
    if rest:
        yield rest.decode("utf-8", "replace")


def sse_data(lines: Iterable[str], longest: int) -> Iterator[str]:
    """The data of each server-sent event; comments and other fields are of no use here.
    An event whose data runs past `longest` characters raises EventTooLong."""
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
                raise EventTooLong(f"an event over {longest} characters")
            data.append(value)
    if data:  # a last event without its blank line
        yield "\n".join(data)
