"""Opaque, signed keyset cursors for the conversation list.

A cursor is bound to the caller it was issued to: a tampered cursor, or one
replayed by another caller, fails its signature check and is rejected with a 400
instead of leaking where someone else's list stands.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from .auth import Caller
from .conversations import PageCursor
from .ids import is_object_id

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)
MAC_BYTES = 16


class InvalidCursor(Exception):
    pass


def _mac(secret: str, caller: Caller, payload: bytes) -> bytes:
    message = b"\0".join((caller.org_id.encode(), caller.user_id.encode(), payload))
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()[:MAC_BYTES]


def encode_cursor(cursor: PageCursor, caller: Caller, secret: str) -> str:
    # Stored times are whole milliseconds, so this is exact.
    payload = f"{(cursor.updated_at - EPOCH) // MILLISECOND}:{cursor.id}".encode()
    token = payload + b"." + _mac(secret, caller, payload)
    return base64.urlsafe_b64encode(token).rstrip(b"=").decode()


def decode_cursor(token: str, caller: Caller, secret: str) -> PageCursor:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursor() from None
    payload, dot, mac = raw.partition(b".")
    if not dot or not hmac.compare_digest(mac, _mac(secret, caller, payload)):
        raise InvalidCursor()
    millis, _, conversation_id = payload.decode().partition(":")
    if not millis.isdigit() or not is_object_id(conversation_id):
        raise InvalidCursor()
    try:
        return PageCursor(EPOCH + int(millis) * MILLISECOND, conversation_id)
    except OverflowError:
        raise InvalidCursor() from None
