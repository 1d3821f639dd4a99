"""Tickets to the conversation's WebSocket: a browser cannot put a bearer token on an
upgrade, so the client first mints a ticket with its token. A ticket is single-use, good
for a minute, bound to its caller and conversation; only its hash is stored.
"""

from __future__ import annotations

import base64
import hashlib
import math
import secrets
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, delete, func, insert, select

from ..auth import Caller
from ..auth.apikeys import key_is_live
from ..conversations.service import OWNED, ConversationNotFound, owner
from ..database import one_statement
from ..housekeeping import now_and_then
from ..ids import is_object_id
from ..models import API_KEY_IDENTITY_PREFIX, Conversation, SocketTicket

TICKET_SECONDS = 60
# Its organization in base64 (255 characters of up to four bytes each), a dot, its secret.
TICKET_MAX_CHARS = math.ceil(255 * 4 * 4 / 3) + 1 + 43
# Expired tickets are deleted this many at a time, until none is left.
PURGE_BATCH = 1000

MINT = (
    insert(SocketTicket)
    .from_select(
        [
            "ticket_hash",
            "org_id",
            "user_id",
            "conversation_id",
            "expires_at",
            "acting_key_id",
            "caller_valid_until",
        ],
        select(
            bindparam("ticket_hash"),
            Conversation.org_id,
            Conversation.user_id,
            Conversation.id,
            func.now() + timedelta(seconds=TICKET_SECONDS),
            bindparam("acting_key_id"),
            bindparam("caller_valid_until"),
        ).where(OWNED),
    )
    .returning(SocketTicket.conversation_id)
)
REDEEM = (
    delete(SocketTicket)
    .where(
        SocketTicket.org_id == bindparam("org_id"),
        SocketTicket.ticket_hash == bindparam("hash"),
        SocketTicket.conversation_id == bindparam("conversation_id"),
        SocketTicket.expires_at > func.now(),
    )
    .returning(
        SocketTicket.org_id,
        SocketTicket.user_id,
        SocketTicket.acting_key_id,
        SocketTicket.caller_valid_until,
    )
)
PURGE = delete(SocketTicket).where(
    SocketTicket.ticket_hash.in_(
        select(SocketTicket.ticket_hash)
        .where(SocketTicket.expires_at < func.now())
        .limit(PURGE_BATCH)
    )
)


def ticket_hash(ticket: str) -> bytes:
    return hashlib.sha256(ticket.encode()).digest()


def mint_ticket(caller: Caller, conversation_id: str) -> str:
    """A ticket for the caller's conversation; only its hash is stored. It names its
    organization, which every lookup of a person's data starts from (docs/scaling.md)."""
    organization = base64.urlsafe_b64encode(caller.org_id.encode()).rstrip(b"=").decode()
    ticket = f"{organization}.{secrets.token_urlsafe(32)}"
    params = {
        **owner(caller, conversation_id),
        "ticket_hash": ticket_hash(ticket),
        "acting_key_id": caller.api_key_id if caller.impersonating else None,
        "caller_valid_until": (
            None if caller.valid_until is None else datetime.fromtimestamp(caller.valid_until, UTC)
        ),
    }
    with one_statement() as connection:
        if connection.execute(MINT, params).first() is None:
            raise ConversationNotFound()
    now_and_then("socket tickets", purge_expired_tickets)
    return ticket


def purge_expired_tickets() -> int:
    """Delete every expired ticket, a batch per statement; returns how many. All of them,
    not a batch a minute: a caller may mint far more than that within their rate limit."""
    total = 0
    while True:
        with one_statement() as connection:
            deleted = connection.execute(PURGE).rowcount
        total += deleted
        if deleted < PURGE_BATCH:
            return total


def redeem_ticket(ticket: str, conversation_id: str) -> Caller | None:
    """The caller the ticket was minted for, if it is for this conversation, alive, and
    not minted by a key revoked since, nor by a session token expired since; it cannot be
    used again either way."""
    if not 0 < len(ticket) <= TICKET_MAX_CHARS:
        return None
    organization, dot, _ = ticket.partition(".")
    try:
        org_id = base64.urlsafe_b64decode(organization + "=" * (-len(organization) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    # No ticket was minted for a NUL, which PostgreSQL's text cannot even hold: refused
    # before the database. (A key's organization may hold spaces and commas.)
    if not dot or "\x00" in org_id or not is_object_id(conversation_id):
        return None
    params = {"org_id": org_id, "hash": ticket_hash(ticket), "conversation_id": conversation_id}
    with one_statement() as connection:
        row = connection.execute(REDEEM, params).first()
    if row is None:
        return None
    expiry = row.caller_valid_until
    valid_until = None if expiry is None else expiry.timestamp()
    if valid_until is not None and valid_until <= time.time():
        return None
    # The key that minted it: the one acting for the person, or the key acting as itself
    # (whose identity is `apikey_<id>`, which no person's may be).
    key_id = row.acting_key_id or _minting_key(row.user_id)
    if key_id is not None and not key_is_live(key_id):
        return None
    impersonating = row.acting_key_id is not None
    return Caller(
        org_id,
        row.user_id,
        api_key_id=key_id,
        impersonating=impersonating,
        valid_until=valid_until,
    )


def _minting_key(user_id: str) -> str | None:
    """The key whose own identity `user_id` is, if it is a key's."""
    if user_id.startswith(API_KEY_IDENTITY_PREFIX):
        return user_id.removeprefix(API_KEY_IDENTITY_PREFIX)
    return None
