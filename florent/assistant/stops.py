"""Stop signals: a person's Stop reaches the reply it names, whichever process (or
instance) is relaying it.

One interface, `StopSignals`: `publish` a stop, `watch` for one. This implementation
rides on PostgreSQL's LISTEN/NOTIFY, which every process already reaches: a stop is a
NOTIFY sent through SQLAlchemy, and each process that relays replies keeps one
connection LISTENing, in a thread (a greenlet under gevent) started with its first reply.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

import psycopg
from sqlalchemy import func, select

from ..database import one_statement

log = logging.getLogger(__name__)

CHANNEL = "florent_stop"
# How long the listener waits for a notification before checking whether to go on.
POLL_SECONDS = 1.0
# After losing its connection, the listener tries again this often.
RECONNECT_SECONDS = 1.0

Watcher = Callable[[], None]


def stop_key(conversation_id: str, slot: datetime) -> str:
    """A reply's identity: its conversation, and when its turn took the reply slot."""
    return f"{conversation_id} {slot.isoformat()}"


class StopSignals:
    """Stops sent with PostgreSQL's NOTIFY and heard with LISTEN."""

    def __init__(self, listen_url: Callable[[], str]):
        # A libpq URL straight to PostgreSQL (no transaction pooler), known by the time
        # the first reply starts.
        self.listen_url = listen_url
        self._watchers: dict[str, set[Watcher]] = {}
        self._lock = threading.Lock()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()

    def publish(self, conversation_id: str, slot: datetime) -> None:
        """Stop the reply of that turn, wherever it is relayed."""
        with one_statement() as connection:
            connection.execute(select(func.pg_notify(CHANNEL, stop_key(conversation_id, slot))))

    def watch(self, conversation_id: str, slot: datetime, on_stop: Watcher) -> Callable[[], None]:
        """Call `on_stop` (from the listener's thread) when that reply is stopped; returns
        the function that ends the watch."""
        self._start()
        key = stop_key(conversation_id, slot)
        with self._lock:
            self._watchers.setdefault(key, set()).add(on_stop)

        def unwatch() -> None:
            with self._lock:
                watchers = self._watchers.get(key)
                if watchers is not None:
                    watchers.discard(on_stop)
                    if not watchers:
                        del self._watchers[key]

        return unwatch

    def close(self) -> None:
        self._closed.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._listen, name="florent-stop-listener", daemon=True
                )
                self._thread.start()
        # The first reply waits until stops can reach it (a moment, once per process).
        self._listening.wait(timeout=5)

    def _listen(self) -> None:
        while not self._closed.is_set():
            try:
                # LISTEN has no SQLAlchemy API: a connection of the driver's own, kept open.
                url = self.listen_url()
                with psycopg.connect(url, autocommit=True, connect_timeout=2) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    while not self._closed.is_set():
                        for notify in connection.notifies(timeout=POLL_SECONDS):
                            self._dispatch(notify.payload)
            except psycopg.Error:
                # Stops sent meanwhile are lost; the replies they named run to their end.
                log.exception("stop listener lost its connection; reconnecting")
                self._closed.wait(RECONNECT_SECONDS)

    def _dispatch(self, key: str) -> None:
        with self._lock:
            watchers = list(self._watchers.get(key, ()))
        for on_stop in watchers:
            on_stop()
