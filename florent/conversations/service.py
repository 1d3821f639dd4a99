"""Use cases on conversations (their messages: messages.py). Each is one transaction, or
one statement, ended here; every statement is scoped to the caller: a conversation owned
by anyone else, in any organization, does not exist for them.

The statements are built once, at import, with bound parameters: building one costs
more than running it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Executable, Row, bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy.sql.elements import ColumnElement

from .. import audit
from ..auth import Caller
from ..database import one_statement
from ..ids import is_object_id, new_object_id
from ..models import Conversation
from .cursors import Position

DEFAULT_TITLE = "New conversation"

CONVERSATION = tuple(
    Conversation.__table__.c[name]
    for name in (
        "id", "org_id", "user_id", "title", "model", "user_display", "timezone",
        "message_count", "last_message_at", "created_at", "updated_at", "reply_started_at",
    )
)  # fmt: skip


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


# The caller's own rows (:caller_org, :caller_user); named apart from any column, as
# SQLAlchemy asks of the parameters of an INSERT or UPDATE.
CALLERS = (Conversation.org_id == bindparam("caller_org")) & (
    Conversation.user_id == bindparam("caller_user")
)
# The conversation :conversation_id, if the caller owns it.
OWNED = (Conversation.id == bindparam("conversation_id")) & CALLERS
# The caller's conversations, most recently updated first. NULLS LAST, though neither
# column is ever null: only ix_conversations_owner_recent has this order, so the planner
# cannot walk everyone's conversations by last update (the admin's index) for one
# caller's page, past every newer conversation of other people, as it did for a caller
# who owns most of the table.
NEWEST_FIRST = (
    Conversation.updated_at.desc().nulls_last(),
    Conversation.id.desc().nulls_last(),
)


def caller_params(caller: Caller) -> dict[str, str]:
    return {"caller_org": caller.org_id, "caller_user": caller.user_id}


def owner(caller: Caller, conversation_id: str) -> dict[str, str]:
    """The parameters of OWNED; a malformed id is a conversation that does not exist."""
    if not is_object_id(conversation_id):
        raise ConversationNotFound()
    return {"conversation_id": conversation_id, **caller_params(caller)}


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


INSERT_CONVERSATION = insert(Conversation).returning(*CONVERSATION)
CALLERS_RECENT = (
    select(*CONVERSATION).where(CALLERS).order_by(*NEWEST_FIRST).limit(bindparam("limit"))
)
CALLERS_AFTER = CALLERS_RECENT.where(
    tuple_(Conversation.updated_at, Conversation.id)
    < tuple_(bindparam("after_at"), bindparam("after_id"))
)
FIND = select(*CONVERSATION).where(OWNED)
RENAME = (
    update(Conversation)
    .where(OWNED)
    .values(title=bindparam("new_title"), updated_at=next_change_time())
    .returning(*CONVERSATION)
)
DELETE = delete(Conversation).where(OWNED).returning(Conversation.id)


def create_conversation(caller: Caller, **fields: Any) -> Row[Any]:
    """Start a conversation owned by the caller; `fields` as new_conversation takes them."""
    values = new_conversation(caller, **fields)
    audit.name_target(values["id"])
    with one_statement() as connection:
        return connection.execute(INSERT_CONVERSATION, values).one()


def new_conversation(
    caller: Caller,
    *,
    model: str,
    title: str = DEFAULT_TITLE,
    user_display: str | None = None,
    timezone: str | None = None,
) -> dict[str, Any]:
    """The values of a new conversation of the caller's, for INSERT_CONVERSATION."""
    return {
        "id": new_object_id(),
        "org_id": caller.org_id,
        "user_id": caller.user_id,
        "title": title,
        "model": model,
        "user_display": user_display,
        "timezone": timezone,
    }


def list_conversations(caller: Caller, *, limit: int, after: Position | None) -> Page:
    """The caller's conversations, most recently updated first, one keyset page.

    Walks ix_conversations_owner_recent from the cursor: a page costs the same at any depth.
    """
    return recent_page(CALLERS_RECENT, CALLERS_AFTER, caller_params(caller), limit, after)


def recent_page(
    first: Executable,
    following: Executable,
    params: dict[str, Any],
    limit: int,
    after: Position | None,
) -> Page:
    """One page of conversations, most recently updated first: `first` from the top, or
    `following` from the cursor `after`."""
    # One extra row tells whether another page exists, without a count.
    params = {**params, "limit": limit + 1}
    statement = first
    if after is not None:
        statement, params = following, {**params, "after_at": after.at, "after_id": after.id}
    with one_statement() as connection:
        rows = connection.execute(statement, params).all()
    page = rows[:limit]
    more = len(rows) > limit
    return Page(page, Position(page[-1].updated_at, page[-1].id) if more else None)


def rename_conversation(caller: Caller, conversation_id: str, *, title: str) -> Row[Any]:
    params = {**owner(caller, conversation_id), "new_title": title}
    with one_statement() as connection:
        conversation = connection.execute(RENAME, params).first()
    if conversation is None:
        raise ConversationNotFound()
    return conversation


def delete_conversation(caller: Caller, conversation_id: str) -> None:
    """Delete the conversation; its messages and idempotency keys go with it (ON DELETE
    CASCADE)."""
    params = owner(caller, conversation_id)
    with one_statement() as connection:
        deleted = connection.execute(DELETE, params).first()
    if deleted is None:
        raise ConversationNotFound()
