"""How the service holds its PostgreSQL connections: fail fast, recover by itself."""

from __future__ import annotations

import select
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from flask import Flask
from psycopg import Connection as PsycopgConnection
from psycopg.pq import TransactionStatus
from psycopg.rows import RowFactory, args_row, tuple_row
from sqlalchemy import Connection, event
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.sql import Executable

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


@dataclass(frozen=True)
class DriverStatement:
    """A Core statement compiled once, to run straight on the driver (see `fetch`)."""

    sql: str
    row_factory: RowFactory[Any]

    @classmethod
    def of(cls, statement: Executable, row: Callable[..., Any] | None = None) -> DriverStatement:
        """`row` builds each row from its values, in the statement's column order;
        without it, rows are plain tuples."""
        sql = str(statement.compile(dialect=PGDialect_psycopg()))
        return cls(sql, args_row(row) if row else tuple_row)


def fetch(statement: DriverStatement, parameters: dict[str, Any]) -> list[Any]:
    """Run a single-statement use case's statement, in autocommit, and return its rows.

    For the statements on every hot path (create, list, get). A Core Connection costs
    70 to 90 us more a statement here (measured): an execution context, a result
    object, and psycopg describing every returned column again for it. The statement is
    still built and compiled by SQLAlchemy and the connection comes from its pool; only
    the execution is the driver's. Errors come out as SQLAlchemy's, as from a Connection,
    and a connection the error broke is not returned to the pool.
    """
    engine = db.engines[AUTOCOMMIT]
    connection = None
    try:
        connection = engine.raw_connection()
        with connection.driver_connection.cursor(row_factory=statement.row_factory) as cursor:
            cursor.execute(statement.sql, parameters, prepare=True)
            return cursor.fetchall()
    except psycopg.Error as error:
        invalidated = connection is not None and engine.dialect.is_disconnect(
            error, connection.driver_connection, None
        )
        if invalidated:
            connection.invalidate(error)
        raise DBAPIError.instance(
            statement.sql,
            parameters,
            error,
            psycopg.Error,
            connection_invalidated=invalidated,
            dialect=engine.dialect,
        ) from error
    finally:
        if connection is not None:
            connection.close()


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
