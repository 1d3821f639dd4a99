"""The staff admin at /admin, server side: who gets in and what each may see.

The admin's fixtures live here too; the other test_admin_*.py modules import them (by
their `*_fixture` names, so a test's argument does not shadow an import). What they
prove: test_admin_signin.py (signing in and out), test_admin_changes.py (issuing and
revoking keys, deactivating staff, CSRF), test_admin_pages.py (headers, "Not found",
secrets), test_admin_lists.py (lists: order, search, speed), test_admin_conversation.py
(a conversation's messages, by pages)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, select

from florent.auth.apikeys import issue_api_key
from florent.extensions import db
from florent.models import ApiKey
from florent.staff import accounts as staff

from .factories import TESTER

PASSWORD = "correct horse battery staple"
CONVERSATIONS = "/api/florent/conversations"
CSRF_FIELD = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|'
    r'name="csrf_token" value="([^"]+)"'
)


# -- Helpers ---------------------------------------------------------------------


@pytest.fixture(autouse=True, name="cheap_password_hashes")
def cheap_password_hashes_fixture(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real scrypt, at a cost that keeps the suite fast (hashes carry their own cost)."""
    monkeypatch.setattr(staff, "PASSWORD_HASH_METHOD", "scrypt:1024:8:1")


def make_staff(app: Flask, email: str, role: str = "viewer") -> str:
    with app.app_context():
        return staff.create_staff(email, role=role, password=PASSWORD, by=TESTER).id


def csrf_token(page: str) -> str:
    match = CSRF_FIELD.search(page)
    assert match, "no CSRF token in the page"
    return match.group(1) or match.group(2)


def sign_in(
    client: FlaskClient, email: str, password: str = PASSWORD, *, address: str = "127.0.0.1"
):
    token = csrf_token(client.get("/admin/login").get_data(as_text=True))
    return client.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf_token": token},
        environ_base={"REMOTE_ADDR": address},
    )


@pytest.fixture(name="viewer")
def viewer_fixture(app: Flask, client: FlaskClient) -> FlaskClient:
    make_staff(app, "viewer@florent.test", "viewer")
    assert sign_in(client, "viewer@florent.test").status_code == 302
    return client


@pytest.fixture(name="administrator")
def administrator_fixture(app: Flask, client: FlaskClient) -> FlaskClient:
    make_staff(app, "admin@florent.test", "admin")
    assert sign_in(client, "admin@florent.test").status_code == 302
    return client


@pytest.fixture(name="conversation")
def conversation_fixture(app: Flask, alice: dict[str, str]) -> dict[str, Any]:
    """A conversation of alice's with two messages, made through the API."""
    api = app.test_client()
    made = api.post(CONVERSATIONS, json={"title": "Quarterly roadmap"}, headers=alice).get_json()
    conversation_id = made["conversation"]["_id"]
    for content in ("First, the budget.", "Then, the hiring plan."):
        response = api.post(
            f"{CONVERSATIONS}/{conversation_id}/messages", json={"content": content}, headers=alice
        )
        assert response.status_code == 201
    return made["conversation"]


def admin_urls(app: Flask) -> list[tuple[str, set[str]]]:
    """Every route under /admin (but the sign-in pages and static assets), with its methods."""
    return sorted(
        (rule.rule, set(rule.methods or ()) - {"HEAD", "OPTIONS"})
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/admin")
        and not rule.arguments
        and rule.endpoint not in ("staff_auth.login", "staff_auth.logout")
    )


@pytest.fixture(name="sql_statements")
def sql_statements_fixture(app: Flask) -> Iterator[list[str]]:
    """Every SQL statement the app runs during the test."""
    statements: list[str] = []

    def record(conn, cursor, statement, *args: Any) -> None:
        statements.append(statement)

    with app.app_context():
        engines = list(db.engines.values())
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    yield statements
    for engine in engines:
        event.remove(engine, "before_cursor_execute", record)


# -- Who gets in -----------------------------------------------------------------


def test_anonymous_is_sent_to_the_login_page_from_every_admin_page(app, client):
    routes = admin_urls(app)
    assert {"/admin/", "/admin/conversations/", "/admin/api-keys/new/", "/admin/staff/"} <= {
        rule for rule, _ in routes
    }
    token = csrf_token(client.get("/admin/login").get_data(as_text=True))
    for rule, methods in routes:
        for method in methods:
            data = {"csrf_token": token} if method == "POST" else None
            response = client.open(rule, method=method, data=data)
            assert response.status_code == 302, (method, rule)
            assert response.location.startswith("/admin/login?next="), (method, rule)


def test_login_redirects_back_to_the_page_asked_for(app, client):
    make_staff(app, "viewer@florent.test")
    bounced = client.get("/admin/messages/?search=x")
    assert bounced.location == "/admin/login?next=/admin/messages/?search%3Dx"

    token = csrf_token(client.get(bounced.location).get_data(as_text=True))
    response = client.post(
        bounced.location,
        data={"email": "viewer@florent.test", "password": PASSWORD, "csrf_token": token},
    )
    assert response.status_code == 302
    assert response.location == "/admin/messages/?search=x"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.test/admin/",
        "//evil.test/admin/",
        "/api/x",
        "/\\evil.test",
        "/admin/\r\nSet-Cookie: x=1",
        "/admin/\x00",
        "/admin/\t",
    ],
)
def test_login_never_redirects_off_the_admin(app, client, target):
    make_staff(app, "viewer@florent.test")
    token = csrf_token(client.get("/admin/login").get_data(as_text=True))
    response = client.post(
        "/admin/login",
        query_string={"next": target},
        data={"email": "viewer@florent.test", "password": PASSWORD, "csrf_token": token},
    )
    assert response.location == "/admin/"


def test_viewer_browses_conversations_and_messages(viewer, conversation):
    listing = viewer.get("/admin/conversations/")
    assert listing.status_code == 200
    page = listing.get_data(as_text=True)
    for value in ("Quarterly roadmap", "org_01ACME", "user_01ALICE", "florent-test-model"):
        assert value in page

    details = viewer.get(f"/admin/conversations/details/?id=org_01ACME,{conversation['_id']}")
    assert details.status_code == 200
    page = details.get_data(as_text=True)
    assert page.index("First, the budget.") < page.index("Then, the hiring plan.")

    messages = viewer.get("/admin/messages/").get_data(as_text=True)
    assert "Quarterly roadmap" in messages and conversation["_id"] in messages
    assert "hiring plan" not in messages  # contents only where opening them is recorded


def test_the_staff_session_cookie_is_neither_read_nor_written_outside_the_admin(
    viewer, alice, conversation
):
    """The signed-in browser sends its cookie everywhere; only /admin uses it."""
    for response in (
        viewer.get(CONVERSATIONS, headers=alice),
        viewer.get("/healthz"),
        viewer.get(CONVERSATIONS),  # the cookie alone is no way into the API
    ):
        assert "Set-Cookie" not in response.headers
        assert "Cookie" not in response.headers.get("Vary", "")
    assert viewer.get(CONVERSATIONS).status_code == 401
    assert viewer.get("/admin/conversations/").status_code == 200  # still signed in there


def test_admin_static_files_leave_the_session_cookie_alone(viewer):
    """A stylesheet answered after the next page must not put an older cookie back."""
    page = viewer.get("/admin/api-keys/")
    assert page.status_code == 200 and "Set-Cookie" in page.headers  # pages keep it fresh
    with viewer.get("/admin/static/admin/js/helpers.js") as static:
        assert static.status_code == 200
        assert "Set-Cookie" not in static.headers


def test_viewer_sees_api_keys_but_cannot_issue_or_revoke_them(app, viewer):
    with app.app_context():
        key, _ = issue_api_key("org_01ACME", "CI robot", by=TESTER)
        key_id = key.id

    page = viewer.get("/admin/api-keys/").get_data(as_text=True)
    assert "CI robot" in page and f"flk_{key_id[:8]}" in page
    assert "/admin/api-keys/new/" not in page and "/admin/api-keys/revoke/" not in page

    token = csrf_token(page)
    assert viewer.get("/admin/api-keys/new/").status_code == 403
    create = {"org_id": "org_01ACME", "name": "Sneaky", "csrf_token": token}
    assert viewer.post("/admin/api-keys/new/", data=create).status_code == 403
    assert viewer.get(f"/admin/api-keys/revoke/?id={key_id}").status_code == 403
    revoke = viewer.post(f"/admin/api-keys/revoke/?id={key_id}", data={"csrf_token": token})
    assert revoke.status_code == 403
    with app.app_context():
        assert db.session.scalars(select(ApiKey)).one().revoked_at is None


def test_viewer_cannot_open_staff_and_does_not_see_it_in_the_menu(app, viewer):
    staff_id = make_staff(app, "other@florent.test")

    assert "/admin/staff/" not in viewer.get("/admin/").get_data(as_text=True)
    assert viewer.get("/admin/staff/").status_code == 403
    assert viewer.get(f"/admin/staff/deactivate/?id={staff_id}").status_code == 403


def test_admin_sees_everything_a_viewer_cannot(app, administrator):
    make_staff(app, "other@florent.test")
    with app.app_context():
        issue_api_key("org_01ACME", "CI robot", by=TESTER)

    assert "/admin/staff/" in administrator.get("/admin/").get_data(as_text=True)
    keys = administrator.get("/admin/api-keys/").get_data(as_text=True)
    assert "/admin/api-keys/new/" in keys and "/admin/api-keys/revoke/" in keys
    people = administrator.get("/admin/staff/").get_data(as_text=True)
    assert "admin@florent.test" in people and "/admin/staff/deactivate/" in people


def test_nothing_in_the_admin_can_change_a_conversation(administrator, conversation):
    for url in (
        "/admin/conversations/new/",
        f"/admin/conversations/edit/?id=org_01ACME,{conversation['_id']}",
    ):
        assert administrator.get(url).status_code == 302  # Flask-Admin sends it back to the list
    page = administrator.get("/admin/conversations/").get_data(as_text=True)
    assert "/admin/conversations/edit/" not in page and "/admin/conversations/delete/" not in page
