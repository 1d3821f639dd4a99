"""Florent's replies: the prompt, the model server client, and one reply's life.

The model server is anything that speaks the OpenAI Chat Completions protocol:
`POST {base}/chat/completions` with `stream: true`, answered as server-sent events of
`chat.completion.chunk` objects ending with `data: [DONE]`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
from flask import Flask, current_app

from . import conversations
from .auth import Caller
from .config import Settings
from .conversations import ConversationRow, MessageRow, Turn

log = logging.getLogger(__name__)

# A turn holds its conversation's reply slot for at most the reply's deadline plus one
# last read and the database writes; past this margin on top, a slot is a dead turn's.
REPLY_SLOT_MARGIN = timedelta(seconds=30)
# A model server that never stops talking is a broken one, not a long reply.
REPLY_MAX_CHARS = 100_000
# How much of a model server's error body goes into the log.
ERROR_BODY_LOGGED = 300

IDENTITY = (
    "You are Florent, the builder-chat assistant of the RakerOne platform. "
    "Help the person you are talking with, clearly and concisely."
)


class AssistantUnavailable(Exception):
    """The model server gave no complete reply: refused, failed, too slow or cut off."""


# -- The prompt -----------------------------------------------------------------


def build_prompt(
    conversation: Any, history: Sequence[Any], *, now: datetime, history_chars: int
) -> list[dict[str, str]]:
    """The chat messages sent to the model: who Florent is and who it talks with, then
    the conversation so far, oldest first, within the history budget."""
    system = system_message(conversation.user_display, conversation.timezone, now)
    return [
        {"role": "system", "content": system},
        *({"role": m.role, "content": m.content} for m in trim_history(history, history_chars)),
    ]


def system_message(user_display: str | None, timezone: str | None, now: datetime) -> str:
    lines = [IDENTITY]
    if user_display and user_display.strip():
        lines.append(f"You are talking with {user_display.strip()}.")
    zone = known_zone(timezone)
    if zone is None:
        lines.append(
            f"Their time zone is not known; it is now {now.astimezone(UTC):%A %d %B %Y, %H:%M} UTC."
        )
    else:
        local = now.astimezone(zone)
        lines.append(
            f"Their local time is {local:%A %d %B %Y, %H:%M} ({timezone}, {utc_offset(local)})."
        )
    return "\n".join(lines)


def known_zone(name: str | None) -> tzinfo | None:
    """The IANA time zone of that name, or None (no name, or one this machine does not know)."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # unknown key, a malformed key, a directory
        return None


def utc_offset(local: datetime) -> str:
    offset = local.utcoffset() or timedelta()
    sign, minutes = ("-" if offset < timedelta() else "+"), abs(offset) // timedelta(minutes=1)
    return f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def trim_history(history: Sequence[Any], budget: int) -> list[Any]:
    """The newest messages whose contents fit in `budget` code points, oldest first.

    The newest message (the person's, just sent) is always kept, whatever its length.
    A reply left without the message it answered is dropped too: the history starts
    with the person, as some models' chat templates insist.
    """
    kept: list[Any] = []
    used = 0
    for message in reversed(history):
        used += len(message.content)
        if kept and used > budget:
            break
        kept.append(message)
    kept.reverse()
    while len(kept) > 1 and kept[0].role != "user":
        kept.pop(0)
    return kept


# -- The model server -------------------------------------------------------------


class ModelServer:
    """An OpenAI-compatible chat completions endpoint, read as a stream.

    One httpx client per process: it pools connections (and TLS sessions) to the model
    server across turns, and is safe to share between threads.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        connect_timeout: float,
        read_timeout: float,
        turn_timeout: float,
        history_chars: int,
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.turn_timeout = turn_timeout
        self.history_chars = history_chars
        # The slot must outlast any live turn: the deadline, one more read that was
        # already waiting when it passed, the connection, and the database writes.
        self.stale_after = (
            timedelta(seconds=turn_timeout + read_timeout + connect_timeout) + REPLY_SLOT_MARGIN
        )
        headers = {"Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            headers=headers,
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
            history_chars=settings.llm_history_chars,
        )

    def close(self) -> None:
        self._client.close()

    def stream_reply(self, model: str, messages: list[dict[str, str]]) -> Iterator[str]:
        """The reply's text, piece by piece as the model generates it.

        Raises AssistantUnavailable unless the reply arrives whole within the turn's
        deadline. Closing the iterator early closes the request to the model server.
        """
        deadline = time.monotonic() + self.turn_timeout
        body = {"model": model, "messages": messages, "stream": True}
        try:
            with self._client.stream("POST", self.url, json=body) as response:
                if response.status_code != httpx.codes.OK:
                    raise AssistantUnavailable(
                        f"HTTP {response.status_code}: {_head(response, ERROR_BODY_LOGGED)!r}"
                    )
                if response.headers.get("content-type", "").startswith("application/json"):
                    # A server that ignores `stream: true` answers with one whole completion.
                    yield _completion_text(response.read())
                    return
                response.encoding = "utf-8"  # what SSE always is, whatever the header says
                length, finished = 0, False
                for data in sse_data(self._until(deadline, response.iter_lines())):
                    if data == "[DONE]":
                        return
                    for text, finish_reason in _chunk_parts(data):
                        finished = finished or finish_reason is not None
                        length += len(text)
                        if length > REPLY_MAX_CHARS:
                            raise AssistantUnavailable(f"reply over {REPLY_MAX_CHARS} characters")
                        if text:
                            yield text
                if not finished:
                    raise AssistantUnavailable("the stream ended before [DONE]")
        except httpx.TimeoutException as error:
            raise AssistantUnavailable(f"timed out ({type(error).__name__})") from error
        except httpx.HTTPError as error:
            raise AssistantUnavailable(f"{type(error).__name__}: {error}") from error

    def _until(self, deadline: float, lines: Iterable[str]) -> Iterator[str]:
        """The lines, checked against the deadline one by one (keep-alive comments too)."""
        for line in lines:
            if time.monotonic() > deadline:
                raise AssistantUnavailable(f"no whole reply in {self.turn_timeout:g} s")
            yield line


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
        raise AssistantUnavailable(f"error event: {str(chunk['error'])[:ERROR_BODY_LOGGED]!r}")
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
        raise AssistantUnavailable("a completion without a message") from None
    if not isinstance(text, str):
        raise AssistantUnavailable("a completion without text")
    return text


def _json_object(raw: str | bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise AssistantUnavailable("an event that is not JSON") from None
    if not isinstance(value, dict):
        raise AssistantUnavailable("an event that is not a JSON object")
    return value


def _head(response: httpx.Response, limit: int) -> str:
    """The start of a response body, without reading all of a huge one."""
    head = b""
    for chunk in response.iter_bytes():
        head += chunk
        if len(head) >= limit:
            break
    return head[:limit].decode("utf-8", "replace")


def init_assistant(app: Flask, settings: Settings) -> None:
    app.extensions["florent.assistant"] = ModelServer.from_settings(settings)
    # httpx logs every request at INFO; the "reply" line below says more, once per turn.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def model_server() -> ModelServer | None:
    """The configured model server, or None: then Florent makes no replies."""
    return current_app.extensions.get("florent.assistant")


# -- One reply ----------------------------------------------------------------------


class Reply:
    """Florent's reply to one turn: asked of the model, then stored whole or not at all.

    It needs no request context, so it can outlive the view that made it (a stream).
    Each database step runs in an app context of its own and holds a pooled connection
    only for that step, never while the model is talking.
    """

    def __init__(
        self, server: ModelServer, caller: Caller, turn: Turn, *, app: Flask, request_id: str
    ):
        self.server, self.caller, self.turn = server, caller, turn
        self.app, self.request_id = app, request_id
        self.started = time.perf_counter()
        self._texts: Iterator[str] | None = None
        self._parts: list[str] = []
        self._failure: str | None = None
        self._settled = False

    def texts(self) -> Iterator[str]:
        """The reply's text as the model generates it; raises AssistantUnavailable."""
        prompt = build_prompt(
            self.turn.conversation,
            self.turn.history,
            now=datetime.now(UTC),
            history_chars=self.server.history_chars,
        )
        self._texts = self.server.stream_reply(self.turn.conversation.model, prompt)
        try:
            for text in self._texts:
                self._parts.append(text)
                yield text
        except AssistantUnavailable as error:
            self._failure = str(error)
            raise

    def store(self) -> tuple[MessageRow, ConversationRow]:
        """Store the complete reply: (the assistant message, the updated conversation)."""
        content = "".join(self._parts)
        if not content.strip():
            self._failure = "an empty reply"
            raise AssistantUnavailable(self._failure)
        try:
            with self.app.app_context():
                message, conversation = conversations.finish_turn(
                    self.caller,
                    self.turn.conversation.id,
                    reply_started_at=self.turn.reply_started_at,
                    content=content,
                )
        except Exception as error:
            self._failure = f"not stored: {type(error).__name__}"
            raise
        self._settle("replied")
        return message, conversation

    def wait(self) -> tuple[MessageRow, ConversationRow]:
        """The whole reply, stored (for a client that does not stream)."""
        try:
            for _ in self.texts():
                pass
            return self.store()
        finally:
            self.close()

    def close(self) -> None:
        """Free the conversation for the next turn when no reply was stored: the model
        failed, or the client left mid-stream. Safe to call more than once."""
        if self._texts is not None:
            self._texts.close()  # hangs up on the model server if it is still talking
        if self._settled:
            return
        try:
            with self.app.app_context():
                conversations.abandon_turn(
                    self.caller,
                    self.turn.conversation.id,
                    reply_started_at=self.turn.reply_started_at,
                )
        except Exception:
            # The slot frees itself once stale; the person waits a few minutes at worst.
            log.exception("could not free the reply slot of %s", self.turn.conversation.id)
        self._settle("failed" if self._failure else "interrupted")

    def _settle(self, outcome: str) -> None:
        self._settled = True
        fields = {
            "outcome": outcome,
            "conversation_id": self.turn.conversation.id,
            "request_id": self.request_id,
            "reply_chars": sum(len(p) for p in self._parts),
            "duration_ms": round((time.perf_counter() - self.started) * 1000, 2),
        }
        if self._failure:
            fields["reason"] = self._failure
        log.log(
            logging.WARNING if outcome == "failed" else logging.INFO,
            "reply",
            extra={"fields": fields},
        )
