"""Server-sent events as a model server sends them: lines, whatever the chunks'
boundaries, and the data of each event."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def sse_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Lines of an event stream, whatever the chunks' boundaries: split as bytes (a
    newline is never part of a UTF-8 character), then decoded, as SSE always is UTF-8."""
    rest = b""
    for chunk in chunks:
        *lines, rest = (rest + chunk).split(b"\n")
        for line in lines:
            yield line.removesuffix(b"\r").decode("utf-8", "replace")
    if rest:
        yield rest.decode("utf-8", "replace")


def sse_data(lines: Iterable[str]) -> Iterator[str]:
    """The data of each server-sent event; comments and other fields are of no use here."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:  # a last event without its blank line
        yield "\n".join(data)
