"""One JSON error shape under /api: never an HTML page, never a bare 500."""

from __future__ import annotations

from sqlalchemy import text

from florent.extensions import db


def test_unknown_api_route_is_json_404(client):
    response = client.get("/api/nothing/here")
    assert response.status_code == 404
    assert response.get_json() == {"error": "not_found"}


def test_wrong_method_is_json_405_with_allow(client, alice):
    response = client.put("/api/florent/conversations", headers=alice)
    assert response.status_code == 405
    assert response.get_json() == {"error": "method_not_allowed"}
    assert "POST" in response.headers["Allow"]


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
