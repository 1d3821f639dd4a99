"""Rate limits: per caller on the API (Flask-Limiter) and on WebSocket frames, and
throttles on failures (failed authentications, failed staff sign-ins) with the `limits`
library underneath it.

Both count in one storage: Redis (REDIS_URL, shared by every process and instance), or
memory, per process. A storage that is down fails open: requests go through and the
error is logged, until it is back; one that hangs costs a request about half a second.
"""

from __future__ import annotations

import logging
import math
import time
from functools import cache

from flask import Blueprint, Flask, Response, current_app, g, request
from flask_limiter import RequestLimit
from limits import RateLimitItem, parse_many
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from .config import REDIS_SCHEMES
from .errors import json_response
from .extensions import limiter

log = logging.getLogger(__name__)

# The longest a call to Redis may take, connecting included: a Redis that is down
# refuses at once, one that hangs costs this.
REDIS_TIMEOUT_SECONDS = 0.5
# A count of attempts in progress is dropped this long after it last rose from none: far
# longer than an attempt takes, so in practice it drops only what a process that died
# mid-attempt left behind.
IN_PROGRESS_SECONDS = 60


def storage_options(uri: str) -> dict[str, float]:
    """The storage client's options: short timeouts for Redis."""
    if uri.split("://", 1)[0] not in REDIS_SCHEMES:
        return {}
    return {
        "socket_connect_timeout": REDIS_TIMEOUT_SECONDS,
        "socket_timeout": REDIS_TIMEOUT_SECONDS,
    }


def shared_storage(uri: str) -> Storage:
    """The storage at `uri`, with the options of `storage_options`."""
    return storage_from_string(uri, **storage_options(uri))


def caller_key() -> str:
    """Limits follow the caller (organization, user id), not an address an office shares."""
    caller = g.get("caller")
    if caller is None:
        return f"ip:{request.remote_addr}"
    if caller.api_key_id is not None:
        # A key counts as one caller, whoever it acts for: naming other people in
        # X-Act-As-User is no way round its limit.
        return f"key:{caller.api_key_id}"
    return f"caller:{caller.org_id}:{caller.user_id}"


def retry_after(reset_at: float) -> int:
    return max(1, math.ceil(reset_at - time.time()))


def _rate_limited(limit: RequestLimit) -> Response:
    return json_response(
        {"error": "rate_limited"}, 429, {"Retry-After": str(retry_after(limit.reset_at))}
    )


def _api_limit() -> str:
    return current_app.config["RATELIMIT_API"]


# A socket's frames count against the caller's API limit, in a window of their own.
FRAMES_SCOPE = "socket frames"


@cache
def _items(value: str) -> list[RateLimitItem]:
    return parse_many(value)


def frame_within_limit() -> bool:
    """Count a WebSocket frame in against the caller's API rate limit, with the strategy
    and storage Flask-Limiter counts requests with (the socket's upgrade was one
    request); a storage that is down lets it through, as it does requests."""
    if not limiter.enabled:
        return True
    try:
        items = _items(_api_limit())
        return all(limiter.limiter.hit(item, FRAMES_SCOPE, caller_key()) for item in items)
    except Exception as error:
        log.warning("socket frame not counted (%s: %s)", type(error).__name__, error)
        return True


def init_limits(app: Flask, api: Blueprint) -> None:
    """Per-caller limits on every API view; call after authentication is registered."""
    # A storage that is down fails open; no in-memory fallback, so counting resumes in the
    # shared storage with the first request after it is back.
    app.config.setdefault("RATELIMIT_SWALLOW_ERRORS", True)
    uri = app.config["RATELIMIT_STORAGE_URI"]
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", storage_options(uri))
    if app.config["FLORENT_ENV"] == "production" and uri.startswith("memory://"):
        log.warning(
            "rate limits and failure throttles count per process, in memory: each process "
            "(and each instance) allows the whole limit. Set REDIS_URL to share them."
        )
    limiter.init_app(app)
    limiter.limit(_api_limit, key_func=caller_key, on_breach=_rate_limited)(api)


class Throttle:
    """At most `limits` failures per key (e.g. "5 per 15 minutes"), in a moving window."""

    def __init__(self, storage: Storage, limits: str):
        self.items: list[RateLimitItem] = parse_many(limits)
        self.storage = storage
        self.limiter = MovingWindowRateLimiter(storage)

    @classmethod
    def from_uri(cls, uri: str, limits: str) -> Throttle:
        return cls(shared_storage(uri), limits)

    def wait(self, key: str) -> int:
        """Seconds until `key` may try again; 0 when it may now."""
        try:
            return max(
                (
                    retry_after(self.limiter.get_window_stats(item, key).reset_time)
                    for item in self.items
                    if not self.limiter.test(item, key)
                ),
                default=0,
            )
        except Exception:
            log.exception("throttle storage unavailable: letting the attempt through")
            return 0

    def record_failure(self, key: str) -> int:
        """Count a failure; the seconds to wait when `key` is now over its limit, else 0."""
        try:
            over = [item for item in self.items if not self.limiter.hit(item, key)]
            if not over:
                return 0
            return max(retry_after(self.limiter.get_window_stats(i, key).reset_time) for i in over)
        except Exception:
            log.exception("throttle storage unavailable: failure not counted")
            return 0

    def reset(self, key: str) -> None:
        try:
            for item in self.items:
                self.limiter.clear(item, key)
        except Exception:
            log.exception("throttle storage unavailable: failures not cleared")

    # An attempt whose outcome takes time (a password check) is counted as it starts:
    # checking the limit first and counting the failure after would let attempts sent
    # together all pass the check before any of them was counted. Until it ends it
    # counts as a failure; then as one only if it was.

    def begin(self, key: str) -> int:
        """Start an attempt: 0 when the failures in the window and the attempts in
        progress leave room for it (it is then in progress until `end`), else the
        seconds to wait, and it is not counted."""
        counter = f"in-progress/{key}"
        try:
            in_progress = self.storage.incr(counter, IN_PROGRESS_SECONDS)
            waits = [
                # Room that attempts in progress hold is free again as soon as they end.
                retry_after(stats.reset_time) if stats.remaining <= 0 else 1
                for stats in (self.limiter.get_window_stats(item, key) for item in self.items)
                if in_progress > stats.remaining
            ]
            if waits:
                self.storage.incr(counter, IN_PROGRESS_SECONDS, amount=-1)
            return max(waits, default=0)
        except Exception:
            log.exception("throttle storage unavailable: letting the attempt through")
            return 0

    def end(self, key: str, *, failed: bool) -> None:
        """End an attempt `begin` let through, counting it as a failure if it failed:
        first, so that it is never out of both counts at once."""
        if failed:
            self.record_failure(key)
        try:
            self.storage.incr(f"in-progress/{key}", IN_PROGRESS_SECONDS, amount=-1)
        except Exception:
            log.exception("throttle storage unavailable: attempt not ended")
