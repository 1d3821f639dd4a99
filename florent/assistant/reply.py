"""One reply's life: asked of the model server, relayed as it comes, then stored whole,
stored as far as it went when the person stops it, or not stored at all."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from sqlalchemy import Row

from ..auth import Caller
from ..conversations.service import ConversationNotFound
from . import turns
from .model_server import ModelServer, ModelServerError, ModelStream
from .prompt import build_prompt
from .stops import StopSignals
from .turns import AssistantUnavailable, Turn

log = logging.getLogger(__name__)

# What the model reader hands the relay besides text.
END, STOP = object(), object()
HEARTBEAT = None  # what the relay is handed, and `events` yields, while the model is silent


@dataclass(frozen=True)
class Relay:
    """How replies are relayed: a heartbeat while the model is silent, and an optional
    window in which pieces of text are sent together."""

    heartbeat_seconds: float = 15.0
    coalesce_seconds: float = 0.0


class Reply:
    """Florent's reply to one turn.

    A thread (a greenlet under gevent) reads the model server into a queue; `events`
    relays the queue, so a stop or a heartbeat never waits for the model's next bytes.
    Nothing here needs a request context, so a reply can outlive the view that made it
    (a stream); each database step opens an app context of its own and holds a pooled
    connection only for that step, never while the model is talking.
    """

    def __init__(
        self,
        server: ModelServer,
        caller: Caller,
        turn: Turn,
        *,
        app: Flask,
        request_id: str,
        stops: StopSignals,
        relay: Relay,
    ):
        self.server, self.caller, self.turn = server, caller, turn
        self.app, self.request_id, self.stops, self.relay = app, request_id, stops, relay
        self.started = time.perf_counter()
        self.stopped = False
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._last_text = time.monotonic()
        self._over = threading.Event()
        self._stream: ModelStream | None = None
        self._parts: list[str] = []
        self._failure: str | None = None
        self._settled = False
        self._unwatch = stops.watch(turn.conversation.id, turn.reply_started_at, self.stop)

    def stop(self) -> None:
        """End the reply now, keeping what was generated (from any thread)."""
        self._queue.put(STOP)

    def events(self) -> Iterator[str | None]:
        """The reply's text as the model generates it, and HEARTBEAT while it is silent;
        ends when the reply is complete or stopped (`self.stopped`). Raises
        AssistantUnavailable when the model gives no complete reply."""
        prompt = build_prompt(self.turn.conversation, self.turn.history, now=datetime.now(UTC))
        self._stream = self.server.open(self.turn.conversation.model, prompt)
        threading.Thread(target=self._read_model, name="florent-reply", daemon=True).start()
        threading.Thread(target=self._watch, name="florent-reply-timer", daemon=True).start()
        while True:
            item = self._queue.get()
            if item is HEARTBEAT:
                yield HEARTBEAT
                continue
            if isinstance(item, str) and self.relay.coalesce_seconds:
                item = self._coalesce(item)
            if isinstance(item, str):
                self._parts.append(item)
                yield item
            elif isinstance(item, tuple):  # text coalesced up to an end, a stop or an error
                text, item = item
                self._parts.append(text)
                yield text
            if item is END:
                return
            if item is STOP:
                self.stopped = True
                self._stream.cancel()
                return
            if isinstance(item, ModelServerError):
                raise self._unavailable(str(item)) from item

    def _coalesce(self, text: str) -> str | tuple[str, Any]:
        """`text` and the pieces that follow it within the window, as one."""
        deadline = time.monotonic() + self.relay.coalesce_seconds
        pieces = [text]
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if not isinstance(item, str):
                return "".join(pieces), item
            pieces.append(item)
        return "".join(pieces)

    def _read_model(self) -> None:
        try:
            for text in self._stream:
                self._last_text = time.monotonic()
                self._queue.put(text)
            self._queue.put(END)
        except ModelServerError as error:
            self._queue.put(error)
        except Exception as error:  # a stream cancelled under it, or a bug: no reply
            self._queue.put(ModelServerError(f"{type(error).__name__}: {error}"))

    def _watch(self) -> None:
        """The reply's one timer, rather than one on every wait for the model: a heartbeat
        into the queue whenever neither text nor a heartbeat went out for a while, and a
        hang-up on a model silent for the read timeout."""
        interval, stream = self.relay.heartbeat_seconds, self._stream
        last_beat = float("-inf")
        while True:
            quiet_since = max(self._last_text, last_beat)
            if time.monotonic() - quiet_since >= interval:
                self._queue.put(HEARTBEAT)
                last_beat = time.monotonic()
                continue
            wait = quiet_since + interval - time.monotonic()
            if self._over.wait(max(0.0, min(wait, stream.hang_up_if_silent()))):
                return

    def store(self) -> tuple[Row[Any] | None, Row[Any]]:
        """Store the reply, complete or stopped: (the assistant message, the conversation).
        A reply stopped before any text stores no message: (None, the conversation)."""
        content = "".join(self._parts)
        if not content.strip() and not self.stopped:
            raise self._unavailable("an empty reply")
        try:
            with self.app.app_context():
                if not content:  # stopped before the first word
                    conversation = turns.abandon_turn(
                        self.caller, self.turn.conversation.id, self.turn.reply_started_at
                    )
                    if conversation is None:  # deleted meanwhile, as finish_turn would say
                        raise ConversationNotFound()
                    message = None
                else:
                    message, conversation = turns.finish_turn(
                        self.caller,
                        self.turn.conversation.id,
                        reply_started_at=self.turn.reply_started_at,
                        content=content,
                        status="stopped" if self.stopped else "complete",
                    )
        except Exception as error:
            self._failure = f"not stored: {type(error).__name__}"
            raise
        self._settle("stopped" if self.stopped else "replied")
        return message, conversation

    def wait(self) -> tuple[Row[Any] | None, Row[Any]]:
        """The whole reply, stored (for a client that does not stream)."""
        try:
            for _ in self.events():
                pass
            return self.store()
        finally:
            self.close()

    def close(self) -> None:
        """Free the conversation for the next turn when no reply was stored: the model
        failed, or the client left mid-stream. Safe to call more than once."""
        self._over.set()
        self._unwatch()
        if self._stream is not None:
            self._stream.cancel()  # hangs up on the model server if it is still talking
        if self._settled:
            return
        try:
            with self.app.app_context():
                turns.abandon_turn(
                    self.caller, self.turn.conversation.id, self.turn.reply_started_at
                )
        except Exception:
            # The slot frees itself once stale; the person waits a few minutes at worst.
            log.exception("could not free the reply slot of %s", self.turn.conversation.id)
        self._settle("failed" if self._failure else "interrupted")

    def _unavailable(self, reason: str) -> AssistantUnavailable:
        self._failure = reason
        return AssistantUnavailable(reason, self.turn.message)

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
