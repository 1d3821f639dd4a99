"""Per-caller rate limits on the API (Flask-Limiter).

The limiter runs after authentication, so a limit follows the caller (organization,
user id) across tokens and processes, not an IP address shared by a whole office.
"""

from __future__ import annotations

import math
import time

from flask import Flask, Response, current_app, g, request
from flask_limiter import Limiter, RequestLimit

from .errors import json_response


def caller_key() -> str:
    caller = g.get("caller")
    if caller is None:
        return f"ip:{request.remote_addr}"
    return f"caller:{caller.org_id}:{caller.user_id}"


def _api_limit() -> str:
    return current_app.config["RATELIMIT_API"]


def _rate_limited(limit: RequestLimit) -> Response:
    retry_after = max(1, math.ceil(limit.reset_at - time.time()))
    return json_response({"error": "rate_limited"}, 429, {"Retry-After": str(retry_after)})


limiter = Limiter(
    key_func=caller_key,
    on_breach=_rate_limited,
    # A rate-limit store that is down must not take the API down with it.
    swallow_errors=True,
    in_memory_fallback_enabled=True,
)


def init_limits(app: Flask, *, api_blueprint_name: str) -> None:
    """Call after authentication's before_request is registered: limits need the caller."""
    limiter.init_app(app)
    limiter.limit(_api_limit)(app.blueprints[api_blueprint_name])
