"""The JSON API under /api: every view in it has an authenticated caller and is rate
limited per caller."""

import logging

from flask import Blueprint, Flask, Response, current_app, g, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from . import audit
from .assistant.views import bp as assistant_bp
from .auth import authenticate_request
from .conversations.views import bp as conversations_bp
from .housekeeping import now_and_then
from .limits import init_limits

log = logging.getLogger(__name__)
api = Blueprint("api", __name__, url_prefix="/api")
api.register_blueprint(conversations_bp)
api.register_blueprint(assistant_bp)


def init_api(app: Flask) -> None:
    # On the app rather than the blueprint, so it runs before the rate limiter's own
    # before_request, which needs the caller.
    app.before_request(_authenticate_api_request)
    app.register_blueprint(api)
    init_limits(app, api)


def _authenticate_api_request() -> None:
    if api.name in request.blueprints:
        # Every body over the limit is refused, not only those a view reads (werkzeug
        # enforces it on reading).
        limit = request.max_content_length
        if limit is not None and (request.content_length or 0) > limit:
            raise RequestEntityTooLarge()
        authenticate_request()


@api.after_request
def _options_without_a_body(response: Response) -> Response:
    """Flask answers OPTIONS itself, with Allow and an empty body it calls text/html (the
    one answer under /api that was not JSON): 204 says the same without claiming a body."""
    if request.method == "OPTIONS" and response.status_code == 200 and not response.get_data():
        response.status_code = 204
        del response.headers["Content-Type"]
    return response


@api.after_request
def _record_unwritten_audit_event(response: Response) -> Response:
    """A request made through impersonation that committed nothing (a read refused, a
    body rejected) is recorded all the same."""
    try:
        audit.record_leftover()
    except SQLAlchemyError:
        # The database failed the request's own statements too; the log keeps the event.
        log.exception("audit event not recorded: %s", audit.pending())
    return response


@api.after_request
def _purge_expired_audit_events(response: Response) -> Response:
    """The trail's housekeeping, at most once a minute per process, once the response has
    gone: after the requests that fill the trail (those made through impersonation)."""
    caller = g.get("caller")
    if caller is not None and caller.impersonating:
        app = current_app._get_current_object()
        response.call_on_close(lambda: _purge_expired_audit_events_of(app))
    return response


def _purge_expired_audit_events_of(app: Flask) -> None:
    with app.app_context():
        retention_days = app.config["FLORENT_AUDIT_RETENTION_DAYS"]
        now_and_then("audit trail", lambda: audit.purge_expired(retention_days))
