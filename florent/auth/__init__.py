"""Who is calling: a bearer token (a WorkOS session JWT or an organization API key)
becomes the request's caller, before any API view runs."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g, request

from .. import audit
from ..errors import ApiError, unavailable
from ..limits import Throttle
from ..models import API_KEY_IDENTITY_PREFIX
from .apikeys import API_KEY_SCHEME, api_key_caller
from .caller import Caller, KeysUnavailable, current_caller, requires, unauthorized
from .sessions import SessionTokens, is_identity

__all__ = ["Authenticator", "Caller", "authenticate_request", "current_caller", "requires"]

EXTENSION = "florent.auth"
ACT_AS_USER = "X-Act-As-User"


@dataclass(frozen=True)
class Authenticator:
    sessions: SessionTokens
    # Failed authentications per client address; None when rate limits are off.
    failures: Throttle | None

    def caller(self, authorization: str | None) -> Caller:
        if not authorization:
            raise ApiError(
                401, "unauthorized", headers={"WWW-Authenticate": 'Bearer realm="florent"'}
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("invalid_request")
        if token.startswith(API_KEY_SCHEME):
            return api_key_caller(token)
        return self.sessions.caller(token)


def authenticate_request() -> None:
    """before_request for the API: the bearer token's caller, or 401 (429 once an address
    has failed too often), or 503 when the identity provider's keys cannot be had."""
    authenticator: Authenticator = current_app.extensions[EXTENSION]
    try:
        g.caller = authenticator.caller(request.headers.get("Authorization"))
    except KeysUnavailable:
        raise unavailable(retry_after=5) from None
    except ApiError:
        # Only failures count: people behind one address who authenticate are never
        # limited together, however many bad tokens that address also sends.
        if authenticator.failures is not None:
            wait = authenticator.failures.record_failure(f"addr:{request.remote_addr}")
            if wait:
                raise ApiError(429, "rate_limited", headers={"Retry-After": str(wait)}) from None
        raise
    caller = g.caller
    if ACT_AS_USER in request.headers:
        g.caller = caller = acting_as(caller, request.headers[ACT_AS_USER])
        audit.expect(impersonation_event(caller))


def acting_as(caller: Caller, person: str) -> Caller:
    """The person a key acts for (X-Act-As-User), if the key may and the header names one."""
    if not caller.can_impersonate:
        raise ApiError(403, "impersonation_not_allowed")
    # A person's id, as a session token's subject may be; never a key's own identity.
    # The header sent twice arrives as one value (WSGI has one per name), joined with ","
    # by gunicorn and werkzeug: is_identity refuses the comma, so it is refused here.
    if not is_identity(person) or person.startswith(API_KEY_IDENTITY_PREFIX):
        raise ApiError(400, "invalid_header")
    return caller.acting_as(person)


def impersonation_event(caller: Caller) -> audit.Event:
    """What the trail records of a request made through impersonation: the key, the
    person, the API action (its view) and the conversation, if any."""
    return audit.Event(
        caller.org_id,
        audit.Actor("api_key", caller.api_key_id or ""),
        f"api.{request.endpoint.rpartition('.')[2] if request.endpoint else 'unknown'}",
        target=(request.view_args or {}).get("conversation_id"),
        acting_for=caller.user_id,
    )
