"""Stop signals: a person's Stop reaches the reply it names, whichever process (or
instance) is relaying it.

One interface, `StopSignals`: `publish` a stop, `watch` for one. Each process that
relays replies keeps one subscription open, in a thread (a greenlet under gevent)
started with its first reply, and calls the watchers of the replies it relays there.
Two carriers: Redis pub/sub when REDIS_URL is set, else PostgreSQL's LISTEN/NOTIFY,
which every process already reaches (on a connection of its own, never through a
transaction pooler).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

import psycopg
import redis
from sqlalchemy import func, select

from ..config import Settings
from ..database import one_statement
from ..errors import unavailable
from ..limits import REDIS_TIMEOUT_SECONDS

log = logging.getLogger(__name__)

CHANNEL = "florent_stop"
# How long the listener waits for a stop before checking whether to go on.
POLL_SECONDS = 1.0
# After losing its connection, the listener tries again after this long, then twice
# as long each time up to the longest, so a carrier that is down is not hammered.
RECONNECT_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 5.0
# The first reply of a process waits at most this long for the listener to be ready.
READY_SECONDS = 5.0

Watcher = Callable[[], None]


def stop_key(conversation_id: str, slot: datetime) -> str:
    """A reply's identity: its conversation, and when its turn took the reply slot."""
    return f"{conversation_id} {slot.isoformat()}"


def stop_signals(settings: Settings, listen_url: Callable[[], str]) -> StopSignals:
    """Stops through Redis when REDIS_URL is set, else through PostgreSQL."""
    if settings.redis_url:
        return RedisStopSignals(settings.redis_url)
    return PostgresStopSignals(listen_url)


class StopSignals:
    """The watchers of this process's replies and the listener that calls them; a
    carrier sends a stop (`publish`) and listens until closed or cut off (`_listen`)."""

    def __init__(self) -> None:
        self._watchers: dict[str, set[Watcher]] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._connected = False

    def publish(self, conversation_id: str, slot: datetime) -> None:
        """Stop the reply of that turn, wherever it is relayed."""
        raise NotImplementedError

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
                    target=self._run, name="florent-stop-listener", daemon=True
                )
                self._thread.start()
        # The first reply waits until stops can reach it, or until the listener has failed
        # once: a carrier that is down delays no reply (its stops are lost meanwhile).
        self._ready.wait(timeout=READY_SECONDS)

    def _run(self) -> None:
        delay = RECONNECT_SECONDS
        while not self._closed.is_set():
            self._connected = False
            try:
                self._listen()
            except Exception as error:  # whatever it was, the listener must not die of it
                if self._connected:  # it was listening until now: a new outage
                    delay = RECONNECT_SECONDS
                # Stops sent meanwhile are lost; the replies they named run to their end.
                log.error(
                    "stop listener lost its connection (%s: %s); again in %.1f s",
                    type(error).__name__,
                    error,
                    delay,
                )
                self._ready.set()
                self._closed.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    def _listen(self) -> None:
        """Listen until closed; raise when the connection is lost."""
        raise NotImplementedError

    def _listening(self) -> None:
        self._connected = True
        self._ready.set()

    def _dispatch(self, key: str) -> None:
        with self._lock:
            watchers = list(self._watchers.get(key, ()))
        for on_stop in watchers:
            on_stop()


class PostgresStopSignals(StopSignals):
    """Stops sent with PostgreSQL's NOTIFY and heard with LISTEN."""

    def __init__(self, listen_url: Callable[[], str]):
        super().__init__()
        # A libpq URL straight to PostgreSQL (no transaction pooler: a LISTEN belongs to
        # a session), known by the time the first reply starts.
        self.listen_url = listen_url

    def publish(self, conversation_id: str, slot: datetime) -> None:
        with one_statement() as connection:
            connection.execute(select(func.pg_notify(CHANNEL, stop_key(conversation_id, slot))))

    def _listen(self) -> None:
        # LISTEN has no SQLAlchemy API: a connection of the driver's own, kept open.
        with psycopg.connect(self.listen_url(), autocommit=True, connect_timeout=2) as connection:
            connection.execute(f"LISTEN {CHANNEL}")
            self._listening()
            while not self._closed.is_set():
                for notify in connection.notifies(timeout=POLL_SECONDS):
                    self._dispatch(notify.payload)


class RedisStopSignals(StopSignals):
    """Stops sent with Redis's PUBLISH and heard on a subscription."""

    def __init__(self, url: str):
        super().__init__()
        self.client = redis.Redis.from_url(
            url.replace("redis+unix://", "unix://", 1),
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
        )

    def publish(self, conversation_id: str, slot: datetime) -> None:
        try:
            self.client.publish(CHANNEL, stop_key(conversation_id, slot))
        except redis.RedisError as error:
            # Not sent, so say so: the person may press Stop again in a moment.
            log.error("stop not sent: Redis is unavailable (%s: %s)", type(error).__name__, error)
            raise unavailable() from None

    def _listen(self) -> None:
        pubsub = self.client.pubsub()
        try:
            # Subscribed afresh on every attempt: a subscribe that failed while Redis was
            # down records no channel for the connection to restore.
            pubsub.subscribe(CHANNEL)
            while not self._closed.is_set():
                message = pubsub.get_message(timeout=POLL_SECONDS)
                if message is None:
                    continue
                if message["type"] == "subscribe":  # Redis confirms: stops reach us now
                    self._listening()
                elif message["type"] == "message":
                    self._dispatch(message["data"].decode())
        finally:
            pubsub.close()
