"""What an admin may change: issue and revoke API keys, deactivate staff; every change
is asked for first and carries a CSRF token."""

from __future__ import annotations

import re

from sqlalchemy import select

from florent.auth.apikeys import issue_api_key, revoke_api_key
from florent.extensions import db
from florent.models import ApiKey, Staff
from florent.staff import accounts

from .factories import TESTER, api_key_secret
from .test_admin import (  # noqa: F401 (fixtures, found by their names)
    CONVERSATIONS,
    PASSWORD,
    administrator_fixture,
    cheap_password_hashes_fixture,
    csrf_token,
    make_staff,
    sign_in,
    viewer_fixture,
)

TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


def list_rows(page: str) -> list[dict[str, str]]:
    """The rows of a Flask-Admin list: each cell's HTML, by the cell's class."""
    start = page.index("</thead>")
    table = page[start : page.index("</table>", start)]
    return [
        dict(re.findall(r'<td class="([^"]+)">(.*?)</td>', row, re.S))
        for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)
    ]


def text_of(cell: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", cell).split())


# -- Issuing and revoking API keys ----------------------------------------------


def test_admin_issues_a_key_and_sees_its_plaintext_only_once(app, administrator):
    form = administrator.get("/admin/api-keys/new/").get_data(as_text=True)
    data = {
        "org_id": "org_01ACME",
        "name": "CI robot",
        "permissions": ["conversations:read", "conversations:write"],  # checked by default
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
        key, plaintext = issue_api_key("org_01ACME", "CI robot", by=TESTER)
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


def test_an_admin_is_offered_to_deactivate_others_but_not_themselves(app, administrator):
    other_id = make_staff(app, "other@florent.test")
    make_staff(app, "gone@florent.test")
    with app.app_context():
        accounts.deactivate_staff("gone@florent.test", by=TESTER)
        own_id = db.session.scalar(select(Staff.id).where(Staff.email == "admin@florent.test"))

    page = administrator.get("/admin/staff/").get_data(as_text=True)

    assert '<th class="column-header col-actions">Actions</th>' in page
    rows = {text_of(row["col-email"]): row for row in list_rows(page)}
    assert text_of(rows["other@florent.test"]["list-buttons-column"]) == "Deactivate…"
    assert (
        f"/admin/staff/deactivate/?id={other_id}"
        in rows["other@florent.test"]["list-buttons-column"]
    )
    assert text_of(rows["admin@florent.test"]["list-buttons-column"]) == ""
    assert text_of(rows["gone@florent.test"]["list-buttons-column"]) == ""
    assert [text_of(rows[email]["col-active"]) for email in sorted(rows)] == ["yes", "no", "yes"]
    assert own_id not in page


def test_the_staff_list_says_how_long_a_password_must_be(administrator):
    page = administrator.get("/admin/staff/").get_data(as_text=True)
    assert f"at least {accounts.MIN_PASSWORD_LENGTH} characters" in page


def test_api_keys_list_shows_revocation_times_and_revoke_buttons_apart(app, administrator):
    with app.app_context():
        live_id = issue_api_key("org_01ACME", "Live robot", by=TESTER)[0].id
        dead_id = issue_api_key("org_01ACME", "Dead robot", by=TESTER)[0].id
        revoke_api_key(dead_id, by=TESTER)

    page = administrator.get("/admin/api-keys/").get_data(as_text=True)

    assert '<th class="column-header col-actions">Actions</th>' in page
    rows = {text_of(row["col-name"]): row for row in list_rows(page)}
    assert TIME.fullmatch(text_of(rows["Dead robot"]["col-revoked_at"]))
    assert text_of(rows["Live robot"]["col-revoked_at"]) == ""
    assert text_of(rows["Live robot"]["list-buttons-column"]) == "Revoke…"
    assert f"/admin/api-keys/revoke/?id={live_id}" in rows["Live robot"]["list-buttons-column"]
    assert text_of(rows["Dead robot"]["list-buttons-column"]) == ""

    # A viewer sees the same times, and no actions at all.
    make_staff(app, "viewer@florent.test")
    viewer = app.test_client()
    sign_in(viewer, "viewer@florent.test")
    page = viewer.get("/admin/api-keys/").get_data(as_text=True)
    assert "col-actions" not in page and "list-buttons-column" not in page
    assert "Revoke…" not in page and "/admin/api-keys/revoke/" not in page
    rows = {text_of(row["col-name"]): row for row in list_rows(page)}
    assert set(rows["Dead robot"]) == {
        "col-name",
        "col-prefix",
        "col-org_id",
        "col-permissions",
        "col-can_impersonate",
        "col-created_at",
        "col-last_used_at",
        "col-revoked_at",
    }
    assert TIME.fullmatch(text_of(rows["Dead robot"]["col-revoked_at"]))


def test_the_issue_key_form_carries_exactly_one_csrf_token(administrator):
    page = administrator.get("/admin/api-keys/new/").get_data(as_text=True)
    refused = administrator.post(
        "/admin/api-keys/new/", data={"org_id": "", "name": "x", "csrf_token": csrf_token(page)}
    ).get_data(as_text=True)
    for shown in (page, refused):
        form = re.search(
            r'<form method="post" action="/admin/api-keys/new/".*?</form>', shown, re.S
        )
        assert form.group(0).count('name="csrf_token"') == 1


# -- CSRF ------------------------------------------------------------------------


def test_a_post_without_a_csrf_token_is_refused(app, administrator):
    with app.app_context():
        key, _ = issue_api_key("org_01ACME", "CI robot", by=TESTER)
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
