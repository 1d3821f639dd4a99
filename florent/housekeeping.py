"""Housekeeping done by the service itself as it goes, so nothing grows without a cron
job to remember: a purge runs at most once a minute per process, in small batches."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .extensions import db

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 60.0

_last_run: dict[str, float] = {}
_lock = threading.Lock()


def now_and_then(name: str, chore: Callable[[], object]) -> None:
    """Run `chore` unless it ran in this process within the interval; never raise."""
    with _lock:
        if time.monotonic() - _last_run.get(name, float("-inf")) < INTERVAL_SECONDS:
            return
        _last_run[name] = time.monotonic()
    try:
        chore()
    except Exception:
        db.session.rollback()
        log.exception("housekeeping %r failed", name)


def forget(name: str) -> None:
    """Let `name` run on its next call (tests)."""
    with _lock:
        _last_run.pop(name, None)
