"""The JSON API under /api: every view in it has an authenticated caller and is rate
limited per caller."""

from flask import Blueprint, Flask, request

from .assistant.views import bp as assistant_bp
from .auth import authenticate_request
from .conversations.views import bp as conversations_bp
from .limits import init_limits

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
        authenticate_request()
