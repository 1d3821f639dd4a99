"""Opaque, signed keyset cursors: where a page of conversations or messages ended.

A cursor is bound to the caller it was issued to and to what it pages through (the
list, one conversation's messages): a tampered cursor, or one replayed by another
caller or on another list, fails its signature check and is a 400, rather than
leaking where someone else's list stands.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..auth import Caller
from ..ids import is_object_id

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)
MAC_BYTES = 16


class InvalidCursor(Exception):
    pass


@dataclass(frozen=True)
class Position:
    """A row's place in a keyset order: its time (whole milliseconds) and its id."""

    at: datetime
    id: str


def _mac(secret: str, caller: Caller, scope: str, payload: bytes) -> bytes:
    message = b"\0".join((caller.org_id.encode(), caller.user_id.encode(), scope.encode(), payload))
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()[:MAC_BYTES]


def encode_cursor(position: Position, caller: Caller, secret: str, scope: str) -> str:
    # Stored times are whole milliseconds, so this is exact.
    payload = f"{(position.at - EPOCH) // MILLISECOND}:{position.id}".encode()
    token = payload + b"." + _mac(secret, caller, scope, payload)
    return base64.urlsafe_b64encode(token).rstrip(b"=").decode()


def decode_cursor(token: str, caller: Caller, secret: str, scope: str) -> Position:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursor() from None
    payload, dot, mac = raw.partition(b".")
    if not dot or not hmac.compare_digest(mac, _mac(secret, caller, scope, payload)):
        raise InvalidCursor()
    millis, _, row_id = payload.decode().partition(":")
    if not millis.isdigit() or not is_object_id(row_id):
        raise InvalidCursor()
    try:
        return Position(EPOCH + int(millis) * MILLISECOND, row_id)
    except OverflowError:
        raise InvalidCursor() from None
