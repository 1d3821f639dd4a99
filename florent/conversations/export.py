"""Export: all the caller's conversations with all their messages, as newline-delimited
JSON, one conversation a line, read in one snapshot and sent as it is read.

One statement (after the caller's lock), in a REPEATABLE READ transaction, read through
a server-side cursor a batch of rows at a time; a line is written out message by
message, so neither the process nor a line in the making ever holds more than a batch,
whatever the caller has.

An export holds a database connection for as long as the client takes to read it, so a
caller has one export at a time (a lock of the transaction's, so on every process and
instance), and a process gives exports at most half of its connections.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson
from flask import current_app
from sqlalchemy import Result, bindparam, func, select

from ..auth import Caller
from ..extensions import db
from ..models import Conversation, Message
from .messages import MESSAGE, JoinedMessage
from .schemas import dump_conversation, dump_message
from .service import CALLERS, CONVERSATION, NEWEST_FIRST, caller_params

# Rows fetched from the server-side cursor at a time, and bytes sent at a time.
BATCH_ROWS = 500
CHUNK_BYTES = 64 * 1024
# A fair first guess of how long an export takes, for Retry-After.
EXPORT_RETRY_AFTER = 10


class ExportInProgress(Exception):
    """The caller's previous export is still being sent."""

    retry_after = EXPORT_RETRY_AFTER


class TooManyExports(Exception):
    """This process already gives exports as many connections as it may."""

    retry_after = EXPORT_RETRY_AFTER


EXTENSION = "florent.exports"
# Held until the export's transaction ends, and released with it.
CALLERS_EXPORT = select(func.pg_try_advisory_xact_lock(func.hashtextextended(bindparam("lock"), 0)))


# A row per message, the conversation's columns first (a single row, without message,
# for an empty conversation): the conversations in the list's order, most recently
# updated first, walking ix_conversations_owner_recent, and each one's messages oldest
# first along ix_messages_conversation_order.
EXPORT = (
    select(*CONVERSATION, *(column.label(f"message_{column.name}") for column in MESSAGE))
    .select_from(Conversation)
    .outerjoin(
        Message,
        (Message.org_id == Conversation.org_id) & (Message.conversation_id == Conversation.id),
    )
    .where(CALLERS)
    .order_by(*NEWEST_FIRST, Message.created_at, Message.id)
)


@dataclass(frozen=True)
class Export:
    """The lines of an export, and what ends it: call `close` once the lines are sent,
    or were not (a client gone before the first)."""

    lines: Iterator[bytes]
    close: Callable[[], None]


def export_conversations(caller: Caller) -> Export:
    """The caller's conversations as NDJSON, in chunks of about CHUNK_BYTES: each line a
    conversation as the API shows it, with "messages": all of them, oldest first.

    The statement starts here, so a database that is down fails the request before any
    of it is sent. The lines come as the consumer reads them, on a session of their own:
    Flask ends the request's session when the view returns, before a line is sent.
    Raises ExportInProgress or TooManyExports, having taken nothing."""
    connections = _export_connections()
    if not connections.acquire(blocking=False):
        raise TooManyExports()
    session = db.session.session_factory()
    try:
        connection = session.connection(
            execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        )
        lock = f"florent-export {caller.org_id} {caller.user_id}"  # ids hold no spaces
        if not connection.execute(CALLERS_EXPORT, {"lock": lock}).scalar_one():
            raise ExportInProgress()
        rows = connection.execute(
            EXPORT, caller_params(caller), execution_options={"yield_per": BATCH_ROWS}
        )
    except BaseException:
        session.close()
        connections.release()
        raise
    finish = _once(session.close, connections.release)
    return Export(_lines(rows, finish), finish)


def _export_connections() -> threading.BoundedSemaphore:
    """This process's share of connections for exports: half of its pool."""
    share = current_app.extensions.get(EXTENSION)
    if share is None:
        pool = current_app.config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_size"]
        share = current_app.extensions.setdefault(
            EXTENSION, threading.BoundedSemaphore(max(1, pool // 2))
        )
    return share


def _once(*steps: Callable[[], None]) -> Callable[[], None]:
    """`steps`, run by the first call only: the server may close a response twice."""
    done = threading.Event()

    def run() -> None:
        if not done.is_set():
            done.set()
            for step in steps:
                step()

    return run


def _lines(rows: Result, finish: Callable[[], None]) -> Iterator[bytes]:
    try:
        out, current = bytearray(), None
        for row in rows:
            if row.id != current:
                if current is not None:
                    out += b"]}\n"
                current = row.id
                # The conversation's object, left open for its messages.
                out += orjson.dumps(dump_conversation(row))[:-1] + b',"messages":['
            elif row.message_id is not None:
                out += b","
            if row.message_id is not None:
                message = JoinedMessage._make(row[len(CONVERSATION) :])
                out += orjson.dumps(dump_message(message))
            if len(out) >= CHUNK_BYTES:
                yield bytes(out)
                out.clear()
        if current is not None:
            out += b"]}\n"
        if out:
            yield bytes(out)
    finally:
        # Closes the cursor and ends the transaction (nothing was written); the connection
        # goes back to the pool with its usual isolation level, and to exports' share.
        finish()
