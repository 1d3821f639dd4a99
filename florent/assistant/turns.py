"""A chat turn in the database: the person's message and the conversation's reply slot,
taken together; then Florent's reply stored, or the slot freed. Each use case is one
transaction, committed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, case, func, select, update

from ..auth import Caller
from ..config import Settings
from ..conversations.schemas import TITLE_MAX_LENGTH
from ..conversations.service import (
    DEFAULT_TITLE,
    MESSAGE,
    ConversationFull,
    ConversationNotFound,
    ReplyInProgress,
    checked_id,
    count_message,
    insert_message,
    owned_by,
)
from ..extensions import db
from ..models import Conversation, Message
from .prompt import title_from_message

# A turn holds its conversation's reply slot for at most the reply's deadline plus one
# last read and the database writes; past this margin on top, a slot is a dead turn's.
REPLY_SLOT_MARGIN = timedelta(seconds=30)
# What a client is told to wait when it has too many replies in progress: replies take
# seconds, so a few seconds is a fair first guess.
TOO_MANY_REPLIES_RETRY_AFTER = 5


class TooManyReplies(Exception):
    """The caller already has as many replies in progress as they may."""

    retry_after = TOO_MANY_REPLIES_RETRY_AFTER


class AssistantUnavailable(Exception):
    """Florent gave no reply; the person's message (`message`) is stored all the same."""

    def __init__(self, reason: str, message: Row[Any] | None = None):
        super().__init__(reason)
        self.message = message


@dataclass(frozen=True)
class Limits:
    """How far one caller and one conversation may go, from the settings."""

    max_messages: int
    max_replies_in_progress: int
    history_chars: int
    # A reply slot older than this belongs to a turn whose process died.
    stale_after: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        # The slot must outlast any live turn: the deadline, one more read that was
        # already waiting when it passed, the connection, and the database writes.
        longest_turn = (
            settings.llm_turn_timeout + settings.llm_read_timeout + settings.llm_connect_timeout
        )
        return cls(
            max_messages=settings.max_messages,
            max_replies_in_progress=settings.max_replies_in_progress,
            history_chars=settings.llm_history_chars,
            stale_after=timedelta(seconds=longest_turn) + REPLY_SLOT_MARGIN,
        )


@dataclass(frozen=True)
class Turn:
    """The person's stored message, and the conversation's reply slot held for Florent."""

    message: Row[Any]
    conversation: Row[Any]
    # The newest messages that fit the history budget, oldest first, ending with `message`.
    history: list[Row[Any]]

    @property
    def reply_started_at(self) -> datetime:
        """When this turn claimed the slot: it frees or fills the slot only if still its own."""
        return self.conversation.reply_started_at


def start_turn(caller: Caller, conversation_id: str, *, content: str, limits: Limits) -> Turn:
    """Store the person's message and claim the conversation's reply slot, atomically.

    Nothing is stored when the caller has too many replies in progress (TooManyReplies),
    when the slot is held by a live turn (ReplyInProgress), or when the conversation has
    no room for the message and its reply (ConversationFull). The UPDATE takes the row
    lock first, as append_message does, so two turns cannot both claim the slot.

    A conversation that still has the default title and has never changed since it was
    created (no message, no rename: a rename always moves `updated_at`) is titled from
    this, its first message; a title the person set, even "New conversation", stays.
    """
    conversation_id = checked_id(conversation_id)
    live_since = func.now() - limits.stale_after
    # One caller's turns start one at a time, so the count below cannot be outrun.
    db.session.execute(
        select(func.pg_advisory_xact_lock(func.hashtextextended(caller_lock_key(caller), 0)))
    )
    replying = db.session.scalar(
        select(func.count()).where(
            Conversation.org_id == caller.org_id,
            Conversation.user_id == caller.user_id,
            Conversation.reply_started_at > live_since,
        )
    )
    if replying >= limits.max_replies_in_progress:
        db.session.rollback()
        raise TooManyReplies()

    values: dict[str, Any] = {"reply_started_at": func.now()}
    title = title_from_message(content, TITLE_MAX_LENGTH)
    if title is not None:
        untouched = (Conversation.title == DEFAULT_TITLE) & (
            Conversation.updated_at == Conversation.created_at
        )
        values["title"] = case((untouched, title), else_=Conversation.title)
    conversation = count_message(
        caller,
        conversation_id,
        unless={
            ReplyInProgress: Conversation.reply_started_at.is_(None)
            | (Conversation.reply_started_at <= live_since),
            # Room for the message and for Florent's reply to it.
            ConversationFull: Conversation.message_count <= limits.max_messages - 2,
        },
        also_set=values,
    )
    message = insert_message(conversation, role="user", content=content)
    history = recent_history(conversation_id, limits)
    db.session.commit()
    return Turn(message, conversation, history)


def caller_lock_key(caller: Caller) -> str:
    return f"florent-turns {caller.org_id} {caller.user_id}"  # ids hold no spaces


def recent_history(conversation_id: str, limits: Limits) -> list[Row[Any]]:
    """The newest messages whose contents fit in the history budget, oldest first; the
    newest one always, whatever its length.

    A running sum in SQL over the conversation's order index, newest first: the contents
    of the messages left out are never read.
    """
    newest_first = (Message.created_at.desc(), Message.id.desc())
    walk = (
        select(
            *MESSAGE,
            Message.content_chars,
            func.sum(Message.content_chars)
            .over(order_by=newest_first, rows=(None, 0))
            .label("chars_through"),
        )
        .where(Message.conversation_id == conversation_id)
        .order_by(*newest_first)
        .limit(limits.max_messages)
        .subquery()
    )
    rows = db.session.execute(
        select(*(walk.c[column.key] for column in MESSAGE))
        .where(
            (walk.c.chars_through <= limits.history_chars)
            | (walk.c.chars_through == walk.c.content_chars)
        )
        .order_by(walk.c.created_at, walk.c.id)
    ).all()
    return list(rows)


def finish_turn(
    caller: Caller, conversation_id: str, *, reply_started_at: datetime, content: str
) -> tuple[Row[Any], Row[Any]]:
    """Store Florent's reply and free the reply slot, atomically.

    Raises ConversationNotFound when the conversation was deleted during the turn (or
    the turn outlived its slot): the reply then has nowhere to go.
    """
    conversation = count_message(
        caller,
        conversation_id,
        unless={ConversationNotFound: Conversation.reply_started_at == reply_started_at},
        also_set={"reply_started_at": None},
    )
    message = insert_message(conversation, role="assistant", content=content)
    db.session.commit()
    return message, conversation


def abandon_turn(caller: Caller, conversation_id: str, *, reply_started_at: datetime) -> None:
    """Free the reply slot without a reply (the model failed, or the client left)."""
    db.session.execute(
        update(Conversation)
        .where(owned_by(caller, conversation_id))
        .where(Conversation.reply_started_at == reply_started_at)
        .values(reply_started_at=None)
    )
    db.session.commit()
