"""The caller of an API request: the pair (organization, user id) every read and write
is scoped to."""

from __future__ import annotations

from dataclasses import dataclass

from flask import g

from ..errors import ApiError


@dataclass(frozen=True)
class Caller:
    org_id: str
    user_id: str
    api_key_id: str | None = None


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
