"""One JSON error shape for the whole API, {"error": code, "issues"?: [...]}, and the one
place where domain errors become HTTP errors.

Handlers live on the app, not a blueprint, so routing 404s and 405s under /api are
JSON too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import Any

import orjson
from flask import Flask, Response, request
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException, InternalServerError

from .extensions import db

log = logging.getLogger(__name__)

HTTP_ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "rate_limited",
    503: "service_unavailable",
}

# PostgreSQL SQLSTATE class 22 is "data exception": bad input that slipped past
# validation. It is the client's fault, so it is a 400, never a 500.
DATA_EXCEPTION_CLASS = "22"


class ApiError(Exception):
    """An error a client should see, with its status and machine-readable code."""

    def __init__(
        self,
        status: int,
        code: str,
        issues: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(code)
        self.status = status
        self.code = code
        self.issues = issues
        self.headers = dict(headers or {})
        self.extra = extra

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code}
        if self.issues is not None:
            body["issues"] = self.issues
        return {**body, **self.extra}


def issue(path: Iterable[str | int], code: str, message: str) -> dict[str, Any]:
    return {"path": list(path), "code": code, "message": message}


def unavailable(retry_after: int = 1) -> ApiError:
    return ApiError(503, "service_unavailable", headers={"Retry-After": str(retry_after)})


def json_response(body: Any, status: int, headers: Mapping[str, str] | None = None) -> Response:
    response = Response(orjson.dumps(body), status=status, mimetype="application/json")
    if headers:
        response.headers.update(headers)
    return response


def error_response(error: ApiError) -> Response:
    return json_response(error.body(), error.status, error.headers)


def is_api_request() -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


@cache
def domain_errors() -> dict[type[Exception], Callable[[Any], ApiError]]:
    """Each domain error, and what a client sees of it (built once, on first use)."""
    # Imported here: the domain packages import this module for ApiError.
    from .assistant.turns import AssistantUnavailable, NoReplyInProgress, TooManyReplies
    from .conversations.export import ExportInProgress, TooManyExports
    from .conversations.schemas import dump_message
    from .conversations.service import ConversationFull, ConversationNotFound, ReplyInProgress

    return {
        ConversationNotFound: lambda _: ApiError(404, "not_found"),
        ConversationFull: lambda _: ApiError(409, "conversation_full"),
        ReplyInProgress: lambda _: ApiError(409, "reply_in_progress"),
        NoReplyInProgress: lambda _: ApiError(409, "no_reply_in_progress"),
        TooManyReplies: lambda error: ApiError(
            429, "too_many_replies", headers={"Retry-After": str(error.retry_after)}
        ),
        ExportInProgress: lambda error: ApiError(
            429, "export_in_progress", headers={"Retry-After": str(error.retry_after)}
        ),
        TooManyExports: lambda error: unavailable(retry_after=error.retry_after),
        # The person's message was stored before the model failed: say which it is.
        AssistantUnavailable: lambda error: ApiError(
            502,
            "assistant_unavailable",
            message=dump_message(error.message) if error.message else None,
        ),
    }


def as_api_error(error: Exception) -> ApiError:
    """What a client sees of any error, for a channel that has no error handlers of its
    own (the WebSocket, where an error that escapes would be answered in HTTP on a socket
    that no longer speaks it)."""
    if isinstance(error, ApiError):
        return error
    if isinstance(error, DBAPIError | PoolTimeoutError):
        return database_error(error)
    to_api_error = domain_errors().get(type(error))
    if to_api_error is None:
        log.exception("unhandled error")
        return ApiError(500, "internal_error")
    return to_api_error(error)


def database_error(error: DBAPIError | PoolTimeoutError) -> ApiError:
    """What a client sees when the database fails a request."""
    if isinstance(error, PoolTimeoutError):
        # Every connection stayed busy past the pool's timeout (PostgreSQL saturated or
        # stuck, or a worker far behind): shed the load.
        log.error("database connection pool exhausted")
        return unavailable()
    sqlstate = getattr(error.orig, "sqlstate", None) or ""
    if sqlstate.startswith(DATA_EXCEPTION_CLASS):
        log.warning("data exception reached the database: %s", sqlstate)
        return ApiError(400, "invalid_body", [issue([], "invalid_value", "A value is not valid.")])
    if isinstance(error, OperationalError) or error.connection_invalidated:
        log.error("database unavailable: %s", error.orig.__class__.__name__)
        return unavailable()
    log.exception("database error")
    return ApiError(500, "internal_error")


def register_error_handlers(app: Flask) -> None:
    for error_class, to_api_error in domain_errors().items():
        app.register_error_handler(error_class, _handler(to_api_error))

    @app.errorhandler(ApiError)
    def handle_api_error(error: ApiError) -> Response:
        db.session.rollback()
        return error_response(error)

    @app.errorhandler(HTTPException)
    def handle_http_exception(error: HTTPException) -> Response | HTTPException:
        if not is_api_request():
            return error
        if error.response is not None:  # built by us already (e.g. the rate limiter's 429)
            return error.response
        status = error.code or 500
        code = HTTP_ERROR_CODES.get(status, "bad_request" if status < 500 else "internal_error")
        allowed = getattr(error, "valid_methods", None)
        headers = {"Allow": ", ".join(allowed)} if allowed else None
        return error_response(ApiError(status, code, headers=headers))

    @app.errorhandler(DBAPIError)
    @app.errorhandler(PoolTimeoutError)
    def handle_database_error(error: DBAPIError | PoolTimeoutError) -> Response:
        db.session.rollback()
        return error_response(database_error(error))

    @app.errorhandler(Exception)
    def handle_unexpected(error: Exception) -> Response | HTTPException:
        db.session.rollback()
        log.exception("unhandled error on %s %s", request.method, request.path)
        if not is_api_request():
            return InternalServerError()
        return error_response(ApiError(500, "internal_error"))


def _handler(to_api_error: Callable[[Any], ApiError]) -> Callable[[Exception], Response]:
    def handle(error: Exception) -> Response:
        db.session.rollback()
        return error_response(to_api_error(error))

    return handle
