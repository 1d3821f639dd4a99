"""One reply's life: asked of the model server, relayed as it comes, then stored whole
or not at all."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from sqlalchemy import Row

from ..auth import Caller
from . import turns
from .model_server import ModelServer, ModelServerError
from .prompt import build_prompt
from .turns import AssistantUnavailable, Turn

log = logging.getLogger(__name__)


class Reply:
    """Florent's reply to one turn.

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
        prompt = build_prompt(self.turn.conversation, self.turn.history, now=datetime.now(UTC))
        self._texts = self.server.stream_reply(self.turn.conversation.model, prompt)
        try:
            for text in self._texts:
                self._parts.append(text)
                yield text
        except ModelServerError as error:
            raise self._unavailable(str(error)) from error

    def store(self) -> tuple[Row[Any], Row[Any]]:
        """Store the complete reply: (the assistant message, the updated conversation)."""
        content = "".join(self._parts)
        if not content.strip():
            raise self._unavailable("an empty reply")
        try:
            with self.app.app_context():
                message, conversation = turns.finish_turn(
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

    def wait(self) -> tuple[Row[Any], Row[Any]]:
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
                turns.abandon_turn(
                    self.caller,
                    self.turn.conversation.id,
                    reply_started_at=self.turn.reply_started_at,
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
