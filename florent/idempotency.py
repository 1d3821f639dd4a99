"""Idempotent create (the IETF `Idempotency-Key` header draft).

The key's row, the conversation and the stored response are written in one
transaction. A concurrent request with the same key blocks on the key's unique
index until that transaction ends, then finds the committed response and replays
it: at most one conversation per (caller, key), with no "in flight" state to
clean up after a crash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert

from .auth import Caller
from .conversations import INSERT_CONVERSATION, ConversationRow, new_conversation
from .extensions import db
from .models import IdempotencyKey

KEY_LIFETIME = timedelta(hours=24)


class IdempotencyKeyReused(Exception):
    """The key was already used, within its lifetime, for a different request."""


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes
    replayed: bool


def request_fingerprint(fields: dict[str, Any]) -> bytes:
    """The validated request, canonically: whitespace or key order do not make a new request."""
    return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).digest()


def create_conversation_once(
    caller: Caller,
    key: str,
    fields: dict[str, Any],
    *,
    model: str,
    render: Callable[[ConversationRow], bytes],
) -> StoredResponse:
    """Create the conversation unless this caller already did with this key.

    `render` turns the new conversation into the 201 body that is stored and
    replayed byte for byte.
    """
    fingerprint = request_fingerprint(fields)
    claimed = db.session.execute(
        insert(IdempotencyKey)
        .values(org_id=caller.org_id, user_id=caller.user_id, key=key, request_hash=fingerprint)
        # An expired key is claimed afresh, as if it had never been used.
        .on_conflict_do_update(
            index_elements=["org_id", "user_id", "key"],
            set_={
                "request_hash": fingerprint,
                "created_at": func.date_trunc("milliseconds", func.now()),
                "response_status": None,
                "response_body": None,
            },
            where=IdempotencyKey.created_at < func.now() - KEY_LIFETIME,
        )
        .returning(IdempotencyKey.key)
    ).first()

    if claimed is None:
        stored = db.session.execute(
            select(
                IdempotencyKey.request_hash,
                IdempotencyKey.response_status,
                IdempotencyKey.response_body,
            ).where(
                IdempotencyKey.org_id == caller.org_id,
                IdempotencyKey.user_id == caller.user_id,
                IdempotencyKey.key == key,
            )
        ).one()
        db.session.rollback()
        if stored.request_hash != fingerprint:
            raise IdempotencyKeyReused()
        return StoredResponse(stored.response_status, stored.response_body, replayed=True)

    # In this transaction, with the key's row: the ORM session's connection, not the driver's.
    new = new_conversation(caller, model=model, **fields)
    body = render(ConversationRow._make(db.session.execute(INSERT_CONVERSATION, new).one()))
    db.session.execute(
        IdempotencyKey.__table__.update()
        .where(
            IdempotencyKey.org_id == caller.org_id,
            IdempotencyKey.user_id == caller.user_id,
            IdempotencyKey.key == key,
        )
        .values(response_status=201, response_body=body)
    )
    db.session.commit()
    return StoredResponse(201, body, replayed=False)


def purge_expired_keys() -> int:
    """Delete keys past their lifetime; returns how many."""
    deleted = db.session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at < func.now() - KEY_LIFETIME)
    ).rowcount
    db.session.commit()
    return deleted
