"""Florent's replies: the prompt, the model server client, turns, stops, and the views
that relay replies (server-sent events, the WebSocket)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, current_app

from ..config import Settings
from .model_server import ModelServer
from .reply import Relay
from .stops import StopSignals, stop_signals
from .turns import Limits

EXTENSION = "florent.assistant"


class Assistant:
    """What replies need, one per app: the model server (None: Florent makes no
    replies), the bounds of a turn, how replies are relayed, and the stop signals."""

    def __init__(self, settings: Settings, listen_url: Callable[[], str]):
        self.server = ModelServer.from_settings(settings)
        self.limits = Limits.from_settings(settings)
        self.relay = Relay(
            heartbeat_seconds=settings.stream_heartbeat_seconds,
            coalesce_seconds=settings.stream_coalesce_ms / 1000,
        )
        # Redis pub/sub when REDIS_URL is set, else PostgreSQL's LISTEN/NOTIFY.
        self.stops: StopSignals = stop_signals(settings, listen_url)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        self.stops.close()


def init_assistant(app: Flask, settings: Settings, *, listen_url: Callable[[], str]) -> None:
    app.extensions[EXTENSION] = Assistant(settings, listen_url)


def assistant() -> Assistant:
    return current_app.extensions[EXTENSION]
