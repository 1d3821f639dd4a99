"""Idempotent create (the IETF `Idempotency-Key` header draft).

The key's row, the conversation and the stored response are written in one
transaction. A concurrent request with the same key blocks on the key's primary key
until that transaction ends, then finds the committed response and replays it: at
most one conversation per (caller, key), with no "in flight" state to clean up after a
crash. A key goes with its conversation, and expired keys are purged as keys are used.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import Row, delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert

from .. import audit
from ..auth import Caller
from ..extensions import db
from ..housekeeping import now_and_then
from ..models import IdempotencyKey
from .service import INSERT_CONVERSATION, new_conversation

KEY_LIFETIME = timedelta(hours=24)
# Expired keys are deleted this many at a time, in at most so many batches a run.
PURGE_BATCH = 1000
PURGE_BATCHES = 10


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
    render: Callable[[Row[Any]], bytes],
) -> StoredResponse:
    """Create the conversation unless this caller already did with this key.

    `render` turns the new conversation into the 201 body that is stored and replayed
    byte for byte.
    """
    fingerprint = request_fingerprint(fields)
    this_key = (
        (IdempotencyKey.org_id == caller.org_id)
        & (IdempotencyKey.user_id == caller.user_id)
        & (IdempotencyKey.key == key)
    )
    claimed = db.session.execute(
        insert(IdempotencyKey)
        .values(org_id=caller.org_id, user_id=caller.user_id, key=key, request_hash=fingerprint)
        # An expired key is claimed afresh, as if it had never been used.
        .on_conflict_do_update(
            index_elements=["org_id", "user_id", "key"],
            set_={
                "request_hash": fingerprint,
                "created_at": func.date_trunc("milliseconds", func.now()),
                "conversation_id": None,
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
            ).where(this_key)
        ).one()
        db.session.rollback()
        if stored.request_hash != fingerprint:
            raise IdempotencyKeyReused()
        return StoredResponse(stored.response_status, stored.response_body, replayed=True)

    values = new_conversation(caller, model=model, **fields)
    audit.name_target(values["id"])
    conversation = db.session.execute(INSERT_CONVERSATION, values).one()
    body = render(conversation)
    db.session.execute(
        update(IdempotencyKey)
        .where(this_key)
        .values(conversation_id=conversation.id, response_status=201, response_body=body)
    )
    db.session.commit()
    now_and_then("idempotency keys", lambda: purge_expired_keys(batches=PURGE_BATCHES))
    return StoredResponse(201, body, replayed=False)


def purge_expired_keys(*, batches: int | None = None) -> int:
    """Delete keys past their lifetime, a batch per transaction; returns how many."""
    expired = (
        select(IdempotencyKey.org_id, IdempotencyKey.user_id, IdempotencyKey.key)
        .where(IdempotencyKey.created_at < func.now() - KEY_LIFETIME)
        .limit(PURGE_BATCH)
    )
    columns = (IdempotencyKey.org_id, IdempotencyKey.user_id, IdempotencyKey.key)
    total, batch = 0, 0
    while batches is None or batch < batches:
        deleted = db.session.execute(
            delete(IdempotencyKey).where(tuple_(*columns).in_(expired))
        ).rowcount
        db.session.commit()
        total, batch = total + deleted, batch + 1
        if deleted < PURGE_BATCH:
            break
    return total
