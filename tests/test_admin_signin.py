"""Signing in to the admin and out of it: one answer for bad credentials, the throttle,
sessions that end, and the session cookie's flags."""

from __future__ import annotations

import re

from limits import parse
from sqlalchemy import select

from florent import admin
from florent.extensions import db
from florent.models import Staff
from florent.staff import accounts as staff

from .factories import TESTER
from .test_admin import (  # noqa: F401 (fixtures, found by their names)
    cheap_password_hashes_fixture,
    csrf_token,
    make_staff,
    sign_in,
    viewer_fixture,
)

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
        staff.deactivate_staff("viewer@florent.test", by=TESTER)

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
