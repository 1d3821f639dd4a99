"""Use cases on organization API keys. Each function is one transaction."""

from __future__ import annotations

from sqlalchemy import func, select, update

from .auth import API_KEY_PATTERN, hash_secret, new_api_key_secret, plaintext_api_key
from .extensions import db
from .ids import is_object_id, new_object_id
from .models import ApiKey


def issue_api_key(org_id: str, name: str) -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext, which is never available again."""
    secret = new_api_key_secret()
    key = ApiKey(id=new_object_id(), org_id=org_id, name=name, secret_hash=hash_secret(secret))
    db.session.add(key)
    db.session.commit()
    return key, plaintext_api_key(key.id, secret)


def list_api_keys(org_id: str | None = None) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    if org_id is not None:
        query = query.where(ApiKey.org_id == org_id)
    return list(db.session.scalars(query))


def revoke_api_key(id_or_plaintext: str) -> ApiKey | None:
    """Revoke by key id or by the plaintext key; None when no such key exists."""
    match = API_KEY_PATTERN.fullmatch(id_or_plaintext)
    key_id = match.group(1) if match else id_or_plaintext
    if not is_object_id(key_id):
        return None
    key = db.session.scalar(
        update(ApiKey)
        .where(ApiKey.id == key_id)
        .values(revoked_at=func.coalesce(ApiKey.revoked_at, func.now()))
        .returning(ApiKey)
    )
    db.session.commit()
    return key
