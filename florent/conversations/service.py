"""Use cases on conversations and their messages. Each is one transaction, committed
(or ended) here, and every statement is scoped to the caller: a conversation owned by
anyone else, in any organization, does not exist for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, bindparam, case, delete, func, insert, select, tuple_, update
from sqlalchemy.sql.elements import ColumnElement

from ..auth import Caller
from ..database import snapshot
from ..extensions import db
from ..ids import is_object_id, new_object_id
from ..models import Conversation, Message
from .cursors import Position

DEFAULT_TITLE = "New conversation"
# A page of messages carries at most this much content (and always one message), so a
# response stays a few MiB whatever the messages hold.
PAGE_CONTENT_BYTES = 4 * 1024 * 1024

CONVERSATION = tuple(
    Conversation.__table__.c[name]
    for name in (
        "id", "org_id", "user_id", "title", "model", "user_display", "timezone",
        "message_count", "last_message_at", "created_at", "updated_at", "reply_started_at",
    )
)  # fmt: skip
MESSAGE = (Message.id, Message.conversation_id, Message.role, Message.content, Message.created_at)


class ConversationNotFound(Exception):
    """Unknown, malformed, or owned by someone else: the caller cannot tell which."""


class ConversationFull(Exception):
    """The conversation holds as many messages as it may."""


class ReplyInProgress(Exception):
    """Florent is still replying in this conversation: one turn at a time."""


@dataclass(frozen=True)
class Page:
    """Rows of a keyset page, and where the next page starts (None: there is none)."""

    rows: list[Row[Any]]
    next: Position | None


def owned_by(caller: Caller, conversation_id: str) -> ColumnElement[bool]:
    return (
        (Conversation.id == conversation_id)
        & (Conversation.org_id == caller.org_id)
        & (Conversation.user_id == caller.user_id)
    )


def next_change_time() -> ColumnElement[datetime]:
    """Now, at millisecond precision, but always after the previous change.

    Two changes within one millisecond still move `updated_at` forward, and so keep a
    conversation's messages and updates in a strict order. `now()` is fixed for the
    transaction, so every use of this within one statement is the same time.
    """
    return func.greatest(
        func.date_trunc("milliseconds", func.now()),
        Conversation.updated_at + timedelta(milliseconds=1),
    )


def checked_id(conversation_id: str) -> str:
    if not is_object_id(conversation_id):
        raise ConversationNotFound()
    return conversation_id


# The hottest statements are built once; each request binds its values.
INSERT_CONVERSATION = insert(Conversation).returning(*CONVERSATION)
CALLERS_RECENT = (
    select(*CONVERSATION)
    .where(Conversation.org_id == bindparam("org_id"), Conversation.user_id == bindparam("user_id"))
    .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
    .limit(bindparam("limit"))
)
AFTER_POSITION = tuple_(Conversation.updated_at, Conversation.id) < tuple_(
    bindparam("at"), bindparam("id")
)


def create_conversation(caller: Caller, **fields: Any) -> Row[Any]:
    """Start a conversation owned by the caller; `fields` as insert_conversation takes them."""
    conversation = insert_conversation(caller, **fields)
    db.session.commit()
    return conversation


def insert_conversation(
    caller: Caller,
    *,
    model: str,
    title: str = DEFAULT_TITLE,
    user_display: str | None = None,
    timezone: str | None = None,
) -> Row[Any]:
    """The new conversation's row, in the session's transaction (not committed)."""
    return db.session.execute(
        INSERT_CONVERSATION,
        {
            "id": new_object_id(),
            "org_id": caller.org_id,
            "user_id": caller.user_id,
            "title": title,
            "model": model,
            "user_display": user_display,
            "timezone": timezone,
        },
    ).one()


def list_conversations(caller: Caller, *, limit: int, after: Position | None) -> Page:
    """The caller's conversations, most recently updated first, one keyset page.

    Walks ix_conversations_owner_recent from the cursor: a page costs the same at any depth.
    """
    statement = CALLERS_RECENT if after is None else CALLERS_RECENT.where(AFTER_POSITION)
    params = {"org_id": caller.org_id, "user_id": caller.user_id, "limit": limit + 1}
    if after is not None:
        params |= {"at": after.at, "id": after.id}
    rows = db.session.execute(statement, params).all()
    db.session.rollback()
    # The extra row tells whether another page exists, without a count.
    page = rows[:limit]
    more = len(rows) > limit
    return Page(page, Position(page[-1].updated_at, page[-1].id) if more else None)


def get_conversation(caller: Caller, conversation_id: str, *, messages_limit: int):
    """The conversation and its newest messages (oldest first), read in one snapshot."""
    connection = snapshot()
    conversation = connection.execute(
        select(*CONVERSATION).where(owned_by(caller, checked_id(conversation_id)))
    ).first()
    if conversation is None:
        db.session.rollback()
        raise ConversationNotFound()
    messages = _message_page(connection, conversation_id, limit=messages_limit, before=None)
    db.session.rollback()
    return conversation, messages


def list_messages(
    caller: Caller, conversation_id: str, *, limit: int, before: Position | None
) -> Page:
    """A page of the conversation's messages before `before` (the newest without it),
    oldest first."""
    connection = snapshot()
    found = connection.execute(
        select(Conversation.id).where(owned_by(caller, checked_id(conversation_id)))
    ).first()
    if found is None:
        db.session.rollback()
        raise ConversationNotFound()
    page = _message_page(connection, conversation_id, limit=limit, before=before)
    db.session.rollback()
    return page


def _message_page(connection, conversation_id: str, *, limit: int, before: Position | None) -> Page:
    """Walks ix_messages_conversation_order backwards from `before`; a page stops at
    `limit` messages or PAGE_CONTENT_BYTES of content, whichever comes first.

    The running total counts sizes without reading the contents (octet_length reads a
    stored value's header); only the contents of the messages returned are read.
    """
    newest_first = (Message.created_at.desc(), Message.id.desc())
    bytes_before = func.sum(func.octet_length(Message.content)).over(
        order_by=newest_first, rows=(None, -1)
    )
    walk = select(*MESSAGE, func.coalesce(bytes_before, 0).label("bytes_before")).where(
        Message.conversation_id == conversation_id
    )
    if before is not None:
        walk = walk.where(tuple_(Message.created_at, Message.id) < tuple_(before.at, before.id))
    walk = walk.order_by(*newest_first).limit(limit + 1).subquery()
    fits = walk.c.bytes_before < PAGE_CONTENT_BYTES
    rows = connection.execute(
        select(
            walk.c.id,
            walk.c.conversation_id,
            walk.c.role,
            case((fits, walk.c.content)).label("content"),
            walk.c.created_at,
            fits.label("fits"),
        ).order_by(walk.c.created_at.desc(), walk.c.id.desc())
    ).all()
    page = [row for row in rows[:limit] if row.fits]
    more = len(rows) > len(page)
    page.reverse()
    return Page(page, Position(page[0].created_at, page[0].id) if more else None)


def rename_conversation(caller: Caller, conversation_id: str, *, title: str) -> Row[Any]:
    conversation = db.session.execute(
        update(Conversation)
        .where(owned_by(caller, checked_id(conversation_id)))
        .values(title=title, updated_at=next_change_time())
        .returning(*CONVERSATION)
    ).first()
    db.session.commit()
    if conversation is None:
        raise ConversationNotFound()
    return conversation


def delete_conversation(caller: Caller, conversation_id: str) -> None:
    """Delete the conversation; its messages and idempotency keys go with it (ON DELETE
    CASCADE)."""
    deleted = db.session.execute(
        delete(Conversation)
        .where(owned_by(caller, checked_id(conversation_id)))
        .returning(Conversation.id)
    ).first()
    db.session.commit()
    if deleted is None:
        raise ConversationNotFound()


def append_message(
    caller: Caller, conversation_id: str, *, content: str, max_messages: int
) -> tuple[Row[Any], Row[Any]]:
    """Add the caller's message and update the conversation's count and times, atomically."""
    conversation = count_message(
        caller,
        checked_id(conversation_id),
        unless={ConversationFull: Conversation.message_count < max_messages},
    )
    message = insert_message(conversation, role="user", content=content)
    db.session.commit()
    return message, conversation


def count_message(
    caller: Caller,
    conversation_id: str,
    *,
    unless: dict[type[Exception], ColumnElement[bool]],
    also_set: dict[str, Any] | None = None,
) -> Row[Any]:
    """Count one more message on the conversation if every condition of `unless` holds;
    otherwise roll back and raise the error of the first that does not.

    The UPDATE takes the conversation's row lock first, so concurrent writers queue
    behind each other: no lost count, and one lock means no deadlock.
    """
    changed_at = next_change_time()
    conversation = db.session.execute(
        update(Conversation)
        .where(owned_by(caller, conversation_id), *unless.values())
        .values(
            message_count=Conversation.message_count + 1,
            last_message_at=changed_at,
            updated_at=changed_at,
            **(also_set or {}),
        )
        .returning(*CONVERSATION)
    ).first()
    if conversation is not None:
        return conversation
    holds = db.session.execute(
        select(*(condition.label(f"c{i}") for i, condition in enumerate(unless.values()))).where(
            owned_by(caller, conversation_id)
        )
    ).first()
    db.session.rollback()
    if holds is None:
        raise ConversationNotFound()
    failed = [error for error, held in zip(unless, holds, strict=True) if not held]
    raise (failed or list(unless))[0]()


def insert_message(conversation: Row[Any], *, role: str, content: str) -> Row[Any]:
    """Insert a message counted on `conversation` by count_message, at its change time."""
    return db.session.execute(
        insert(Message)
        .values(
            id=new_object_id(),
            conversation_id=conversation.id,
            role=role,
            content=content,
            created_at=conversation.updated_at,
        )
        .returning(*MESSAGE)
    ).one()
