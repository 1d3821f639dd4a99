"""Bearer authentication: WorkOS session JWTs (from a real JWKS over HTTP) and API keys."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import select

from florent.auth.apikeys import revoke_api_key
from florent.extensions import db
from florent.models import ApiKey

from .conftest import JwksServer, SigningKey, bearer, session_claims, sign_raw
from .factories import TESTER, URL, api_key_secret


def assert_unauthorized(response) -> None:
    assert response.status_code == 401
    assert response.get_json() == {"error": "unauthorized"}
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="florent"')


def b64(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_valid_session_token_is_accepted(client, make_token):
    response = client.post(URL, headers=bearer(make_token("user_01X", "org_01Y")))

    assert response.status_code == 201
    assert response.get_json()["conversation"]["userId"] == "user_01X"


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token abc",
        "Bearer not-a-jwt",
        "Bearer a.b.c",
        "Bearer ....",
    ],
)
def test_missing_or_malformed_authorization_is_401(client, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    assert_unauthorized(client.post(URL, headers=headers))


def test_alg_none_is_rejected(client, make_token):
    signed = make_token()
    _, payload, _ = signed.split(".")
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': 'test-key-1'})}.{payload}."
    assert_unauthorized(client.post(URL, headers=bearer(unsigned)))


def test_hs256_signed_with_the_public_key_is_rejected(client, signing_key):
    public_pem = signing_key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    claims = {"sub": "user_01EVE", "org_id": "org_01ACME", "iat": now, "exp": now + 600}
    header = b64({"alg": "HS256", "typ": "JWT", "kid": signing_key.kid})
    body = b64(claims)
    import hashlib
    import hmac

    mac = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    token = f"{header}.{body}.{b64(mac)}"
    assert_unauthorized(client.post(URL, headers=bearer(token)))


@pytest.mark.parametrize("algorithm", ["RS384", "RS512", "PS256"])
def test_other_rsa_algorithms_are_rejected(client, make_token, algorithm):
    assert_unauthorized(client.post(URL, headers=bearer(make_token(algorithm=algorithm))))


def test_expired_token_is_rejected(client, make_token):
    now = int(time.time())
    assert_unauthorized(
        client.post(URL, headers=bearer(make_token(iat=now - 7200, exp=now - 3600)))
    )


def test_token_within_clock_leeway_is_accepted(client, make_token):
    now = int(time.time())
    response = client.post(URL, headers=bearer(make_token(iat=now - 600, exp=now - 5)))
    assert response.status_code == 201


def test_not_yet_valid_token_is_rejected(client, make_token):
    now = int(time.time())
    assert_unauthorized(client.post(URL, headers=bearer(make_token(nbf=now + 3600))))


def test_token_issued_in_the_future_is_rejected(client, make_token):
    now = int(time.time())
    assert_unauthorized(
        client.post(URL, headers=bearer(make_token(iat=now + 3600, exp=now + 7200)))
    )


@pytest.mark.parametrize("claim", ["exp", "iat", "sub"])
def test_token_missing_a_required_claim_is_rejected(client, make_token, claim):
    token = make_token(sub=None) if claim == "sub" else make_token(**{claim: None})
    assert_unauthorized(client.post(URL, headers=bearer(token)))


def test_token_without_org_is_rejected(client, make_token):
    assert_unauthorized(client.post(URL, headers=bearer(make_token(org=None))))


@pytest.mark.parametrize(
    "value", ["", 42, ["org"], {"id": "org"}, "x" * 256, "org with space", "org,with,comma"]
)
def test_token_with_unusable_org_or_sub_is_rejected(client, make_token, value):
    assert_unauthorized(client.post(URL, headers=bearer(make_token(org=value))))
    assert_unauthorized(client.post(URL, headers=bearer(make_token(sub=value))))


def test_wrong_issuer_is_rejected(client, make_token):
    assert_unauthorized(client.post(URL, headers=bearer(make_token(iss="https://evil.example"))))


def test_unknown_kid_is_rejected(client, make_token):
    assert_unauthorized(client.post(URL, headers=bearer(make_token(kid="nobody-knows-me"))))


@pytest.mark.parametrize("kid", [123, ["test-key-1"], {"k": 1}, None, "missing"])
def test_non_string_or_missing_kid_is_rejected(client, signing_key, kid):
    header = {"alg": "RS256", "typ": "JWT"} | ({} if kid == "missing" else {"kid": kid})
    token = sign_raw(header, session_claims(), signing_key.private_key)
    assert_unauthorized(client.post(URL, headers=bearer(token)))


@pytest.mark.parametrize("kid", ["é", "\udc80"], ids=["not ascii", "a lone surrogate"])
def test_an_odd_kid_is_401_where_the_development_key_is_trusted(client, signing_key, kid):
    header = {"alg": "RS256", "typ": "JWT", "kid": kid}
    token = sign_raw(header, session_claims(), signing_key.private_key)
    assert_unauthorized(client.post(URL, headers=bearer(token)))


def test_raw_signing_helper_makes_tokens_the_service_accepts(client, signing_key):
    header = {"alg": "RS256", "typ": "JWT", "kid": signing_key.kid}
    token = sign_raw(header, session_claims(), signing_key.private_key)
    assert client.post(URL, headers=bearer(token)).status_code == 201


def test_unknown_crit_header_is_rejected(client, signing_key):
    header = {"alg": "RS256", "kid": signing_key.kid, "crit": ["x-unknown"], "x-unknown": 1}
    token = sign_raw(header, session_claims(), signing_key.private_key)
    assert_unauthorized(client.post(URL, headers=bearer(token)))


def test_tampered_payload_is_rejected(client, make_token):
    header, payload, signature = make_token(sub="user_01ALICE").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "user_01MALLORY"
    assert_unauthorized(client.post(URL, headers=bearer(f"{header}.{b64(claims)}.{signature}")))


def test_another_key_with_the_same_kid_is_rejected(client, make_token, signing_key):
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert_unauthorized(
        client.post(URL, headers=bearer(make_token(key=impostor, kid=signing_key.kid)))
    )


def test_ec_key_token_is_rejected(client, make_token):
    token = make_token(key=ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    assert_unauthorized(client.post(URL, headers=bearer(token)))


def test_garbage_tokens_never_500(client):
    for token in ["\u00e9\u00e9.\u00e9.\u00e9", "a" * 10_000, "eyJ.eyJ.sig", b64(b"\xff") + ".x.y"]:
        response = client.post(URL, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401


def test_unknown_kid_flood_refetches_the_jwks_at_most_once_per_cooldown(
    client, make_token, jwks_server
):
    client.post(URL, headers=bearer(make_token()))  # warm the key set
    before = jwks_server.fetches
    for i in range(20):
        client.post(URL, headers=bearer(make_token(kid=f"unknown-{i}")))
    assert jwks_server.fetches - before <= 1


def test_key_rotation_is_picked_up_by_refetch(make_app, make_token):
    server = JwksServer()
    old, new = SigningKey("old"), SigningKey("new")
    server.keys.append(old)
    try:
        app = make_app(server.url)
        client = app.test_client()
        assert (
            client.post(URL, headers=bearer(make_token(key=old.private_key, kid="old"))).status_code
            == 201
        )
        server.keys.append(new)  # rotated after our first fetch
        # Pretend the refetch cooldown (30 s after any fetch) has passed.
        app.extensions["florent.auth"].sessions.jwks._last_successful_fetch -= 31
        response = client.post(URL, headers=bearer(make_token(key=new.private_key, kid="new")))
        assert response.status_code == 201
    finally:
        server.close()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/jwks"


def test_jwks_host_down_is_503_fast(make_app, make_token):
    app = make_app(closed_port_url())
    client = app.test_client()

    started = time.monotonic()
    response = client.post(URL, headers=bearer(make_token()))
    assert response.status_code == 503
    assert response.get_json() == {"error": "service_unavailable"}
    assert "Retry-After" in response.headers
    assert time.monotonic() - started < 2


def test_jwks_host_that_never_answers_is_503_within_about_two_seconds(make_app, make_token):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # accepts connections, never answers
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/jwks"
    try:
        app = make_app(url)
        client = app.test_client()
        started = time.monotonic()
        response = client.post(URL, headers=bearer(make_token()))
        elapsed = time.monotonic() - started
        assert response.status_code == 503
        assert elapsed < 2.5
        # Right after a failure, requests do not queue behind another slow attempt.
        started = time.monotonic()
        assert client.post(URL, headers=bearer(make_token())).status_code == 503
        assert time.monotonic() - started < 1.0  # well under the 1.5 s a fetch may take
    finally:
        listener.close()


def test_jwks_errors_and_garbage_are_503_not_500(make_app, make_token):
    server = JwksServer()
    server.fail = True
    try:
        app = make_app(server.url)
        response = app.test_client().post(URL, headers=bearer(make_token()))
        assert response.status_code == 503
    finally:
        server.close()


def test_cached_keys_keep_working_while_the_jwks_host_is_down(make_app, make_token, signing_key):
    server = JwksServer()
    server.keys.append(signing_key)
    try:
        app = make_app(server.url)
        client = app.test_client()
        assert client.post(URL, headers=bearer(make_token())).status_code == 201
        server.fail = True
        assert client.post(URL, headers=bearer(make_token())).status_code == 201
    finally:
        server.close()


def test_a_key_pulled_from_the_jwks_stops_working_when_the_key_set_is_next_read(
    make_app, make_token
):
    server = JwksServer()
    kept, pulled = SigningKey("kept"), SigningKey("pulled")
    server.keys.extend([kept, pulled])
    try:
        app = make_app(server.url)
        client = app.test_client()
        token = make_token(key=pulled.private_key, kid="pulled")
        assert client.post(URL, headers=bearer(token)).status_code == 201  # verified, cached
        server.keys.remove(pulled)
        assert client.post(URL, headers=bearer(token)).status_code == 201  # the set is fresh
        # The key set's lifespan passes: the next request reads the set again.
        jwks = app.extensions["florent.auth"].sessions.jwks
        assert jwks.jwk_set_cache.lifespan <= 60
        jwks.jwk_set_cache.jwk_set_with_timestamp.timestamp -= jwks.jwk_set_cache.lifespan + 1
        assert_unauthorized(client.post(URL, headers=bearer(token)))
        other = make_token(key=kept.private_key, kid="kept")
        assert client.post(URL, headers=bearer(other)).status_code == 201
    finally:
        server.close()


def test_a_token_that_lives_longer_than_a_day_is_refused(client, make_token):
    now = int(time.time())
    day = 24 * 3600
    assert client.post(URL, headers=bearer(make_token(iat=now, exp=now + day))).status_code == 201
    assert_unauthorized(client.post(URL, headers=bearer(make_token(iat=now, exp=now + day + 1))))


def test_a_person_cannot_pose_as_an_api_key(client, make_token, api_key):
    key_id, _ = api_key
    assert_unauthorized(client.post(URL, headers=bearer(make_token(sub=f"apikey_{key_id}"))))


def test_a_flood_of_bad_tokens_from_one_address_is_rate_limited(make_app, jwks_server, make_token):
    app = make_app(jwks_server.url, auth_failure_limit="5 per minute")
    client = app.test_client()
    flood = {"REMOTE_ADDR": "10.7.7.7"}
    for n in range(5):
        bad = client.get(URL, headers=bearer(f"flk_{n:024x}_{'x' * 43}"), environ_base=flood)
        assert bad.status_code == 401
    limited = client.get(URL, headers=bearer("not-a-token"), environ_base=flood)
    assert limited.status_code == 429
    assert limited.get_json() == {"error": "rate_limited"}
    assert int(limited.headers["Retry-After"]) > 0
    # Only failures count: people who authenticate from that address are served.
    assert client.get(URL, headers=bearer(make_token()), environ_base=flood).status_code == 200
    # Another address is not limited by it.
    elsewhere = client.get(URL, headers=bearer("nope"), environ_base={"REMOTE_ADDR": "10.8.8.8"})
    assert elsewhere.status_code == 401


def test_audience_is_checked_when_configured(make_app, make_token, jwks_server):
    app = make_app(jwks_server.url, audience="client_florent")
    client = app.test_client()
    assert client.post(URL, headers=bearer(make_token(aud="client_florent"))).status_code == 201
    assert_unauthorized(client.post(URL, headers=bearer(make_token(aud="someone_else"))))
    assert_unauthorized(client.post(URL, headers=bearer(make_token())))


def test_production_does_not_trust_the_development_key(make_app, jwks_server):
    dev_app = make_app(jwks_server.url)
    auth = dev_app.extensions["florent.auth"].sessions
    token = auth.dev_key.sign("user_01DEV", "org_01DEV", issuer=auth.issuer)
    assert dev_app.test_client().post(URL, headers=bearer(token)).status_code == 201

    prod = make_app(jwks_server.url, env="production")
    assert prod.extensions["florent.auth"].sessions.dev_key is None
    assert_unauthorized(prod.test_client().post(URL, headers=bearer(token)))


# -- API keys -------------------------------------------------------------------


def test_api_key_authenticates(client, robot):
    assert client.post(URL, headers=robot).status_code == 201


@pytest.mark.parametrize(
    "mangle",
    [
        lambda k: k[:-1] + ("A" if k[-1] != "A" else "B"),  # wrong secret
        lambda k: k[:-1],  # truncated
        lambda k: k + "x",
        lambda k: k.replace("flk_", "flk_0"),
        lambda k: "flk_" + "0" * 24 + k[28:],  # unknown key id, same secret
        lambda k: "flk_",
    ],
)
def test_wrong_or_malformed_api_key_is_401(client, api_key, mangle):
    assert_unauthorized(client.post(URL, headers=bearer(mangle(api_key[1]))))


def test_revoked_api_key_is_401(app, client, api_key, robot):
    assert client.post(URL, headers=robot).status_code == 201
    with app.app_context():
        revoke_api_key(api_key[0], by=TESTER)
    assert_unauthorized(client.post(URL, headers=robot))


def test_only_a_hash_of_the_key_is_stored(app, api_key):
    with app.app_context():
        row = db.session.get(ApiKey, api_key[0])
        secret = api_key_secret(api_key[1])
        assert secret.encode() not in row.secret_hash
        assert len(row.secret_hash) == 32


def test_last_used_is_recorded_but_not_written_on_every_request(app, client, api_key, robot):
    with app.app_context():
        assert db.session.scalar(select(ApiKey.last_used_at).where(ApiKey.id == api_key[0])) is None
    client.post(URL, headers=robot)
    with app.app_context():
        first = db.session.scalar(select(ApiKey.last_used_at).where(ApiKey.id == api_key[0]))
    assert first is not None
    time.sleep(0.01)
    for _ in range(5):
        client.post(URL, headers=robot)
    with app.app_context():
        assert (
            db.session.scalar(select(ApiKey.last_used_at).where(ApiKey.id == api_key[0])) == first
        )


def test_concurrent_requests_with_a_new_key_never_fail(app, api_key, robot):
    client_results: list[int] = []

    def call() -> None:
        client_results.append(app.test_client().post(URL, headers=robot).status_code)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client_results == [201] * 8
