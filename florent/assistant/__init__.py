"""Florent's replies: the prompt, the model server client, turns and their views."""

from __future__ import annotations

import logging

from flask import Flask, current_app

from ..config import Settings
from .model_server import ModelServer
from .turns import Limits

EXTENSION = "florent.assistant"


def init_assistant(app: Flask, settings: Settings) -> None:
    server = ModelServer.from_settings(settings)
    app.extensions[EXTENSION] = server
    app.extensions["florent.turn_limits"] = Limits.from_settings(settings)
    # httpx logs every request at INFO; the "reply" line says more, once per turn.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def model_server() -> ModelServer | None:
    """The configured model server, or None: then Florent makes no replies."""
    return current_app.extensions.get(EXTENSION)


def turn_limits() -> Limits:
    return current_app.extensions["florent.turn_limits"]
