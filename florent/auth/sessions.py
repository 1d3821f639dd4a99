"""WorkOS session JWTs: RS256 tokens verified against the identity provider's JWKS."""

from __future__ import annotations

import hashlib
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
from jwt import PyJWK, PyJWKClient, PyJWKClientConnectionError, PyJWTError

from ..models import API_KEY_IDENTITY_PREFIX
from .caller import Caller, KeysUnavailable, unauthorized

ALGORITHM = "RS256"
# Tolerated clock skew between us and the identity provider, for exp, nbf and iat.
LEEWAY_SECONDS = 30
# A session token may live at most this long (exp - iat): a longer one is not a session's.
MAX_LIFETIME_SECONDS = 24 * 3600
# Fail fast when the JWKS host is slow, so a request answers 503 in about 2 s.
JWKS_TIMEOUT_SECONDS = 1.5
# How long a fetched key set is trusted: a key pulled from the JWKS stops working
# within this, cached verified tokens included (they are re-checked against the set).
JWKS_LIFESPAN_SECONDS = 30
# After a failed fetch, answer from the last good set (or 503) for this long instead
# of queueing every request behind another slow attempt.
JWKS_RETRY_AFTER_SECONDS = 5.0
# A forced refetch for an unknown kid happens at most this often, so a flood of
# bad tokens cannot hammer the JWKS host.
JWKS_REFETCH_COOLDOWN_SECONDS = 30.0
# Clients send the same token on every request and RS256 verification is the costliest
# step of authenticating one, so a verified token's caller is remembered this long.
VERIFIED_CACHE_SECONDS = 60.0
VERIFIED_CACHE_SIZE = 10_000
# Claims become stored owner ids: bounded, printable strings only. No comma either: a
# header sent twice reaches the app as one value joined with commas, so a person whose
# id held one could not be named in X-Act-As-User, and a joined pair would pass for an id.
IDENTITY_CHARS = frozenset(map(chr, range(0x21, 0x7F))) - {","}


class JwksClient(PyJWKClient):
    """PyJWKClient that serves the last good key set while its host is down,
    and stops trying for a moment after a failure."""

    def __init__(self, url: str):
        super().__init__(
            url,
            cache_jwk_set=True,
            lifespan=JWKS_LIFESPAN_SECONDS,
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


@dataclass(frozen=True)
class Verified:
    caller: Caller
    kid: str
    key: Any  # the key object that verified it: a different one means a re-verification
    trusted_until: float


class SessionTokens:
    """Turns a session JWT into its caller, or refuses it (401) or cannot tell (503)."""

    def __init__(
        self,
        *,
        jwks_url: str | None,
        issuer: str | None,
        audience: str | None,
        dev_key: DevSigningKey | None,
    ):
        self.jwks = JwksClient(jwks_url) if jwks_url else None
        self.issuer = issuer
        self.audience = audience
        self.dev_key = dev_key
        self._verified: OrderedDict[str, Verified] = OrderedDict()
        self._lock = threading.Lock()

    def caller(self, token: str) -> Caller:
        cached = self._verified.get(token)
        # A cached token is trusted while its key is still the current key set's for its
        # kid: a key removed from the set fails here.
        if (
            cached is not None
            and cached.trusted_until > time.time()
            and self._signing_key(cached.kid) is cached.key
        ):
            return cached.caller
        kid = self._kid(token)
        key = self._signing_key(kid)
        caller = self._verify(token, key)
        with self._lock:
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
            until = min(caller.valid_until, time.time() + VERIFIED_CACHE_SECONDS)
            self._verified[token] = Verified(caller, kid, key, until)
        return caller

    @staticmethod
    def _kid(token: str) -> str:
        try:
            header = jwt.get_unverified_header(token)
        except PyJWTError:
            raise unauthorized() from None
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM or not isinstance(kid, str) or "crit" in header:
            # We implement no critical header extensions, so any `crit` is one we do not understand.
            raise unauthorized()
        return kid

    def _verify(self, token: str, key: Any) -> Caller:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "iat", "sub"], "verify_aud": bool(self.audience)},
                issuer=self.issuer,
                audience=self.audience,
                leeway=LEEWAY_SECONDS,
            )
        except PyJWTError:
            raise unauthorized() from None
        user_id, org_id = claims.get("sub"), claims.get("org_id")
        if not (is_identity(user_id) and is_identity(org_id)):
            raise unauthorized()
        if user_id.startswith(API_KEY_IDENTITY_PREFIX):  # a person may not pose as a key
            raise unauthorized()
        if claims["exp"] - claims["iat"] > MAX_LIFETIME_SECONDS:
            raise unauthorized()
        valid_until = float(claims["exp"]) + LEEWAY_SECONDS
        return Caller(org_id=org_id, user_id=user_id, valid_until=valid_until)

    def _signing_key(self, kid: str) -> Any:
        """The current key for `kid`: the JWKS's (cached for its lifespan), or the dev key."""
        if self.dev_key is not None and kid == self.dev_key.kid:  # a kid is public
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


def is_identity(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= 255
        and all(c in IDENTITY_CHARS for c in value)
    )
