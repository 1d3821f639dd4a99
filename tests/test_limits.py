"""Request size and per-caller rate limits."""

from __future__ import annotations

from .factories import URL


def test_a_two_mebibyte_body_is_413_json(client, alice):
    response = client.post(
        URL,
        data=b"{" + b" " * (2 * 1024 * 1024) + b"}",
        headers={**alice, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.get_json() == {"error": "payload_too_large"}


def test_callers_over_their_limit_get_429_with_retry_after(make_app, jwks_server, alice, bob):
    app = make_app(jwks_server.url, rate_limit="3 per minute")
    client = app.test_client()

    statuses = [client.get(URL, headers=alice).status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]
    response = client.get(URL, headers=alice)
    assert response.status_code == 429
    assert response.get_json() == {"error": "rate_limited"}
    assert 1 <= int(response.headers["Retry-After"]) <= 61
    # The limit is the caller's own: another member is unaffected.
    assert client.get(URL, headers=bob).status_code == 200


def test_the_limit_follows_the_caller_not_the_token(make_app, jwks_server, make_token):
    app = make_app(jwks_server.url, rate_limit="2 per minute")
    client = app.test_client()
    tokens = [make_token("user_01ALICE", "org_01ACME", jti=f"j{i}") for i in range(3)]

    statuses = [
        client.get(URL, headers={"Authorization": f"Bearer {t}"}).status_code for t in tokens
    ]
    assert statuses == [200, 200, 429]


def test_rate_limits_can_be_switched_off(make_app, jwks_server, alice):
    app = make_app(jwks_server.url, rate_limit="1 per minute", rate_limit_enabled=False)
    client = app.test_client()
    assert [client.get(URL, headers=alice).status_code for _ in range(3)] == [200, 200, 200]


def test_health_endpoints_are_not_rate_limited(make_app, jwks_server):
    app = make_app(jwks_server.url, rate_limit="1 per minute")
    client = app.test_client()
    assert [client.get("/healthz").status_code for _ in range(3)] == [200, 200, 200]
