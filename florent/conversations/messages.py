"""Use cases on a conversation's messages: reading them a page at a time, and counting
a new one on its conversation as it is stored. Statements are built once, at import."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    Select,
    Update,
    bindparam,
    case,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from ..auth import Caller
from ..database import snapshot
from ..extensions import db
from ..ids import new_object_id
from ..models import Conversation, Message
from .cursors import Position
from .service import (
    CONVERSATION,
    FIND,
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


def _pages() -> tuple[Select, Select]:
    """A page of messages walking ix_messages_conversation_order backwards from the
    newest, or from a position; it stops at :limit rows or :budget bytes of content.

    The running total counts sizes without reading the contents (octet_length reads a
    stored value's header); only the contents of the messages returned are read.
    """
    newest_first = (Message.created_at.desc(), Message.id.desc())
    bytes_before = func.sum(func.octet_length(Message.content)).over(
        order_by=newest_first, rows=(None, -1)
    )
    walk = (
        select(*MESSAGE, func.coalesce(bytes_before, 0).label("bytes_before"))
        .where(Message.conversation_id == bindparam("conversation_id"))
        .order_by(*newest_first)
        .limit(bindparam("limit"))
    )
    before = tuple_(Message.created_at, Message.id) < tuple_(
        bindparam("before_at"), bindparam("before_id")
    )

    def page(walk: Select) -> Select:
        rows = walk.subquery()
        fits = rows.c.bytes_before < bindparam("budget")
        return select(
            rows.c.id,
            rows.c.conversation_id,
            rows.c.role,
            case((fits, rows.c.content)).label("content"),
            rows.c.status,
            rows.c.created_at,
            fits.label("fits"),
        ).order_by(rows.c.created_at.desc(), rows.c.id.desc())

    return page(walk), page(walk.where(before))


NEWEST_MESSAGES, MESSAGES_BEFORE = _pages()
FOUND = select(Conversation.id).where(OWNED)


def get_conversation(caller: Caller, conversation_id: str, *, messages_limit: int):
    """The conversation and its newest messages (oldest first), read in one snapshot."""
    params = owner(caller, conversation_id)
    with snapshot() as connection:
        conversation = connection.execute(FIND, params).first()
        if conversation is None:
            raise ConversationNotFound()
        messages = message_page(connection, conversation_id, limit=messages_limit, before=None)
    return conversation, messages


def list_messages(
    caller: Caller, conversation_id: str, *, limit: int, before: Position | None
) -> Page:
    """A page of the conversation's messages before `before` (the newest without it),
    oldest first."""
    params = owner(caller, conversation_id)
    with snapshot() as connection:
        if connection.execute(FOUND, params).first() is None:
            raise ConversationNotFound()
        return message_page(connection, conversation_id, limit=limit, before=before)


def message_page(
    connection: Connection, conversation_id: str, *, limit: int, before: Position | None
) -> Page:
    params = {"conversation_id": conversation_id, "limit": limit + 1, "budget": PAGE_CONTENT_BYTES}
    statement = NEWEST_MESSAGES
    if before is not None:
        statement, params = (
            MESSAGES_BEFORE,
            {**params, "before_at": before.at, "before_id": before.id},
        )
    rows = connection.execute(statement, params).all()
    page = [row for row in rows[:limit] if row.fits]
    more = len(rows) > len(page)
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

    def __call__(self, params: dict[str, Any]) -> Row[Any]:
        """The conversation, counted, in the session's transaction; or roll back and raise
        the error of the first condition that does not hold (or ConversationNotFound)."""
        conversation = db.session.execute(self.update, params).first()
        if conversation is not None:
            return conversation
        holds = db.session.execute(self.check, params).first()
        db.session.rollback()
        if holds is None:
            raise ConversationNotFound()
        failed = [error for error, held in zip(self.errors, holds, strict=True) if not held]
        raise (failed or list(self.errors))[0]()


INSERT_MESSAGE = insert(Message).returning(*MESSAGE)
COUNT_APPENDED = MessageCount.unless(
    {ConversationFull: Conversation.message_count < bindparam("max_messages")}
)


def insert_message(
    conversation: Row[Any], *, role: str, content: str, status: str = "complete"
) -> Row[Any]:
    """Insert a message counted on `conversation` by a MessageCount, at its change time."""
    return db.session.execute(
        INSERT_MESSAGE,
        {
            "id": new_object_id(),
            "conversation_id": conversation.id,
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
    conversation = COUNT_APPENDED({**owner(caller, conversation_id), "max_messages": max_messages})
    message = insert_message(conversation, role="user", content=content)
    db.session.commit()
    return message, conversation
