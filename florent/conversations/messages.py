"""Use cases on a conversation's messages: reading them a page at a time, and counting
a new one on its conversation as it is stored. Statements are built once, at import."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    Connection,
    Row,
    Select,
    bindparam,
    case,
    exists,
    func,
    insert,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from ..auth import Caller
from ..database import one_statement
from ..ids import new_object_id
from ..models import Conversation, Message
from .cursors import Position
from .service import (
    CONVERSATION,
    OWNED,
    ConversationFull,
    ConversationNotFound,
    Page,
    next_change_time,
    owner,
)

# A page of messages carries at most this much content (and always one message), so a
# response stays a few MiB whatever the messages hold.
PAGE_CONTENT_BYTES = 4 * 1024 * 1024

MESSAGE = (
    Message.id,
    Message.conversation_id,
    Message.role,
    Message.content,
    Message.status,
    Message.created_at,
)


class MessageRow(NamedTuple):
    """A message of a page, read by position after the conversation's own columns."""

    id: str
    conversation_id: str
    role: str
    status: str
    created_at: datetime
    content: str | None  # None past the page's byte budget
    fits: bool


def _walk(
    org_id: ColumnElement[str], conversation_id: ColumnElement[str], *, before: bool
) -> Select:
    """A conversation's messages, newest first: a walk of ix_messages_conversation_order
    backwards from the newest or from :before_at/:before_id, at most :limit rows, each with
    the bytes of content before it.

    The running total counts sizes without reading the contents (octet_length reads a
    stored value's header); only the contents of the messages returned are read.
    """
    newest_first = (Message.created_at.desc(), Message.id.desc())
    bytes_before = func.sum(func.octet_length(Message.content)).over(
        order_by=newest_first, rows=(None, -1)
    )
    walk = select(*MESSAGE, func.coalesce(bytes_before, 0).label("bytes_before")).where(
        Message.org_id == org_id, Message.conversation_id == conversation_id
    )
    if before:
        walk = walk.where(
            tuple_(Message.created_at, Message.id)
            < tuple_(bindparam("before_at"), bindparam("before_id"))
        )
    return walk.order_by(*newest_first).limit(bindparam("limit"))


def _page_columns(rows: Any) -> list[ColumnElement[Any]]:
    """A walk's columns as MessageRow reads them: past :budget bytes, no content."""
    fits = rows.c.bytes_before < bindparam("budget")
    return [
        *(rows.c[name].label(f"message_{name}") for name in MessageRow._fields[:-2]),
        case((fits, rows.c.content)).label("message_content"),
        fits.label("fits"),
    ]


# The conversation and its newest messages in one statement, so in one snapshot: a row
# per message, the conversation's columns first; a single row when it has none. (Rows are
# put in order in Python: a Sort in SQL would carry every message's content.)
_NEWEST = _walk(Conversation.org_id, Conversation.id, before=False).lateral("newest")
WITH_NEWEST = (
    select(*CONVERSATION, *_page_columns(_NEWEST))
    .select_from(Conversation)
    .outerjoin(_NEWEST, true())
    .where(OWNED)
)
# An earlier page of a conversation, if it is the caller's.
_EARLIER = _walk(bindparam("caller_org"), bindparam("conversation_id"), before=True).subquery(
    "earlier"
)
EARLIER = select(*_page_columns(_EARLIER)).where(exists(select(Conversation.id).where(OWNED)))
FOUND = select(Conversation.id).where(OWNED)


def get_conversation(caller: Caller, conversation_id: str, *, messages_limit: int):
    """The conversation and its newest messages (oldest first), read in one statement."""
    params = {**owner(caller, conversation_id), "limit": messages_limit + 1}
    with one_statement() as connection:
        rows = connection.execute(WITH_NEWEST, {**params, "budget": PAGE_CONTENT_BYTES}).all()
    if not rows:
        raise ConversationNotFound()
    found = [
        MessageRow._make(row[len(CONVERSATION) :]) for row in rows if row.message_id is not None
    ]
    # The conversation's columns come first in each row: the row dumps as the conversation.
    return rows[0], _page_of(found, messages_limit)


def list_messages(
    caller: Caller, conversation_id: str, *, limit: int, before: Position | None
) -> Page:
    """A page of the conversation's messages before `before` (the newest without it),
    oldest first."""
    params = {**owner(caller, conversation_id), "limit": limit + 1, "budget": PAGE_CONTENT_BYTES}
    if before is None:  # the newest page, as get gives it
        return get_conversation(caller, conversation_id, messages_limit=limit)[1]
    params |= {"before_at": before.at, "before_id": before.id}
    with one_statement() as connection:
        found = [MessageRow._make(row) for row in connection.execute(EARLIER, params)]
        if not found and connection.execute(FOUND, params).first() is None:
            raise ConversationNotFound()
    return _page_of(found, limit)


def _page_of(found: list[MessageRow], limit: int) -> Page:
    """The page that `limit` and the byte budget allow, oldest first, and where the next
    (earlier) one starts."""
    found.sort(key=lambda message: (message.created_at, message.id), reverse=True)
    page = [message for message in found[:limit] if message.fits]
    more = len(found) > len(page)
    page.reverse()
    return Page(page, Position(page[0].created_at, page[0].id) if more else None)


# -- Storing a message ---------------------------------------------------------------


class JoinedMessage(NamedTuple):
    """A message's MESSAGE columns, read by position after its conversation's own in a
    joined row."""

    id: str
    conversation_id: str
    role: str
    content: str
    status: str
    created_at: datetime


@dataclass(frozen=True)
class StoreMessage:
    """Store a message and count it on its conversation, in one statement, if each
    condition holds. The UPDATE takes the conversation's row lock first, so concurrent
    writers queue behind each other (no lost count; one lock, so no deadlock), and the
    INSERT reads the counted row, so nothing is stored when a condition fails. One
    statement is one round trip, atomic without a transaction of its own. Built once,
    with the SELECT that tells which condition failed."""

    store: Select
    check: Select
    errors: tuple[type[Exception], ...]

    @classmethod
    def unless(
        cls, conditions: dict[type[Exception], ColumnElement[bool]], **also_set: Any
    ) -> StoreMessage:
        changed_at = next_change_time()
        counted = (
            update(Conversation)
            .where(OWNED, *conditions.values())
            .values(
                message_count=Conversation.message_count + 1,
                last_message_at=changed_at,
                updated_at=changed_at,
                **also_set,
            )
            .returning(*CONVERSATION)
            .cte("counted")
        )
        message = {
            "id": bindparam("message_id"),
            "org_id": counted.c.org_id,
            "conversation_id": counted.c.id,
            "user_id": counted.c.user_id,
            "role": bindparam("role"),
            "content": bindparam("content"),
            "status": bindparam("status"),
            "created_at": counted.c.updated_at,  # the conversation's change time
        }
        stored = (
            insert(Message)
            .from_select(list(message), select(*message.values()))
            .returning(*MESSAGE)
            .cte("stored")
        )
        # The conversation's columns first, as get reads them, then the message's.
        statement = select(
            *counted.c, *(column.label(f"message_{column.key}") for column in stored.c)
        ).select_from(counted.join(stored, true()))
        check = select(*(c.label(f"c{i}") for i, c in enumerate(conditions.values())))
        return cls(statement, check.where(OWNED), tuple(conditions))

    def __call__(
        self,
        connection: Connection,
        params: dict[str, Any],
        *,
        role: str,
        content: str,
        status: str = "complete",
    ) -> tuple[JoinedMessage, Row[Any]]:
        """The message stored and its conversation, counted; or raise the error of the
        first condition that does not hold (or ConversationNotFound)."""
        stored = {"message_id": new_object_id(), "role": role, "content": content}
        # Twice at most: a condition that failed the store may hold by the check (a reply
        # slot freed in between), and then the store goes through.
        for _ in range(2):
            row = connection.execute(self.store, {**params, **stored, "status": status}).first()
            if row is not None:
                # The row dumps as the conversation: its own columns come first.
                return JoinedMessage._make(row[len(CONVERSATION) :]), row
            holds = connection.execute(self.check, params).first()
            if holds is None:
                raise ConversationNotFound()
            failed = [error for error, held in zip(self.errors, holds, strict=True) if not held]
            if failed:
                raise failed[0]()
        raise self.errors[0]()  # changed under both tries: refused as by the first condition


STORE_APPENDED = StoreMessage.unless(
    {ConversationFull: Conversation.message_count < bindparam("max_messages")}
)


def append_message(
    caller: Caller, conversation_id: str, *, content: str, max_messages: int
) -> tuple[JoinedMessage, Row[Any]]:
    """Add the caller's message and update the conversation's count and times, atomically."""
    params = {**owner(caller, conversation_id), "max_messages": max_messages}
    with one_statement() as connection:
        return STORE_APPENDED(connection, params, role="user", content=content)
