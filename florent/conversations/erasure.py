"""Erasure: every conversation of a person, with everything that hangs from them.

Deleting a conversation deletes its messages, its idempotency keys and its socket
tickets with it (ON DELETE CASCADE). A person's conversations go a batch at a time, each
batch a transaction of its own, so no statement runs long or holds many locks, and an
erasure cut short is finished by running it again.
"""

from __future__ import annotations

from sqlalchemy import bindparam, delete, func, select

from ..auth import Caller
from ..database import one_statement
from ..models import Conversation, IdempotencyKey
from .service import CALLERS, NEWEST_FIRST

# A batch is at most this many conversations, and stops before this many of their
# messages (at least one conversation a batch, whatever it holds).
BATCH_CONVERSATIONS = 500
BATCH_MESSAGES = 50_000

# The person's next batch: their most recently updated conversations, as many as fit.
_NEXT = (
    select(
        Conversation.id,
        (
            func.sum(Conversation.message_count).over(order_by=NEWEST_FIRST)
            - Conversation.message_count
        ).label("messages_before"),
    )
    .where(CALLERS)
    .order_by(*NEWEST_FIRST)
    .limit(bindparam("batch_conversations"))
    .subquery("next")
)
ERASE_BATCH = delete(Conversation).where(
    Conversation.org_id == bindparam("caller_org"),
    Conversation.id.in_(
        select(_NEXT.c.id).where(_NEXT.c.messages_before < bindparam("batch_messages"))
    ),
)
# Keys whose create never finished (none outlive their transaction, but a person's
# erasure leaves nothing of theirs to chance).
ERASE_KEYS = delete(IdempotencyKey).where(
    IdempotencyKey.org_id == bindparam("caller_org"),
    IdempotencyKey.user_id == bindparam("caller_user"),
)


def erase_person(org_id: str, user_id: str) -> int:
    """Delete every conversation of the person `user_id` of organization `org_id`, and
    all that goes with them; returns how many conversations. Safe to repeat: nothing
    left, it returns 0."""
    params = {"caller_org": org_id, "caller_user": user_id}
    batch = {"batch_conversations": BATCH_CONVERSATIONS, "batch_messages": BATCH_MESSAGES}
    erased = 0
    while True:
        with one_statement() as connection:
            deleted = connection.execute(ERASE_BATCH, {**params, **batch}).rowcount
        if deleted == 0:
            break
        erased += deleted
    with one_statement() as connection:
        connection.execute(ERASE_KEYS, params)
    return erased


def erase_conversations(caller: Caller) -> int:
    """Delete all the caller's conversations; returns how many."""
    return erase_person(caller.org_id, caller.user_id)
