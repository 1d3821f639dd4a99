"""The model server client: Florent's reply, read as it is generated.

The model server is anything that speaks the OpenAI Chat Completions protocol:
`POST {base}/chat/completions` with `stream: true`, answered as server-sent events of
`chat.completion.chunk` objects ending with `data: [DONE]`.

Read with urllib3, which spends far less CPU on each piece of text than httpx did when
a gevent worker relays hundreds of replies at once (bench/README.md).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterable, Iterator
from http.client import RemoteDisconnected

import orjson
import urllib3
from urllib3.exceptions import HTTPError, ProtocolError, TimeoutError

from ..config import Settings
from .wire import ERROR_LOGGED, BadStream, chunk_parts, completion_text, sse_data, sse_lines

log = logging.getLogger(__name__)

# A model server that never stops talking is a broken one, not a long reply.
REPLY_MAX_CHARS = 100_000
# A completion sent whole is read up to this: the longest reply, every character escaped.
COMPLETION_MAX_BYTES = 12 * REPLY_MAX_CHARS
# How long the body's end may take to follow [DONE]: a server that lingers longer is hung
# up on, which costs it its connection and the reply nothing.
BODY_END_SECONDS = 1.0
READ_SIZE = 64 * 1024


class ModelServerError(Exception):
    """The model server gave no complete reply: refused, failed, too slow or cut off."""


class ModelServer:
    """An OpenAI-compatible chat completions endpoint, read as a stream. One connection
    pool per process (made in the worker, after gevent has patched the standard library),
    shared by the threads or greenlets that relay replies, a connection for each."""

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
        headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.pool = urllib3.PoolManager(
            num_pools=1,
            maxsize=max_connections,
            headers=headers,
            retries=False,  # a reply once begun is never asked for again (but see _ask)
            # `read` bounds the wait for the response's head; the body is watched by
            # ModelStream.hang_up_if_silent. Neither bounds the whole reply: the turn's
            # deadline does that.
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        )
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout

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
        self.pool.clear()

    def open(self, model: str, messages: list[dict[str, str]]) -> ModelStream:
        """A reply to ask for; iterating it asks, and yields the text as it comes."""
        return ModelStream(self, model, messages)


class ModelStream:
    """One reply being read from the model server; `cancel` hangs up on it from another
    thread or greenlet, and a read waiting on it ends at once."""

    def __init__(self, server: ModelServer, model: str, messages: list[dict[str, str]]):
        self.server, self.model, self.messages = server, model, messages
        self._response: urllib3.BaseHTTPResponse | None = None
        self._cancelled = False
        # When the model last sent bytes (its head, then each chunk); hung up on once it
        # is silent for the read timeout.
        self._heard = time.monotonic()
        self._silent = False
        self._whole = False  # [DONE] came: a silence after it costs nothing of the reply

    def cancel(self) -> None:
        self._cancelled = True
        response = self._response
        if response is not None:
            # urllib3's way to interrupt a read from elsewhere; a response already
            # released or closed has nothing to interrupt.
            with contextlib.suppress(ValueError, RuntimeError, OSError):
                response.shutdown()

    def hang_up_if_silent(self) -> float:
        """Hang up once the model has sent nothing for the read timeout; returns the
        seconds left until it would (infinity once it has). The reply's timer calls it:
        under gevent, a socket timeout would cost a timer on every read of the body."""
        if self._silent:
            return math.inf
        if self._response is None:  # the head is urllib3's to time
            return self.server.read_timeout
        left = self._heard + self.server.read_timeout - time.monotonic()
        if left <= 0:
            self._silent = True
            self.cancel()
        return left

    def __iter__(self) -> Iterator[str]:
        """The reply's text, piece by piece as the model generates it.

        Raises ModelServerError unless the reply arrives whole within the turn's
        deadline, with no silence longer than the read timeout. Closing the iterator
        early closes the request to the model server.
        """
        try:
            yield from self._reply()
        except ModelServerError as error:
            if self._silent:
                raise self._silence() from error
            raise
        if self._silent and not self._whole:
            raise self._silence()

    def _ask(self, body: bytes) -> urllib3.BaseHTTPResponse:
        """The model server's answer, its head read. Asked again, once, if the connection
        closed at once without a byte of answer: a pooled keep-alive connection the server
        had just dropped, not a request it took (which fails later, or with a reset)."""
        server, asked = self.server, time.monotonic()
        try:
            return server.pool.request("POST", server.url, body=body, preload_content=False)
        except ProtocolError as error:
            cause = error.args[-1] if error.args else None
            at_once = time.monotonic() - asked < server.connect_timeout
            if self._cancelled or not at_once or not isinstance(cause, RemoteDisconnected):
                raise
            return server.pool.request("POST", server.url, body=body, preload_content=False)

    def _silence(self) -> ModelServerError:
        return ModelServerError(f"timed out (silent for {self.server.read_timeout:g} s)")

    def _reply(self) -> Iterator[str]:
        server = self.server
        deadline = time.monotonic() + server.turn_timeout
        body = {
            "model": self.model,
            "messages": self.messages,
            "stream": True,
            "max_tokens": server.max_tokens,
        }
        try:
            response = self._ask(orjson.dumps(body))
            self._heard, self._response = time.monotonic(), response
            # The head came within urllib3's read timeout; the body is read without one
            # (hang_up_if_silent watches it). urllib3 sets it again on the next request.
            if response.connection is not None and response.connection.sock is not None:
                response.connection.sock.settimeout(None)
            complete = False
            try:
                if not self._cancelled:
                    yield from self._texts(response, deadline)
                    complete = not self._cancelled
            finally:
                if not complete:  # a body left half read: its connection cannot be reused
                    response.close()
                response.release_conn()  # a whole body read has released it already
        except TimeoutError as error:
            raise ModelServerError(f"timed out ({type(error).__name__})") from error
        except (HTTPError, OSError, BadStream) as error:
            raise ModelServerError(f"{type(error).__name__}: {error}") from error

    def _texts(self, response: urllib3.BaseHTTPResponse, deadline: float) -> Iterator[str]:
        if response.status != 200:
            head = response.read(ERROR_LOGGED, decode_content=True)
            raise ModelServerError(f"HTTP {response.status}: {head!r}")
        if response.headers.get("content-type", "").startswith("application/json"):
            # A server that ignores `stream: true` answers with one whole completion.
            yield self._whole_completion(response, deadline)
            return
        length, finished = 0, False
        # Each piece as soon as it arrives, and at most READ_SIZE at a time however long a
        # chunk says it is: urllib3's own chunk reader for a chunked body (the cheaper),
        # read1 for one that is not.
        if response.chunked and response.supports_chunked_reads():
            chunks = self._heard_by(deadline, response.read_chunked(READ_SIZE))
        else:
            chunks = self._heard_by(deadline, iter(lambda: response.read1(READ_SIZE), b""))
        # No event is longer than a whole completion could be: a stream that runs on
        # without one ending is a broken server's, read no further.
        events = sse_data(sse_lines(chunks, COMPLETION_MAX_BYTES), COMPLETION_MAX_BYTES)
        for data in events:
            if self._cancelled:
                return
            if data == "[DONE]":
                self._whole = True
                self._read_to_the_end(response, chunks)
                return
            for text, finish_reason in chunk_parts(data):
                finished = finished or finish_reason is not None
                length += len(text)
                if length > REPLY_MAX_CHARS:
                    raise ModelServerError(f"reply over {REPLY_MAX_CHARS} characters")
                if text:
                    yield text
        if not finished:
            raise ModelServerError("the stream ended before [DONE]")

    def _whole_completion(self, response: urllib3.BaseHTTPResponse, deadline: float) -> str:
        """The text of a completion sent whole, held to the same length as a streamed one."""
        body = bytearray()
        for chunk in self._heard_by(deadline, response.stream(READ_SIZE)):
            body += chunk
            if len(body) > COMPLETION_MAX_BYTES:
                raise ModelServerError(f"a completion over {COMPLETION_MAX_BYTES} bytes")
        text = completion_text(bytes(body))
        if len(text) > REPLY_MAX_CHARS:
            raise ModelServerError(f"reply over {REPLY_MAX_CHARS} characters")
        return text

    def _read_to_the_end(self, response: urllib3.BaseHTTPResponse, chunks: Iterator[bytes]) -> None:
        """The body's end (its last, empty chunk), read so that urllib3 puts the connection
        back in its pool, where a body left half read would close it. The reply is whole
        already, so the end gets BODY_END_SECONDS in all; a server still silent, or still
        talking, by then is hung up on. (urllib3 sets the socket's timeout again on the
        connection's next request.)"""
        give_up = time.monotonic() + BODY_END_SECONDS
        if response.connection is not None and response.connection.sock is not None:
            response.connection.sock.settimeout(BODY_END_SECONDS)
        with contextlib.suppress(ModelServerError, HTTPError, OSError):
            for _ in chunks:
                if time.monotonic() > give_up:
                    response.close()  # its connection goes back to the pool closed
                    return

    def _heard_by(self, deadline: float, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """The body's chunks, each one news from the model (keep-alive comments too),
        checked against the turn's deadline."""
        for chunk in chunks:
            self._heard = time.monotonic()
            if self._heard > deadline:
                raise ModelServerError(f"no whole reply in {self.server.turn_timeout:g} s")
            yield chunk
