"""The model server client: Florent's reply, read as it is generated.

The model server is anything that speaks the OpenAI Chat Completions protocol:
`POST {base}/chat/completions` with `stream: true`, answered as server-sent events of
`chat.completion.chunk` objects ending with `data: [DONE]`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import orjson

from ..config import Settings

log = logging.getLogger(__name__)

# A model server that never stops talking is a broken one, not a long reply.
REPLY_MAX_CHARS = 100_000
# How much of a model server's error body goes into the log.
ERROR_BODY_LOGGED = 300


class ModelServerError(Exception):
    """The model server gave no complete reply: refused, failed, too slow or cut off."""


class ModelServer:
    """An OpenAI-compatible chat completions endpoint, read as a stream.

    One httpx client per process: it pools connections (and TLS sessions) to the model
    server across turns, and is safe to share between threads and greenlets (it is made
    in the worker, after gevent has patched the standard library).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        connect_timeout: float,
        read_timeout: float,
        turn_timeout: float,
        max_tokens: int,
        max_connections: int,
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.turn_timeout = turn_timeout
        self.max_tokens = max_tokens
        headers = {"Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.client = httpx.Client(
            headers=headers,
            # Every reply a worker relays holds a connection to the model server.
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            # `read` bounds each wait for the next bytes (the first token included),
            # not the whole reply: the turn's deadline does that.
            timeout=httpx.Timeout(
                connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
            ),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelServer | None:
        if settings.llm_base_url is None:
            return None
        return cls(
            settings.llm_base_url,
            settings.llm_api_key,
            connect_timeout=settings.llm_connect_timeout,
            read_timeout=settings.llm_read_timeout,
            turn_timeout=settings.llm_turn_timeout,
            max_tokens=settings.llm_max_tokens,
            max_connections=settings.llm_max_connections,
        )

    def close(self) -> None:
        self.client.close()

    def open(self, model: str, messages: list[dict[str, str]]) -> ModelStream:
        """A reply to ask for; iterating it asks, and yields the text as it comes."""
        return ModelStream(self, model, messages)

    def until(self, deadline: float, lines: Iterable[str]) -> Iterator[str]:
        """The lines, checked against the deadline one by one (keep-alive comments too)."""
        for line in lines:
            if time.monotonic() > deadline:
                raise ModelServerError(f"no whole reply in {self.turn_timeout:g} s")
            yield line


class ModelStream:
    """One reply being read from the model server; `cancel` hangs up on it from another
    thread or greenlet (under gevent a read waiting on it ends at once; under threads,
    at its next bytes)."""

    def __init__(self, server: ModelServer, model: str, messages: list[dict[str, str]]):
        self.server, self.model, self.messages = server, model, messages
        self._response: httpx.Response | None = None
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True
        if self._response is not None:
            self._response.close()

    def __iter__(self) -> Iterator[str]:
        """The reply's text, piece by piece as the model generates it.

        Raises ModelServerError unless the reply arrives whole within the turn's
        deadline. Closing the iterator early closes the request to the model server.
        """
        server = self.server
        deadline = time.monotonic() + server.turn_timeout
        body = {
            "model": self.model,
            "messages": self.messages,
            "stream": True,
            "max_tokens": server.max_tokens,
        }
        try:
            with server.client.stream("POST", server.url, json=body) as response:
                self._response = response
                if self._cancelled:
                    return
                if response.status_code != httpx.codes.OK:
                    raise ModelServerError(
                        f"HTTP {response.status_code}: {_head(response, ERROR_BODY_LOGGED)!r}"
                    )
                if response.headers.get("content-type", "").startswith("application/json"):
                    # A server that ignores `stream: true` answers with one whole completion.
                    yield _completion_text(response.read())
                    return
                response.encoding = "utf-8"  # what SSE always is, whatever the header says
                length, finished = 0, False
                for data in sse_data(server.until(deadline, response.iter_lines())):
                    if data == "[DONE]" or self._cancelled:
                        return
                    for text, finish_reason in _chunk_parts(data):
                        finished = finished or finish_reason is not None
                        length += len(text)
                        if length > REPLY_MAX_CHARS:
                            raise ModelServerError(f"reply over {REPLY_MAX_CHARS} characters")
                        if text:
                            yield text
                if not finished:
                    raise ModelServerError("the stream ended before [DONE]")
        except httpx.TimeoutException as error:
            raise ModelServerError(f"timed out ({type(error).__name__})") from error
        except httpx.HTTPError as error:
            raise ModelServerError(f"{type(error).__name__}: {error}") from error


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


def _chunk_parts(data: str) -> Iterator[tuple[str, str | None]]:
    """(text, finish reason) of the first choice of a `chat.completion.chunk`."""
    chunk = _json_object(data)
    if "error" in chunk:
        raise ModelServerError(f"error event: {str(chunk['error'])[:ERROR_BODY_LOGGED]!r}")
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            continue
        delta = choice.get("delta") or {}
        text = delta.get("content") if isinstance(delta, dict) else None
        yield (text if isinstance(text, str) else ""), choice.get("finish_reason")


def _completion_text(raw: bytes) -> str:
    try:
        text = _json_object(raw)["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise ModelServerError("a completion without a message") from None
    if not isinstance(text, str):
        raise ModelServerError("a completion without text")
    return text


def _json_object(raw: str | bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ModelServerError("an event that is not JSON") from None
    if not isinstance(value, dict):
        raise ModelServerError("an event that is not a JSON object")
    return value


def _head(response: httpx.Response, limit: int) -> str:
    """The start of a response body, without reading all of a huge one."""
    head = b""
    for chunk in response.iter_bytes():
        head += chunk
        if len(head) >= limit:
            break
    return head[:limit].decode("utf-8", "replace")
