"""Organization API keys: issued here, shown once, stored as a hash, revocable at once.

A key acts as its own identity inside its organization (`apikey_<id>`). Each use case
is one transaction, committed here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Iterable

from sqlalchemy import bindparam, func, select, text, update

from .. import audit
from ..audit import Actor
from ..database import one_statement
from ..extensions import db
from ..ids import is_object_id, new_object_id
from ..models import API_KEY_SCHEME, PERMISSIONS, ApiKey, api_key_user_id
from .caller import Caller, unauthorized

__all__ = ["API_KEY_PATTERN", "API_KEY_SCHEME", "issue_api_key", "list_api_keys"]

API_KEY_PATTERN = re.compile(re.escape(API_KEY_SCHEME) + r"([0-9a-f]{24})_([A-Za-z0-9_-]{43})")
# Use is recorded at most this often per key and process, not written on every request.
LAST_USED_RESOLUTION_SECONDS = 60.0

FIND_KEY = select(
    ApiKey.org_id,
    ApiKey.secret_hash,
    ApiKey.revoked_at,
    ApiKey.permissions,
    ApiKey.can_impersonate,
).where(ApiKey.id == bindparam("id"))
LIVE_KEY = select(ApiKey.id).where(ApiKey.id == bindparam("id"), ApiKey.revoked_at.is_(None))

_last_used: dict[str, float] = {}
_last_used_lock = threading.Lock()


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def plaintext_api_key(key_id: str, secret: str) -> str:
    return f"{API_KEY_SCHEME}{key_id}_{secret}"


def issue_api_key(
    org_id: str,
    name: str,
    *,
    by: Actor,
    permissions: Iterable[str] = PERMISSIONS,
    can_impersonate: bool = False,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext, which is never available again.
    The audit trail records who issued it, in the same transaction."""
    permissions = sorted(set(permissions), key=PERMISSIONS.index)
    secret = secrets.token_urlsafe(32)  # 256 bits, 43 characters
    key = ApiKey(
        id=new_object_id(),
        org_id=org_id,
        name=name,
        secret_hash=hash_secret(secret),
        permissions=permissions,
        can_impersonate=can_impersonate,
    )
    db.session.add(key)
    audit.record(audit.Event(org_id, by, audit.KEY_ISSUED, target=key.id))
    db.session.commit()
    return key, plaintext_api_key(key.id, secret)


def list_api_keys(org_id: str | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    if org_id is not None:
        query = query.where(ApiKey.org_id == org_id)
    return list(db.session.scalars(query))


def revoke_api_key(id_or_plaintext: str, *, by: Actor) -> ApiKey | None:
    """Revoke by key id or by the plaintext key, recording who did; None when no such
    key exists. Revoking a revoked key changes nothing, and records nothing."""
    match = API_KEY_PATTERN.fullmatch(id_or_plaintext)
    key_id = match.group(1) if match else id_or_plaintext
    if not is_object_id(key_id):
        return None
    key = db.session.scalar(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=func.now())
        .returning(ApiKey)
    )
    if key is None:
        key = db.session.get(ApiKey, key_id)  # already revoked, or no such key
    else:
        audit.record(audit.Event(key.org_id, by, audit.KEY_REVOKED, target=key.id))
    db.session.commit()
    return key


def api_key_caller(token: str) -> Caller:
    """The caller a plaintext key stands for; 401 unless it is a live key.

    Read from PostgreSQL on every request, so a revoked key stops working at once on
    every process and instance.
    """
    match = API_KEY_PATTERN.fullmatch(token)
    if match is None:
        raise unauthorized()
    key_id, secret = match.groups()
    with one_statement() as connection:
        row = connection.execute(FIND_KEY, {"id": key_id}).first()
    if row is None or not hmac.compare_digest(hash_secret(secret), row.secret_hash):
        raise unauthorized()
    if row.revoked_at is not None:
        raise unauthorized()
    _record_use(key_id)
    return Caller(
        org_id=row.org_id,
        user_id=api_key_user_id(key_id),
        api_key_id=key_id,
        permissions=frozenset(row.permissions),
        can_impersonate=row.can_impersonate,
    )


def key_is_live(key_id: str) -> bool:
    """Whether the key exists and is not revoked: for what it opened before, such as a
    WebSocket, which must stop working when the key is revoked, as a request does."""
    with one_statement() as connection:
        return connection.execute(LIVE_KEY, {"id": key_id}).first() is not None


def _record_use(key_id: str) -> None:
    """Record use at most once a minute per key per process, not a write per request."""
    now = time.monotonic()
    with _last_used_lock:
        if now - _last_used.get(key_id, float("-inf")) < LAST_USED_RESOLUTION_SECONDS:
            return
        _last_used[key_id] = now
    with one_statement() as connection:
        connection.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .where(
                ApiKey.last_used_at.is_(None)
                | (ApiKey.last_used_at < func.now() - text("interval '60 seconds'"))
            )
            .values(last_used_at=func.now())
        )
