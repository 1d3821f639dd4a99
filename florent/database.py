"""How the service holds its PostgreSQL connections: fail fast, recover by itself."""

from __future__ import annotations

import select
from typing import Any

from flask import Flask
from psycopg import Connection as PsycopgConnection
from psycopg.pq import TransactionStatus
from sqlalchemy import Connection, event
from sqlalchemy.exc import DisconnectionError

from .extensions import db

# When PostgreSQL is down or saturated, a request answers 503 in about 3 s instead
# of hanging.
CONNECT_TIMEOUT_S = 2
POOL_TIMEOUT_S = 2
STATEMENT_TIMEOUT_MS = 2500


# The engine of single-statement use cases (one_statement), beside the default one.
AUTOCOMMIT = "autocommit"


def database_config(url: str) -> dict[str, Any]:
    """Flask-SQLAlchemy's settings: the default engine, for the ORM session and
    transactions, and an autocommit engine with its own pool, for single statements."""
    options = {
        # No pool_pre_ping: its SELECT 1 is a round trip on every request. The
        # checkout check below finds a dead connection without one.
        "pool_pre_ping": False,
        "pool_timeout": POOL_TIMEOUT_S,
        "connect_args": {
            "connect_timeout": CONNECT_TIMEOUT_S,
            # UTC sessions hand back datetimes in datetime.UTC: no conversion to format them.
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c timezone=UTC",
        },
    }
    return {
        "SQLALCHEMY_DATABASE_URI": url,
        "SQLALCHEMY_ENGINE_OPTIONS": options,
        # Flask-SQLAlchemy does not apply SQLALCHEMY_ENGINE_OPTIONS to binds.
        "SQLALCHEMY_BINDS": {
            AUTOCOMMIT: {
                **options,
                "url": url,
                # Set once per connection rather than switched on at every checkout and
                # back off at every return (measured: about 48 us a request in-process).
                "isolation_level": "AUTOCOMMIT",
                # An autocommit connection has no transaction to roll back on return.
                "pool_reset_on_return": None,
            }
        },
    }


def one_statement() -> Connection:
    """A connection for a use case that is a single SQL statement, in autocommit.

    A single statement is atomic on its own, so it needs no BEGIN and COMMIT round
    trips; and a Core connection straight from the pool skips the ORM session's
    bookkeeping, which these use cases have no objects for. Use it in a `with` block:
    the connection goes back to the pool when the block ends.
    """
    return db.engines[AUTOCOMMIT].connect()


def init_database(app: Flask) -> None:
    """Discard dead connections as they leave the pool (call after db.init_app)."""
    with app.app_context():
        for engine in db.engines.values():
            event.listen(engine, "checkout", _discard_if_dead)


def _discard_if_dead(dbapi_connection: PsycopgConnection, *_: Any) -> None:
    if is_dead(dbapi_connection):
        # The pool replaces the connection and tries again; if PostgreSQL is down,
        # the new connection's error (OperationalError) reaches the request as a 503.
        raise DisconnectionError("the server closed this idle connection")


def is_dead(connection: PsycopgConnection) -> bool:
    """Whether a pooled, idle connection can no longer be used, without a round trip.

    An idle connection has nothing to read: the server only speaks when asked. If
    its socket is readable, the server has closed it (a restart, a shutdown, a
    terminated backend) and said so, or it sent something unasked; either way it is
    not a connection to hand to a request. A false alarm costs only a reconnect.
    """
    if connection.closed or connection.broken:
        return True
    if connection.info.transaction_status != TransactionStatus.IDLE:
        return True
    poller = select.poll()  # not select(): it fails on descriptors above 1023
    poller.register(connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))
