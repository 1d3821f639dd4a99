"""Export: all the caller's conversations with all their messages, as newline-delimited
JSON, one conversation a line, read in one snapshot and sent as it is read.

One statement, in a REPEATABLE READ transaction, read through a server-side cursor a
batch of rows at a time; a line is written out message by message, so neither the
process nor a line in the making ever holds more than a batch, whatever the caller has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import orjson
from sqlalchemy import Result, select
from sqlalchemy.orm import Session

from ..auth import Caller
from ..extensions import db
from ..models import Conversation, Message
from .messages import MESSAGE
from .schemas import dump_conversation, dump_message
from .service import CALLERS, CONVERSATION, caller_params

# Rows fetched from the server-side cursor at a time, and bytes sent at a time.
BATCH_ROWS = 500
CHUNK_BYTES = 64 * 1024


class ExportedMessage(NamedTuple):
    """A message of the export, read by position after the conversation's own columns."""

    id: str
    conversation_id: str
    role: str
    content: str
    status: str
    created_at: datetime


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
    .order_by(
        Conversation.updated_at.desc(), Conversation.id.desc(), Message.created_at, Message.id
    )
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
    Flask ends the request's session when the view returns, before a line is sent."""
    session = db.session.session_factory()
    try:
        connection = session.connection(
            execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        )
        rows = connection.execute(
            EXPORT, caller_params(caller), execution_options={"yield_per": BATCH_ROWS}
        )
    except BaseException:
        session.close()
        raise
    return Export(_lines(rows, session), session.close)


def _lines(rows: Result, session: Session) -> Iterator[bytes]:
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
                message = ExportedMessage._make(row[len(CONVERSATION) :])
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
        # goes back to the pool with its usual isolation level.
        session.close()
