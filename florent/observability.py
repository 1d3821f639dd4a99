"""Request ids, one JSON log line per request, and health endpoints."""

from __future__ import annotations

import logging
import re
import secrets
import sys
import time
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, g, request
from sqlalchemy import text

from .errors import json_response, unavailable
from .extensions import db

access_log = logging.getLogger("florent.access")
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
TERMINAL_STYLE = re.compile(r"\x1b\[[0-9;]*m")
READINESS_TIMEOUT_MS = 1000

bp = Blueprint("health", __name__)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log shippers and `jq` read without a parser."""

    _second: int | None = None
    _second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()

    def _time(self, record: logging.LogRecord) -> str:
        # Formatting a time costs more than the rest of an access line: once a second will do.
        second = int(record.created)
        if second != self._second:
            self._second_text = self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z")
            self._second = second
        return self._second_text


class DevelopmentServerLines(logging.Filter):
    """The development server's own lines: its line per request is dropped (the access
    line says more), and the rest lose their terminal colours, which JSON would carry
    as escape codes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str):
            return True
        if record.args and '"%s"' in record.msg:  # `<client> - - [<time>] "%s" %s %s`
            return False
        record.msg = TERMINAL_STYLE.sub("", record.msg)
        return True


def configure_logging() -> None:
    root = logging.getLogger()
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("werkzeug").addFilter(DevelopmentServerLines())


def _start_request() -> None:
    g.started = time.perf_counter()
    supplied = request.headers.get("X-Request-Id", "")
    # A client's id is kept only if it is safe to echo and to log verbatim.
    g.request_id = supplied if REQUEST_ID.fullmatch(supplied) else secrets.token_hex(16)


def _finish_request(response: Response) -> Response:
    request_id = g.get("request_id") or secrets.token_hex(16)
    response.headers["X-Request-Id"] = request_id
    if not access_log.isEnabledFor(logging.INFO):
        return response
    caller = g.get("caller")
    fields = {
        "method": request.method,
        "path": request.path,  # the path only: query strings may carry cursors
        "status": response.status_code,
        "duration_ms": round(
            (time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 2
        ),
        "request_id": request_id,
        "org_id": caller.org_id if caller else None,
    }
    # makeRecord and handle rather than info(): info() also walks the stack for the
    # caller's file and line, on every request, and no access line shows them.
    access_log.handle(
        access_log.makeRecord(
            access_log.name,
            logging.INFO,
            __file__,
            0,
            "request",
            (),
            None,
            extra={"fields": fields},
        )
    )
    return response


@bp.get("/healthz")
def healthz() -> Response:
    """The process is alive (touches nothing else)."""
    return json_response({"status": "ok"}, 200)


@bp.get("/readyz")
def readyz() -> Response:
    """PostgreSQL answers within about a second (once a pooled connection is free)."""
    try:
        db.session.execute(text(f"SET LOCAL statement_timeout = {READINESS_TIMEOUT_MS}"))
        db.session.execute(text("SELECT 1"))
    except Exception:
        db.session.rollback()
        raise unavailable() from None
    db.session.rollback()
    return json_response({"status": "ready"}, 200)


def init_observability(app: Flask) -> None:
    configure_logging()
    app.before_request(_start_request)
    app.after_request(_finish_request)
    app.register_blueprint(bp)
