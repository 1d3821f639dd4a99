"""FLORENT_TRUSTED_PROXIES: X-Forwarded-For, -Proto and -Host are believed only from that
many proxy hops in front; with none (the default) they change nothing, in the app or in
gunicorn."""

from __future__ import annotations

import pytest
import requests

from florent.config import ConfigError, read_settings

from .conftest import bearer
from .factories import URL, create_conversation
from .serving import gunicorn
from .test_admin import (  # noqa: F401 (fixtures, found by their names)
    PASSWORD,
    cheap_password_hashes_fixture,
    make_staff,
)
from .test_admin import sign_in as sign_in_from

FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "public.example"}


def test_trusted_proxies_are_read_from_the_environment():
    assert read_settings({}).trusted_proxies == 0
    assert read_settings({"FLORENT_TRUSTED_PROXIES": "2"}).trusted_proxies == 2
    with pytest.raises(ConfigError, match="FLORENT_TRUSTED_PROXIES"):
        read_settings({"FLORENT_TRUSTED_PROXIES": "yes"})


def ws_url(client, caller: dict[str, str], headers: dict[str, str]) -> tuple[str, str]:
    """(the conversation's id, the wsUrl of a ticket asked for with `headers`)."""
    conversation_id = create_conversation(client, caller)["_id"]
    response = client.post(f"{URL}/{conversation_id}/ws-ticket", headers={**caller, **headers})
    assert response.status_code == 201, response.get_json()
    return conversation_id, response.get_json()["wsUrl"]


def test_behind_one_trusted_proxy_the_ws_url_is_the_public_one(app, make_app, jwks_server, alice):
    client = make_app(jwks_server.url, trusted_proxies=1).test_client()
    conversation_id, url = ws_url(client, alice, FORWARDED)
    assert url == f"wss://public.example{URL}/{conversation_id}/ws"


def test_with_no_trusted_proxy_forwarded_headers_leave_the_ws_url_alone(client, alice):
    conversation_id, url = ws_url(client, alice, FORWARDED)
    assert url == f"ws://localhost{URL}/{conversation_id}/ws"


def bad_tokens(client, forwarded_for: list[str]) -> list[int]:
    """Statuses of requests with a bad token, one from each X-Forwarded-For."""
    return [
        client.get(URL, headers={**bearer("bad-token"), "X-Forwarded-For": address}).status_code
        for address in forwarded_for
    ]


def test_behind_one_trusted_proxy_failed_authentications_count_per_client(make_app, jwks_server):
    app = make_app(jwks_server.url, trusted_proxies=1, auth_failure_limit="3 per minute")
    client = app.test_client()
    # The proxy appends the address it saw: only that last one is believed.
    flood = ["203.0.113.7", "10.0.0.1, 203.0.113.7", "203.0.113.7", "203.0.113.7"]
    assert bad_tokens(client, flood) == [401, 401, 401, 429]
    assert bad_tokens(client, ["203.0.113.8", "203.0.113.7, 203.0.113.8"]) == [401, 401]


def test_with_no_trusted_proxy_x_forwarded_for_escapes_no_throttle(make_app, jwks_server):
    client = make_app(jwks_server.url, auth_failure_limit="3 per minute").test_client()
    addresses = ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"]
    assert bad_tokens(client, addresses) == [401, 401, 401, 429]


def sign_in(client, password: str, forwarded_for: str):
    client.environ_base["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return sign_in_from(client, "viewer@florent.test", password)


@pytest.mark.parametrize(
    ("trusted_proxies", "elsewhere"),
    [(1, 302), (0, 429)],
    ids=["one-trusted-proxy", "no-trusted-proxy"],
)
def test_failed_sign_ins_are_counted_per_address_only_when_the_proxy_is_trusted(
    app, make_app, jwks_server, trusted_proxies, elsewhere
):
    make_staff(app, "viewer@florent.test")
    client = make_app(jwks_server.url, trusted_proxies=trusted_proxies).test_client()
    for _ in range(5):
        assert sign_in(client, "wrong password!!", "198.51.100.1").status_code == 401

    assert sign_in(client, PASSWORD, "198.51.100.1").status_code == 429
    # Another client address: its own count behind a trusted proxy; otherwise, a header
    # anyone can send changes nothing.
    assert sign_in(client, PASSWORD, "198.51.100.2").status_code == elsewhere


@pytest.mark.slow  # gunicorn
def test_gunicorn_believes_no_forwarded_header_either(app, database_url, jwks_server, make_token):
    token = make_token("user_01ALICE", "org_01ACME")
    with gunicorn(database_url, jwks_server.url) as service:
        created = requests.post(f"{service.url}{URL}", json={}, headers=bearer(token), timeout=10)
        conversation_id = created.json()["conversation"]["_id"]
        ticket = requests.post(
            f"{service.url}{URL}/{conversation_id}/ws-ticket",
            headers={**bearer(token), **FORWARDED, "X-Forwarded-Ssl": "on"},
            timeout=10,
        )
    assert ticket.status_code == 201
    expected = service.url.replace("http://", "ws://") + f"{URL}/{conversation_id}/ws"
    assert ticket.json()["wsUrl"] == expected
