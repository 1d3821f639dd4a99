"""The one path to PostgreSQL: Flask-SQLAlchemy's engine and session, set to give up
rather than hang, and to recover by itself."""

from __future__ import annotations

import select
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

from flask import Flask
from psycopg import Connection as PsycopgConnection
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, event
from sqlalchemy.exc import DisconnectionError

from . import audit
from .config import Settings
from .extensions import db

# When PostgreSQL is down or saturated, a request answers 503 instead of hanging: a
# connection not made within CONNECT_TIMEOUT_S, a statement past STATEMENT_TIMEOUT_MS,
# a connection not free within POOL_TIMEOUT_S (each wait adds to the next).
CONNECT_TIMEOUT_S = 2
# Connections are held for a request's statements (an export's for its whole body, on at
# most half the pool), so a long wait for one is mostly the worker's own backlog: a burst
# of turns on a busy worker, each statement waiting its turn in the loop. Waiting it out
# starts a person's turn seconds late instead of failing it; the price is that when
# PostgreSQL is stuck, requests queued behind the pool answer 503 a few seconds later.
POOL_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 2500
SESSION_OPTIONS = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c timezone=UTC"


def database_config(url: str, settings: Settings) -> dict[str, Any]:
    """Flask-SQLAlchemy's settings for the one engine every statement runs on."""
    return {
        "SQLALCHEMY_DATABASE_URI": url,
        "SQLALCHEMY_ENGINE_OPTIONS": {
            "pool_size": settings.database_pool_size,
            "max_overflow": settings.database_max_overflow,
            "pool_timeout": POOL_TIMEOUT_S,
            # Statements that fail are logged without their values: message contents
            # and keys never reach a log.
            "hide_parameters": True,
            "connect_args": connect_args(settings),
        },
    }


def connect_args(settings: Settings) -> dict[str, Any]:
    """psycopg's arguments for every pooled connection."""
    args: dict[str, Any] = {
        "connect_timeout": CONNECT_TIMEOUT_S,
        # UTC sessions hand back datetimes in datetime.UTC: no conversion to format them.
        # Behind PgBouncer, which does not pass `options` on, the pooler sets them
        # (README, "PgBouncer").
        "options": SESSION_OPTIONS,
    }
    if not settings.database_prepared_statements:
        # psycopg prepares a statement a connection has run five times; a transaction
        # pooler runs the next transaction on any server connection, where that prepared
        # statement does not exist (or another of the same name does).
        args["prepare_threshold"] = None
    return args


@contextmanager
def one_statement() -> Iterator[Connection]:
    """A pooled connection in autocommit, for a use case that is a single statement.

    A single statement is atomic on its own: it needs no BEGIN and COMMIT, which are two
    round trips to PostgreSQL out of three, nor the session's bookkeeping of a unit of
    work. The connection goes back to the pool after. With an audit event to write (a
    request made through impersonation), it is two statements, and a transaction.
    """
    if audit.pending() is not None:
        with transaction() as connection:
            yield connection
        return
    with db.engine.connect() as connection:
        yield connection.execution_options(isolation_level="AUTOCOMMIT")


@contextmanager
def transaction() -> Iterator[Connection]:
    """A pooled connection in a transaction, for a use case of several statements:
    committed when the block ends, rolled back if it raises.

    The request's pending audit event, if any, is written in it: the change and its
    record stand or fall together (florent/audit.py).
    """
    event = audit.pending()
    try:
        with db.engine.begin() as connection:
            if event is not None:
                audit.record(event, connection)
                audit.written()
            yield connection
    except BaseException:
        if event is not None:
            audit.expect(event)  # rolled back with the change: the request still happened
        raise


@cache
def _unpatched_poll() -> Callable[[], Any]:
    """select.poll as the standard library has it. Under gevent's patching, select.poll
    waits for gevent's hub to come round even with a zero timeout; `is_dead` never
    waits, so it needs no cooperation, only the answer."""
    if "gevent.monkey" in sys.modules:
        return sys.modules["gevent.monkey"].get_original("select", "poll")
    return select.poll


def init_database(app: Flask) -> None:
    """Discard dead connections as they leave the pool (call after db.init_app)."""
    with app.app_context():
        event.listen(db.engine, "checkout", _discard_if_dead)


def _discard_if_dead(dbapi_connection: PsycopgConnection, *_: Any) -> None:
    # SQLAlchemy's documented way to test a connection at checkout: raising
    # DisconnectionError makes the pool replace it and try again.
    if is_dead(dbapi_connection):
        raise DisconnectionError("the server closed this idle connection")


def is_dead(connection: PsycopgConnection) -> bool:
    """Whether a pooled, idle connection can no longer be used, without a round trip
    (pool_pre_ping would spend a SELECT 1 on every checkout).

    An idle connection has nothing to read: the server only speaks when asked. If its
    socket is readable, the server has closed it (a restart, a terminated backend) and
    said so, or sent something unasked; either way it is not one to hand to a request.
    """
    if connection.closed or connection.broken:
        return True
    if connection.info.transaction_status != TransactionStatus.IDLE:
        return True
    poller = _unpatched_poll()()  # not select(): it fails on descriptors above 1023
    poller.register(connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))
