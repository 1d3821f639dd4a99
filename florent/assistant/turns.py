"""A chat turn in the database: the person's message and the conversation's reply slot,
taken together; then Florent's reply stored, or the slot freed. Each use case is one
transaction, committed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Interval, Row, Select, String, bindparam, case, func, select, update

from ..auth import Caller
from ..config import Settings
from ..conversations.messages import MESSAGE, JoinedMessage, StoreMessage
from ..conversations.schemas import TITLE_MAX_LENGTH
from ..conversations.service import (
    CALLERS,
    CONVERSATION,
    DEFAULT_TITLE,
    OWNED,
    ConversationFull,
    ConversationNotFound,
    ReplyInProgress,
    owner,
)
from ..database import one_statement, transaction
from ..models import Conversation, Message, api_key_user_id
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


class NoReplyInProgress(Exception):
    """There is no reply to stop in this conversation."""


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

    message: JoinedMessage
    conversation: Row[Any]
    # The newest messages that fit the history budget, oldest first, ending with `message`.
    history: list[Row[Any]]

    @property
    def reply_started_at(self) -> datetime:
        """When this turn claimed the slot: it frees or fills the slot only if still its own."""
        return self.conversation.reply_started_at


# One caller's turns start one at a time, so the count of their replies cannot be outrun.
LOCK_CALLER = select(func.pg_advisory_xact_lock(func.hashtextextended(bindparam("lock"), 0)))
LIVE_SINCE = func.now() - bindparam("stale_after", type_=Interval)
# The API key calling, if one is: the caller whose replies are counted.
REPLYING_KEY = bindparam("replying_key", type_=String)
# Counted in the turn's statement, after the caller's lock: no other turn of theirs can
# claim a slot in between. A person's replies, or a key's whoever it acted for (only the
# branch the CASE takes runs).
REPLYING = case(
    (
        REPLYING_KEY.is_(None),
        select(func.count())
        .where(CALLERS, Conversation.reply_started_at > LIVE_SINCE)
        .scalar_subquery(),
    ),
    else_=select(func.count())
    .where(
        Conversation.org_id == bindparam("caller_org"),
        Conversation.reply_key_id == REPLYING_KEY,
        Conversation.reply_started_at > LIVE_SINCE,
    )
    .scalar_subquery(),
)
# Untitled: the default title, and never changed since created (a rename moves updated_at).
UNTITLED = (
    bindparam("derived_title", type_=String).is_not(None)
    & (Conversation.title == DEFAULT_TITLE)
    & (Conversation.updated_at == Conversation.created_at)
)
STORE_TURN = StoreMessage.unless(
    {
        TooManyReplies: REPLYING < bindparam("max_replies"),  # noqa: SIM300 (a subquery)
        ReplyInProgress: Conversation.reply_started_at.is_(None)
        | (Conversation.reply_started_at <= LIVE_SINCE),
        # Room for the message and for Florent's reply to it.
        ConversationFull: Conversation.message_count <= bindparam("max_messages") - 2,
    },
    reply_started_at=func.now(),
    reply_key_id=REPLYING_KEY,
    title=case((UNTITLED, bindparam("derived_title", type_=String)), else_=Conversation.title),
)
STORE_REPLY = StoreMessage.unless(
    {ConversationNotFound: Conversation.reply_started_at == bindparam("slot")},
    reply_started_at=None,
    reply_key_id=None,
)
ABANDON = (
    update(Conversation)
    .where(OWNED, Conversation.reply_started_at == bindparam("slot"))
    .values(reply_started_at=None, reply_key_id=None)
    .returning(*CONVERSATION)
)


REPLY_SLOT = select(
    Conversation.reply_started_at, (Conversation.reply_started_at > LIVE_SINCE).label("live")
).where(OWNED)


def _history() -> Select:
    """The newest messages whose contents fit in :history_chars, oldest first; the newest
    one always, whatever its length.

    A running sum in SQL over the conversation's order index, newest first, of lengths
    kept beside the contents: the contents of the messages left out are never read.
    """
    newest_first = (Message.created_at.desc(), Message.id.desc())
    chars_through = func.sum(Message.content_chars).over(order_by=newest_first, rows=(None, 0))
    walk = (
        select(*MESSAGE, Message.content_chars, chars_through.label("chars_through"))
        .where(
            Message.org_id == bindparam("caller_org"),
            Message.conversation_id == bindparam("conversation_id"),
        )
        .order_by(*newest_first)
        .limit(bindparam("max_messages"))
        .subquery()
    )
    return (
        select(*(walk.c[column.key] for column in MESSAGE))
        .where(
            (walk.c.chars_through <= bindparam("history_chars"))
            | (walk.c.chars_through == walk.c.content_chars)
        )
        .order_by(walk.c.created_at, walk.c.id)
    )


HISTORY = _history()


def start_turn(caller: Caller, conversation_id: str, *, content: str, limits: Limits) -> Turn:
    """Store the person's message and claim the conversation's reply slot, atomically.

    Nothing is stored when the caller has too many replies in progress (TooManyReplies),
    when the slot is held by a live turn (ReplyInProgress), or when the conversation has
    no room for the message and its reply (ConversationFull). The UPDATE takes the row
    lock first, as an append does, so two turns cannot both claim the slot. Three
    statements in the transaction: the caller's lock, the message counted and stored,
    the history.

    A conversation that still has the default title and has never changed since it was
    created is titled from this, its first message; a title the person set, even
    "New conversation", stays.
    """
    # A key is one caller, whoever it acts for, as its rate limit is: its replies are
    # counted (and its turns started) as the key's, a person's as the person's.
    key = caller.api_key_id
    counted_as = api_key_user_id(key) if key else caller.user_id
    params = {
        **owner(caller, conversation_id),
        "lock": f"florent-turns {caller.org_id} {counted_as}",  # ids hold no spaces
        "replying_key": key,
        "stale_after": limits.stale_after,
        "max_messages": limits.max_messages,
        "max_replies": limits.max_replies_in_progress,
        "history_chars": limits.history_chars,
        "derived_title": title_from_message(content, TITLE_MAX_LENGTH),
    }
    with transaction() as connection:
        connection.execute(LOCK_CALLER, params)
        message, conversation = STORE_TURN(connection, params, role="user", content=content)
        history = connection.execute(HISTORY, params).all()
    return Turn(message, conversation, list(history))


def finish_turn(
    caller: Caller,
    conversation_id: str,
    *,
    reply_started_at: datetime,
    content: str,
    status: str = "complete",
) -> tuple[JoinedMessage, Row[Any]]:
    """Store Florent's reply (complete, or stopped) and free the reply slot, atomically.

    Raises ConversationNotFound when the conversation was deleted during the turn (or
    the turn outlived its slot): the reply then has nowhere to go.
    """
    params = {**owner(caller, conversation_id), "slot": reply_started_at}
    with one_statement() as connection:
        return STORE_REPLY(connection, params, role="assistant", content=content, status=status)


def abandon_turn(caller: Caller, conversation_id: str, reply_started_at: datetime) -> Row[Any]:
    """Free the reply slot without a reply (the model failed, the client left, or the
    person stopped it before its first word); the conversation, or None if it is gone."""
    params = {**owner(caller, conversation_id), "slot": reply_started_at}
    with one_statement() as connection:
        return connection.execute(ABANDON, params).first()


def reply_in_progress(caller: Caller, conversation_id: str, limits: Limits) -> datetime:
    """When the conversation's reply in progress took its slot (what names the reply to
    stop); NoReplyInProgress when there is none, or only a dead turn's."""
    params = {**owner(caller, conversation_id), "stale_after": limits.stale_after}
    with one_statement() as connection:
        slot = connection.execute(REPLY_SLOT, params).first()
    if slot is None:
        raise ConversationNotFound()
    if not slot.live:
        raise NoReplyInProgress()
    return slot.reply_started_at
