"""The caller of an API request: the pair (organization, user id) every read and write
is scoped to, and what it may do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import wraps
from typing import Any

from flask import g

from ..errors import ApiError
from ..models import PERMISSIONS


@dataclass(frozen=True)
class Caller:
    org_id: str
    # Whose conversations these are: the person, the key's own identity, or the person
    # a key acts for.
    user_id: str
    api_key_id: str | None = None
    # People have both permissions on their own conversations; a key has its own.
    permissions: frozenset[str] = frozenset(PERMISSIONS)
    # A key that may act on behalf of a person of its organization.
    can_impersonate: bool = False
    # Set when a key acts on behalf of the person `user_id` (X-Act-As-User).
    impersonating: bool = False
    # When a session token stops being accepted (its exp, clock skew allowed): a socket
    # it opened stops there too. None for a key, whose revocation is checked instead.
    valid_until: float | None = None

    def acting_as(self, user_id: str) -> Caller:
        """The key, acting as the person `user_id`: their conversations, its permissions."""
        return replace(self, user_id=user_id, can_impersonate=False, impersonating=True)


class KeysUnavailable(Exception):
    """The identity provider's signing keys cannot be had right now."""


def current_caller() -> Caller:
    return g.caller


def unauthorized(reason: str = "invalid_token") -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        headers={"WWW-Authenticate": f'Bearer realm="florent", error="{reason}"'},
    )


def requires(permission: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """An API view the caller needs `permission` for: without it, 403 before anything is
    read or written. The view carries it, for the OpenAPI document and its tests."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if permission not in current_caller().permissions:
                raise ApiError(403, "forbidden")
            return view(*args, **kwargs)

        guarded.permission = permission  # type: ignore[attr-defined]
        return guarded

    return decorate
