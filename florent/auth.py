"""Bearer token -> caller: a WorkOS session JWT, or an organization API key.

The caller is the pair (organization, user id); every read and write is scoped
to it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, current_app, g, request
from jwt import PyJWK, PyJWKClient, PyJWKClientConnectionError, PyJWTError
from sqlalchemy import select, text, update

from .database import one_statement
from .errors import ApiError
from .models import API_KEY_SCHEME, ApiKey, api_key_user_id

ALGORITHM = "RS256"
# Tolerated clock skew between us and the identity provider, for exp, nbf and iat.
LEEWAY_SECONDS = 30
# Fail fast when the JWKS host is slow, so a request answers 503 in about 2 s.
JWKS_TIMEOUT_SECONDS = 1.5
# After a failed fetch, answer 503 at once for this long instead of queueing
# every request behind another slow attempt.
JWKS_RETRY_AFTER_SECONDS = 5.0
# A forced refetch for an unknown kid happens at most this often, so a flood of
# bad tokens cannot hammer the JWKS host.
JWKS_REFETCH_COOLDOWN_SECONDS = 30.0
LAST_USED_RESOLUTION_SECONDS = 60.0
# A verified token is trusted again without re-verifying for this long (never past
# its exp), so a key pulled from the JWKS stops working within a minute.
VERIFIED_CACHE_SECONDS = 60.0
VERIFIED_CACHE_SIZE = 10_000

API_KEY_PATTERN = re.compile(re.escape(API_KEY_SCHEME) + r"([0-9a-f]{24})_([A-Za-z0-9_-]{43})")
# Claims become stored owner ids: bounded, printable strings only.
IDENTITY_CLAIM = re.compile(r"[\x21-\x7e]{1,255}")


@dataclass(frozen=True)
class Caller:
    org_id: str
    user_id: str
    api_key_id: str | None = None


def current_caller() -> Caller:
    return g.caller


class KeysUnavailable(Exception):
    """The identity provider's signing keys cannot be had right now."""


def unauthorized(reason: str = "invalid_token") -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        headers={"WWW-Authenticate": f'Bearer realm="florent", error="{reason}"'},
    )


class _JwksClient(PyJWKClient):
    """PyJWKClient that serves the last good key set while its host is down,
    and stops trying for a moment after a failure."""

    def __init__(self, url: str):
        super().__init__(
            url,
            cache_jwk_set=True,
            lifespan=300,
            timeout=JWKS_TIMEOUT_SECONDS,
            cooldown_duration=JWKS_REFETCH_COOLDOWN_SECONDS,
        )
        self._last_good: dict[str, Any] | None = None
        self._failed_at = float("-inf")

    def fetch_data(self) -> Any:
        if time.monotonic() - self._failed_at < JWKS_RETRY_AFTER_SECONDS:
            return self._last_good_or_raise()
        try:
            data = super().fetch_data()
        except Exception as error:  # network, HTTP status, a body that is not JSON: no keys now
            self._failed_at = time.monotonic()
            return self._last_good_or_raise(error)
        self._last_good = data
        return data

    def _last_good_or_raise(self, error: Exception | None = None) -> Any:
        if self._last_good is None:
            raise PyJWKClientConnectionError("the JWKS host is unavailable") from error
        return self._last_good


class DevSigningKey:
    """A local RSA key for development tokens, kept in the instance folder."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            path.touch(mode=0o600)
            path.write_bytes(pem)
        self.private_key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        self.public_key = self.private_key.public_key()
        der = self.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = "florent-dev-" + hashlib.sha256(der).hexdigest()[:16]

    def sign(self, user_id: str, org_id: str, *, issuer: str | None, ttl: int = 3600) -> str:
        now = int(time.time())
        claims = {
            "sub": user_id,
            "org_id": org_id,
            "iat": now,
            "exp": now + ttl,
            "sid": "session_dev",
            "jti": secrets.token_hex(8),
            "role": "member",
            "permissions": [],
            "iss": issuer or "florent-dev",
        }
        return jwt.encode(claims, self.private_key, algorithm=ALGORITHM, headers={"kid": self.kid})


class Authenticator:
    def __init__(
        self,
        *,
        jwks_url: str | None,
        issuer: str | None,
        audience: str | None,
        dev_key: DevSigningKey | None,
    ):
        self.jwks = _JwksClient(jwks_url) if jwks_url else None
        self.issuer = issuer
        self.audience = audience
        self.dev_key = dev_key
        self._last_used: dict[str, float] = {}
        self._last_used_lock = threading.Lock()
        self._verified: OrderedDict[str, tuple[Caller, float]] = OrderedDict()
        self._verified_lock = threading.Lock()

    def authenticate(self, authorization: str | None) -> Caller:
        if not authorization:
            raise ApiError(
                401, "unauthorized", headers={"WWW-Authenticate": 'Bearer realm="florent"'}
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise unauthorized("invalid_request")
        if token.startswith(API_KEY_SCHEME):
            return self._api_key_caller(token)
        return self._session_caller(token)

    # -- WorkOS session JWTs -------------------------------------------------

    def _session_caller(self, token: str) -> Caller:
        cached = self._verified.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        caller, expires_at = self._verify_session_token(token)
        self._remember(token, caller, expires_at)
        return caller

    def _remember(self, token: str, caller: Caller, expires_at: float) -> None:
        """Keep a verified token's caller for a short while: clients send the same
        token on every request, and RS256 verification is the costliest step."""
        with self._verified_lock:
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
            self._verified[token] = (caller, min(expires_at, time.time() + VERIFIED_CACHE_SECONDS))

    def _verify_session_token(self, token: str) -> tuple[Caller, float]:
        try:
            header = jwt.get_unverified_header(token)
        except PyJWTError:
            raise unauthorized() from None
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str) or "crit" in header:
            # We implement no critical header extensions, so any `crit` is one we do not understand.
            raise unauthorized()
        key = self._signing_key(kid)
        options: dict[str, Any] = {
            "require": ["exp", "iat", "sub"],
            "verify_aud": bool(self.audience),
        }
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                options=options,
                issuer=self.issuer,
                audience=self.audience,
                leeway=LEEWAY_SECONDS,
            )
        except PyJWTError:
            raise unauthorized() from None
        user_id, org_id = claims.get("sub"), claims.get("org_id")
        if not all(isinstance(v, str) and IDENTITY_CLAIM.fullmatch(v) for v in (user_id, org_id)):
            raise unauthorized()
        return Caller(org_id=org_id, user_id=user_id), float(claims["exp"])

    def _signing_key(self, kid: str) -> Any:
        if self.dev_key is not None and hmac.compare_digest(kid, self.dev_key.kid):
            return self.dev_key.public_key
        if self.jwks is None:
            raise unauthorized()
        try:
            jwk: PyJWK = self.jwks.get_signing_key(kid)
        except PyJWKClientConnectionError:
            raise KeysUnavailable() from None
        except PyJWTError:  # unknown kid, a key set with no usable keys
            raise unauthorized() from None
        if jwk.key_type != "RSA":
            raise unauthorized()
        return jwk.key

    # -- Organization API keys ----------------------------------------------

    def _api_key_caller(self, token: str) -> Caller:
        match = API_KEY_PATTERN.fullmatch(token)
        if match is None:
            raise unauthorized()
        key_id, secret = match.groups()
        with one_statement() as connection:
            row = connection.execute(
                select(ApiKey.org_id, ApiKey.secret_hash, ApiKey.revoked_at).where(
                    ApiKey.id == key_id
                )
            ).first()
        if row is None or not hmac.compare_digest(hash_secret(secret), row.secret_hash):
            raise unauthorized()
        if row.revoked_at is not None:
            raise unauthorized()
        self._touch(key_id)
        return Caller(org_id=row.org_id, user_id=api_key_user_id(key_id), api_key_id=key_id)

    def _touch(self, key_id: str) -> None:
        """Record use at most once a minute per key per process, not a write per request."""
        now = time.monotonic()
        with self._last_used_lock:
            if now - self._last_used.get(key_id, float("-inf")) < LAST_USED_RESOLUTION_SECONDS:
                return
            self._last_used[key_id] = now
        with one_statement() as connection:
            connection.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id)
                .where(
                    (ApiKey.last_used_at.is_(None))
                    | (ApiKey.last_used_at < text("now() - interval '60 seconds'"))
                )
                .values(last_used_at=text("now()"))
            )


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_api_key_secret() -> str:
    return secrets.token_urlsafe(32)  # 256 bits, 43 characters


def plaintext_api_key(key_id: str, secret: str) -> str:
    return f"{API_KEY_SCHEME}{key_id}_{secret}"


def init_auth(app: Flask, authenticator: Authenticator) -> None:
    app.extensions["florent.auth"] = authenticator


def authenticate_request() -> None:
    """before_request for the API: resolve the bearer token to a caller, or answer 401/503."""
    authenticator: Authenticator = current_app.extensions["florent.auth"]
    try:
        g.caller = authenticator.authenticate(request.headers.get("Authorization"))
    except KeysUnavailable:
        raise ApiError(503, "service_unavailable", headers={"Retry-After": "5"}) from None
