"""The staff admin at /admin, server side: who gets in, what they may do, CSRF, the
sign-in throttle, security headers, and that no secret ever reaches a page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from limits import parse
from sqlalchemy import event, select, text

from florent import admin
from florent.auth.apikeys import issue_api_key
from florent.extensions import db
from florent.models import ApiKey, Conversation, Staff
from florent.staff import accounts as staff

from .factories import api_key_secret

PASSWORD = "correct horse battery staple"
CONVERSATIONS = "/api/florent/conversations"
CSRF_FIELD = re.compile(
    r'name="csrf_token" type="hidden" value="([^"]+)"|'
    r'name="csrf_token" value="([^"]+)"'
)


# -- Helpers ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real scrypt, at a cost that keeps the suite fast (hashes carry their own cost)."""
    monkeypatch.setattr(staff, "PASSWORD_HASH_METHOD", "scrypt:1024:8:1")


@pytest.fixture(autouse=True)
def _fresh_throttle(app: Flask) -> Iterator[None]:
    yield
    app.extensions["florent.signin_throttle"].storage.reset()


def make_staff(app: Flask, email: str, role: str = "viewer") -> str:
    with app.app_context():
        return staff.create_staff(email, role=role, password=PASSWORD).id


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


@pytest.fixture
def viewer(app: Flask, client: FlaskClient) -> FlaskClient:
    make_staff(app, "viewer@florent.test", "viewer")
    assert sign_in(client, "viewer@florent.test").status_code == 302
    return client


@pytest.fixture
def administrator(app: Flask, client: FlaskClient) -> FlaskClient:
    make_staff(app, "admin@florent.test", "admin")
    assert sign_in(client, "admin@florent.test").status_code == 302
    return client


@pytest.fixture
def conversation(app: Flask, alice: dict[str, str]) -> dict[str, Any]:
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


@pytest.fixture
def sql_statements(app: Flask) -> Iterator[list[str]]:
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

    details = viewer.get(f"/admin/conversations/details/?id={conversation['_id']}")
    assert details.status_code == 200
    page = details.get_data(as_text=True)
    assert page.index("First, the budget.") < page.index("Then, the hiring plan.")

    messages = viewer.get("/admin/messages/").get_data(as_text=True)
    assert "Then, the hiring plan." in messages and conversation["_id"] in messages


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
        key, _ = issue_api_key("org_01ACME", "CI robot")
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
    with app.app_context():
        issue_api_key("org_01ACME", "CI robot")

    assert "/admin/staff/" in administrator.get("/admin/").get_data(as_text=True)
    keys = administrator.get("/admin/api-keys/").get_data(as_text=True)
    assert "/admin/api-keys/new/" in keys and "/admin/api-keys/revoke/" in keys
    people = administrator.get("/admin/staff/").get_data(as_text=True)
    assert "admin@florent.test" in people and "/admin/staff/deactivate/" in people


def test_nothing_in_the_admin_can_change_a_conversation(administrator, conversation):
    for url in (
        "/admin/conversations/new/",
        f"/admin/conversations/edit/?id={conversation['_id']}",
    ):
        assert administrator.get(url).status_code == 302  # Flask-Admin sends it back to the list
    page = administrator.get("/admin/conversations/").get_data(as_text=True)
    assert "/admin/conversations/edit/" not in page and "/admin/conversations/delete/" not in page


# -- Issuing and revoking API keys ----------------------------------------------


def test_admin_issues_a_key_and_sees_its_plaintext_only_once(app, administrator):
    form = administrator.get("/admin/api-keys/new/").get_data(as_text=True)
    data = {
        "org_id": "org_01ACME",
        "name": "CI robot",
        "csrf_token": csrf_token(form),
        "once": re.search(r'name="once" type="hidden" value="([^"]+)"', form).group(1),
    }
    created = administrator.post("/admin/api-keys/new/", data=data)

    assert created.status_code == 200
    assert created.headers["Cache-Control"] == "no-store"
    plaintext = re.search(r"flk_[0-9a-f]{24}_[A-Za-z0-9_-]{43}", created.get_data(as_text=True))
    assert plaintext, "the plaintext key is on the confirmation page"
    plaintext = plaintext.group(0)
    response = app.test_client().get(
        CONVERSATIONS, headers={"Authorization": f"Bearer {plaintext}"}
    )
    assert response.status_code == 200, "the key shown works"

    # Submitting the same form again (a reload) issues nothing and shows nothing.
    again = administrator.post("/admin/api-keys/new/", data=data)
    assert again.status_code == 303
    with app.app_context():
        assert len(db.session.scalars(select(ApiKey)).all()) == 1
    secret = api_key_secret(plaintext)
    for url in ("/admin/api-keys/", again.location, "/admin/"):
        page = administrator.get(url).get_data(as_text=True)
        assert secret not in page


def test_issuing_a_key_validates_its_fields(app, administrator):
    form = administrator.get("/admin/api-keys/new/").get_data(as_text=True)
    data = {"org_id": "org_01ACME", "name": "x" * 101, "csrf_token": csrf_token(form)}
    response = administrator.post("/admin/api-keys/new/", data=data)

    assert response.status_code == 200
    assert "Field cannot be longer than 100 characters." in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalars(select(ApiKey)).all() == []


def test_admin_revokes_a_key_after_confirming(app, administrator):
    with app.app_context():
        key, plaintext = issue_api_key("org_01ACME", "CI robot")
        key_id = key.id

    confirm = administrator.get(f"/admin/api-keys/revoke/?id={key_id}")
    assert confirm.status_code == 200 and "Revoke API key CI robot?" in confirm.get_data(
        as_text=True
    )
    response = administrator.post(
        f"/admin/api-keys/revoke/?id={key_id}",
        data={"csrf_token": csrf_token(confirm.get_data(as_text=True))},
    )

    assert response.status_code == 303
    with app.app_context():
        assert db.session.get(ApiKey, key_id).revoked_at is not None
    api = app.test_client().get(CONVERSATIONS, headers={"Authorization": f"Bearer {plaintext}"})
    assert api.status_code == 401


def test_admin_deactivates_staff_who_are_then_signed_out(app, administrator):
    other = app.test_client()
    staff_id = make_staff(app, "other@florent.test")
    assert sign_in(other, "other@florent.test").status_code == 302

    confirm = administrator.get(f"/admin/staff/deactivate/?id={staff_id}").get_data(as_text=True)
    response = administrator.post(
        f"/admin/staff/deactivate/?id={staff_id}", data={"csrf_token": csrf_token(confirm)}
    )

    assert response.status_code == 303
    assert other.get("/admin/").status_code == 302


def test_admin_cannot_deactivate_themselves_in_the_admin(app, administrator):
    with app.app_context():
        own_id = db.session.scalars(select(Staff.id)).one()
    page = administrator.get("/admin/staff/").get_data(as_text=True)
    response = administrator.post(
        f"/admin/staff/deactivate/?id={own_id}", data={"csrf_token": csrf_token(page)}
    )

    assert response.status_code == 303
    assert administrator.get("/admin/").status_code == 200


# -- CSRF ------------------------------------------------------------------------


def test_a_post_without_a_csrf_token_is_refused(app, administrator):
    with app.app_context():
        key, _ = issue_api_key("org_01ACME", "CI robot")
        key_id = key.id
    attempts = [
        ("/admin/api-keys/new/", {"org_id": "org_01ACME", "name": "Forged"}),
        (f"/admin/api-keys/revoke/?id={key_id}", {}),
        ("/admin/logout", {}),
    ]
    for url, data in attempts:
        assert administrator.post(url, data=data).status_code == 400, url
        forged = administrator.post(url, data={**data, "csrf_token": "forged"})
        assert forged.status_code == 400, url

    with app.app_context():
        assert db.session.scalars(select(ApiKey)).one().revoked_at is None
    assert administrator.get("/admin/").status_code == 200, "still signed in"


def test_login_without_a_csrf_token_is_refused(app, client):
    make_staff(app, "viewer@florent.test")
    response = client.post(
        "/admin/login", data={"email": "viewer@florent.test", "password": PASSWORD}
    )
    assert response.status_code == 400
    assert client.get("/admin/").status_code == 302


def test_the_json_api_needs_no_csrf_token(app, client, alice):
    # Even with a staff session cookie in the same client.
    make_staff(app, "viewer@florent.test")
    sign_in(client, "viewer@florent.test")
    assert client.post(CONVERSATIONS, json={}, headers=alice).status_code == 201


# -- Signing in and out ------------------------------------------------------------


def test_bad_credentials_get_one_answer_whether_or_not_the_email_exists(app, client):
    make_staff(app, "viewer@florent.test")

    def attempt(email: str):
        response = sign_in(client, email, "wrong password!!")
        return response.status_code, re.sub(r'value="[^"]*"', "", response.get_data(as_text=True))

    wrong_password = attempt("viewer@florent.test")
    unknown_email = attempt("nobody@florent.test")
    assert wrong_password == unknown_email
    assert wrong_password[0] == 401 and "Invalid email or password." in wrong_password[1]


def test_email_is_matched_without_regard_to_case(app, client):
    make_staff(app, "Viewer@Florent.test")
    assert sign_in(client, "  VIEWER@florent.TEST ").status_code == 302


def test_signing_in_records_the_time(app, client):
    make_staff(app, "viewer@florent.test")
    sign_in(client, "viewer@florent.test")
    with app.app_context():
        assert db.session.scalars(select(Staff)).one().last_login_at is not None


def allowed(limit: str) -> int:
    return parse(limit).amount


def test_repeated_failures_for_one_account_from_one_address_are_throttled(app, client):
    make_staff(app, "viewer@florent.test")
    make_staff(app, "other@florent.test")
    for _ in range(allowed(admin.signin.FAILURES_PER_ACCOUNT_AND_ADDRESS)):
        assert sign_in(client, "viewer@florent.test", "wrong password!!").status_code == 401

    # Refused even with the right password, with a message that gives nothing away.
    refused = sign_in(client, "viewer@florent.test")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert "Too many failed sign-in attempts" in refused.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302
    # Other accounts are not locked out by it, nor is the owner somewhere else.
    assert sign_in(client, "other@florent.test").status_code == 302
    elsewhere = app.test_client()
    assert sign_in(elsewhere, "viewer@florent.test", address="10.1.2.3").status_code == 302


def test_a_flood_from_one_address_locks_out_that_address_only(app, client):
    make_staff(app, "viewer@florent.test")
    flooded = "10.6.6.6"
    for n in range(allowed(admin.signin.FAILURES_PER_ADDRESS)):
        failed = sign_in(client, f"guess{n}@florent.test", "wrong password!!", address=flooded)
        assert failed.status_code == 401
    assert sign_in(client, "viewer@florent.test", address=flooded).status_code == 429

    owner = sign_in(app.test_client(), "viewer@florent.test", address="10.1.2.3")
    assert owner.status_code == 302


def test_a_deactivated_account_is_signed_out_and_cannot_sign_in(app, viewer):
    assert viewer.get("/admin/").status_code == 200
    with app.app_context():
        staff.deactivate_staff("viewer@florent.test")

    assert viewer.get("/admin/").status_code == 302
    assert sign_in(viewer, "viewer@florent.test").status_code == 401


def test_sign_out_ends_the_session(viewer):
    page = viewer.get("/admin/").get_data(as_text=True)
    response = viewer.post("/admin/logout", data={"csrf_token": csrf_token(page)})

    assert response.status_code == 302 and response.location == "/admin/login"
    assert viewer.get("/admin/").location.startswith("/admin/login")
    assert viewer.get("/admin/logout").status_code == 405


def test_a_cookie_copied_before_sign_out_is_refused_after_it(app, viewer):
    copied = app.test_client()
    copied.set_cookie("session", viewer.get_cookie("session").value)
    assert copied.get("/admin/").status_code == 200

    page = viewer.get("/admin/").get_data(as_text=True)
    assert viewer.post("/admin/logout", data={"csrf_token": csrf_token(page)}).status_code == 302

    assert copied.get("/admin/").location.startswith("/admin/login")
    # Signing in again opens a new session; the copy stays dead.
    assert sign_in(viewer, "viewer@florent.test").status_code == 302
    assert copied.get("/admin/").location.startswith("/admin/login")


def test_a_session_ends_twelve_hours_after_sign_in_however_active(viewer):
    assert viewer.get("/admin/").status_code == 200
    with viewer.session_transaction("/admin/") as session:
        session["signed_in_at"] -= 12 * 3600 - 60
    assert viewer.get("/admin/").status_code == 200  # still within its twelve hours
    with viewer.session_transaction("/admin/") as session:
        session["signed_in_at"] -= 120
    assert viewer.get("/admin/").location.startswith("/admin/login")


def test_session_cookie_is_httponly_and_samesite_lax(app, client):
    make_staff(app, "viewer@florent.test")
    cookie = sign_in(client, "viewer@florent.test").headers["Set-Cookie"]

    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie, "development serves plain http on loopback"


def test_session_cookie_is_secure_in_production(make_app):
    production = make_app(None, env="production")
    assert production.config["SESSION_COOKIE_SECURE"] is True
    assert production.config["SESSION_COOKIE_HTTPONLY"] is True
    assert production.config["SESSION_COOKIE_SAMESITE"] == "Lax"


# -- Headers and assets ------------------------------------------------------------


def test_admin_and_login_pages_forbid_framing_and_sniffing(viewer, conversation):
    anonymous = viewer.application.test_client()
    responses = [
        anonymous.get("/admin/login"),
        anonymous.get("/admin/"),
        viewer.get("/admin/"),
        viewer.get("/admin/conversations/"),
        viewer.get(f"/admin/conversations/details/?id={conversation['_id']}"),
        viewer.get("/admin/staff/"),  # a 403
    ]
    for response in responses:
        headers = response.headers
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        policy = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


def test_inline_scripts_carry_this_responses_nonce(viewer):
    response = viewer.get("/admin/conversations/")
    nonce = re.search(r"'nonce-([^']+)'", response.headers["Content-Security-Policy"]).group(1)
    page = response.get_data(as_text=True)
    scripts = re.findall(r"<script[^>]*>", page)
    assert scripts and all(f'nonce="{nonce}"' in tag for tag in scripts)
    assert (
        viewer.get("/admin/conversations/").headers["Content-Security-Policy"]
        != (response.headers["Content-Security-Policy"])
    ), "a fresh nonce per response"


def test_assets_are_served_locally(app, viewer):
    for page in (viewer.get("/admin/conversations/"), app.test_client().get("/admin/login")):
        html = page.get_data(as_text=True)
        urls = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert not [u for u in urls if re.match(r"(https?:)?//", u)], "nothing from another host"
        assets = [u for u in urls if u.startswith("/admin/static/")]
        assert assets
        for url in assets:
            with viewer.get(url) as asset:  # a file response: close it
                assert asset.status_code == 200, url


# -- Staying fast on big tables ---------------------------------------------------


def test_lists_never_count_their_rows(viewer, conversation, sql_statements):
    for url in ("/admin/conversations/", "/admin/messages/", "/admin/api-keys/?search=x"):
        assert viewer.get(url).status_code == 200
    assert sql_statements
    assert not [s for s in sql_statements if "count(" in s.lower()]


def test_index_counts_exactly_while_tables_are_small(app, viewer, conversation):
    with app.app_context():
        issue_api_key("org_01ACME", "live")
        revoked, _ = issue_api_key("org_01ACME", "dead")
        db.session.execute(
            text("UPDATE api_keys SET revoked_at = now() WHERE id = :id"), {"id": revoked.id}
        )
        db.session.commit()

    page = viewer.get("/admin/").get_data(as_text=True)
    counts = re.findall(r'<p class="h3 mb-0">([^<]+)</p>', page)
    assert counts == ["1", "2", "1"]  # conversations, messages, active keys
    assert "about" not in page


def test_index_shows_postgres_estimate_for_large_tables(app, viewer, conversation, monkeypatch):
    monkeypatch.setattr(admin.views, "ESTIMATE_ROWS_ABOVE", 1_000_000)
    # Pretend the planner's statistics say the tables are large (the tests' role is a
    # superuser); ANALYZE at the end puts the real figures back for later tests.
    with app.app_context():
        db.session.execute(
            text(
                "UPDATE pg_class SET reltuples = CASE relname WHEN 'conversations' THEN 2500000"
                " ELSE 7000000 END WHERE relname IN ('conversations', 'messages')"
            )
        )
        db.session.commit()
    try:
        page = viewer.get("/admin/").get_data(as_text=True)
    finally:
        with app.app_context():
            db.session.execute(text("ANALYZE conversations, messages"))
            db.session.commit()
    counts = re.findall(r'<p class="h3 mb-0">([^<]+)</p>', page)
    assert counts[:2] == ["about 2,500,000", "about 7,000,000"]
    assert "estimate" in page


# -- Search and filters -------------------------------------------------------------


def test_conversations_are_searched_by_title_owner_and_organization(app, viewer, conversation, bob):
    app.test_client().post(CONVERSATIONS, json={"title": "Office party"}, headers=bob)

    def titles(query: str) -> set[str]:
        page = viewer.get(f"/admin/conversations/?search={query}").get_data(as_text=True)
        return {t for t in ("Quarterly roadmap", "Office party") if t in page}

    assert titles("roadmap") == {"Quarterly roadmap"}
    assert titles("01BOB") == {"Office party"}
    assert titles("org_01ACME") == {"Quarterly roadmap", "Office party"}


def test_conversations_filter_by_organization(app, viewer, conversation, alice_elsewhere):
    app.test_client().post(CONVERSATIONS, json={"title": "Elsewhere"}, headers=alice_elsewhere)
    view = next(v for v in app.extensions["admin"][0]._views if v.endpoint == "conversations")
    index = next(i for i, f in enumerate(view._filters) if f.name == "Organization")

    page = viewer.get(f"/admin/conversations/?flt0_{index}=org_02OTHER").get_data(as_text=True)
    assert "Elsewhere" in page and "Quarterly roadmap" not in page


def test_conversations_list_newest_first(app, viewer):
    # Ids begin with their creation second: these two were made 100 s apart.
    with app.app_context():
        for object_id, title in (
            ("6b49d200" + "f" * 16, "Older"),
            ("6b49d264" + "0" * 16, "Newer"),
        ):
            db.session.add(
                Conversation(id=object_id, org_id="o", user_id="u", title=title, model="m")
            )
        db.session.commit()

    page = viewer.get("/admin/conversations/").get_data(as_text=True)
    assert page.index("Newer") < page.index("Older")

    # The "Created" header sorts (by id, which the primary key index serves).
    ascending = re.search(r'<a href="([^"]+)" title="Sort by Created"', page).group(1)
    page = viewer.get(ascending.replace("&amp;", "&")).get_data(as_text=True)
    assert page.index("Older") < page.index("Newer")


# -- Secrets ------------------------------------------------------------------------


def test_no_secret_ever_reaches_a_page(app, administrator, conversation):
    with app.app_context():
        key, plaintext = issue_api_key("org_01ACME", "CI robot")
        secret_hash = key.secret_hash.hex()
        password_hash = db.session.scalars(select(Staff)).one().password_hash
    pages = [
        "/admin/",
        "/admin/conversations/",
        f"/admin/conversations/details/?id={conversation['_id']}",
        "/admin/messages/",
        "/admin/api-keys/",
        "/admin/api-keys/?search=CI",
        f"/admin/api-keys/revoke/?id={key.id}",
        "/admin/staff/",
        "/admin/staff/?search=admin",
    ]
    secrets = (plaintext, api_key_secret(plaintext), secret_hash, password_hash, PASSWORD)
    for url in pages:
        response = administrator.get(url)
        assert response.status_code == 200, url
        page = response.get_data(as_text=True)
        assert not [s for s in secrets if s in page], url
        assert "secret_hash" not in page and "password_hash" not in page, url
