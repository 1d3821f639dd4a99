"""One JSON error shape under /api: never an HTML page, never a bare 500."""

from __future__ import annotations

import pytest
import requests
from sqlalchemy import text

from florent.extensions import db

from .serving import gunicorn


def test_unknown_api_route_is_json_404(client):
    response = client.get("/api/nothing/here")
    assert response.status_code == 404
    assert response.get_json() == {"error": "not_found"}


def test_wrong_method_is_json_405_with_allow(client, alice):
    response = client.put("/api/florent/conversations", headers=alice)
    assert response.status_code == 405
    assert response.get_json() == {"error": "method_not_allowed"}
    assert "POST" in response.headers["Allow"]


def test_options_is_204_with_allow_and_no_body(client, alice):
    response = client.options("/api/florent/conversations", headers=alice)
    assert response.status_code == 204
    assert {"GET", "POST", "DELETE"} <= set(response.headers["Allow"].split(", "))
    assert "Content-Type" not in response.headers
    assert response.data == b""


def test_unexpected_error_is_json_500_and_logged(make_app, caplog, jwks_server, alice):
    app = make_app(jwks_server.url)

    @app.get("/api/boom")
    def boom():
        raise RuntimeError("kaboom")

    response = app.test_client().get("/api/boom", headers=alice)
    assert response.status_code == 500
    assert response.get_json() == {"error": "internal_error"}
    assert "kaboom" in caplog.text


def test_database_data_errors_are_a_json_400_not_a_500(make_app, jwks_server):
    app = make_app(jwks_server.url)

    @app.get("/api/nul")
    def nul():
        db.session.execute(text("SELECT CAST(:v AS integer)"), {"v": "not a number"})
        return "unreachable"

    response = app.test_client().get("/api/nul")
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_body"


def test_body_over_one_mebibyte_is_json_413(client, alice):
    response = client.post(
        "/api/florent/conversations",
        data=b'{"title": "' + b"x" * (1024 * 1024) + b'"}',
        headers={**alice, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.get_json() == {"error": "payload_too_large"}


def chunked(base_url: str, path: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    """A POST whose body is sent chunked, with no Content-Length."""
    pieces = (body[i : i + 65536] for i in range(0, len(body), 65536))
    return requests.post(f"{base_url}{path}", data=pieces, headers=headers, timeout=30)


def assert_chunked_bodies_are_limited(base_url: str, headers: dict[str, str]) -> None:
    """Valid JSON padded past the limit with more after it: read up to the limit only,
    it would pass for a whole body."""
    body = b'{"title": "cut"}' + b" " * (1024 * 1024) + b"tail"
    response = chunked(base_url, "/api/florent/conversations", body, headers)
    assert (response.status_code, response.json()) == (413, {"error": "payload_too_large"})

    exactly = b'{"title": "whole"}'.ljust(1024 * 1024)
    response = chunked(base_url, "/api/florent/conversations", exactly, headers)
    assert response.status_code == 201, response.text


def test_a_chunked_body_over_one_mebibyte_is_413_not_cut_short(live_server, alice):
    assert_chunked_bodies_are_limited(live_server, alice)


@pytest.mark.slow  # gunicorn
def test_a_chunked_body_over_one_mebibyte_is_413_under_gunicorn_too(
    app, database_url, jwks_server, alice
):
    """json_body asks the server's own stream whether more followed: gunicorn's, here."""
    with gunicorn(database_url, jwks_server.url) as service:
        assert_chunked_bodies_are_limited(service.url, alice)


def test_a_body_over_one_mebibyte_is_413_where_the_view_reads_none(client, alice):
    response = client.delete(
        "/api/florent/conversations", data=b"x" * (1024 * 1024 + 1), headers=alice
    )
    assert response.status_code == 413
    assert response.get_json() == {"error": "payload_too_large"}
