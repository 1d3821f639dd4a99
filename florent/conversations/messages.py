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
    Update,
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
from ..database import one_statement, transaction
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


@dataclass(frozen=True)
class MessageCount:
    """Count one more message on a conversation if each condition holds: an UPDATE that
    takes the conversation's row lock first, so concurrent writers queue behind each
    other (no lost count; one lock, so no deadlock). Built once, with the SELECT that
    tells which condition failed."""

    update: Update
    check: Select
    errors: tuple[type[Exception], ...]

    @classmethod
    def unless(
        cls, conditions: dict[type[Exception], ColumnElement[bool]], **also_set: Any
    ) -> MessageCount:
        changed_at = next_change_time()
        statement = (
            update(Conversation)
            .where(OWNED, *conditions.values())
            .values(
                message_count=Conversation.message_count + 1,
                last_message_at=changed_at,
                updated_at=changed_at,
                **also_set,
            )
            .returning(*CONVERSATION)
        )
        check = select(*(c.label(f"c{i}") for i, c in enumerate(conditions.values())))
        return cls(statement, check.where(OWNED), tuple(conditions))

    def __call__(self, connection: Connection, params: dict[str, Any]) -> Row[Any]:
        """The conversation, counted, in the connection's transaction; or raise the error
        of the first condition that does not hold (or ConversationNotFound)."""
        conversation = connection.execute(self.update, params).first()
        if conversation is not None:
            return conversation
        holds = connection.execute(self.check, params).first()
        if holds is None:
            raise ConversationNotFound()
        failed = [error for error, held in zip(self.errors, holds, strict=True) if not held]
        raise (failed or list(self.errors))[0]()


INSERT_MESSAGE = insert(Message).returning(*MESSAGE)
COUNT_APPENDED = MessageCount.unless(
    {ConversationFull: Conversation.message_count < bindparam("max_messages")}
)


def insert_message(
    connection: Connection,
    conversation: Row[Any],
    *,
    role: str,
    content: str,
    status: str = "complete",
) -> Row[Any]:
    """Insert a message counted on `conversation` by a MessageCount, at its change time."""
    return connection.execute(
        INSERT_MESSAGE,
        {
            "org_id": conversation.org_id,
            "id": new_object_id(),
            "conversation_id": conversation.id,
            "user_id": conversation.user_id,
            "role": role,
            "content": content,
            "status": status,
            "created_at": conversation.updated_at,
        },
    ).one()


def append_message(
    caller: Caller, conversation_id: str, *, content: str, max_messages: int
) -> tuple[Row[Any], Row[Any]]:
    """Add the caller's message and update the conversation's count and times, atomically."""
    params = {**owner(caller, conversation_id), "max_messages": max_messages}
    with transaction() as connection:
        conversation = COUNT_APPENDED(connection, params)
        message = insert_message(connection, conversation, role="user", content=content)
    return message, conversation
