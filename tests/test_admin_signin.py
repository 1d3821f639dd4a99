"""Signing in to the admin and out of it: one answer for bad credentials, the throttle,
sessions that end, and the session cookie's flags."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter

import pytest
from flask import Flask
from limits import parse
from sqlalchemy import select

from florent import admin, audit
from florent.extensions import db
from florent.models import AuditEvent, Staff
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


def guess_together(app: Flask, emails: list[str]) -> tuple[Counter, list[str]]:
    """A wrong password for each of `emails`, all posted at once from one address, each
    by a client of its own: the answers' statuses, and the emails whose password was
    checked. Every check is held until each guess is being checked or was refused, so
    all of them are under way together however the threads are scheduled."""
    checked: list[str] = []
    statuses: list[int] = []
    all_under_way = threading.Event()
    check = staff.authenticate_staff

    def held_check(email: str, password: str):
        checked.append(email)
        all_under_way.wait(timeout=10)
        return check(email, password)

    def guess(client, token: str, email: str) -> None:
        form = {"email": email, "password": "wrong password!!", "csrf_token": token}
        response = client.post("/admin/login", data=form, environ_base={"REMOTE_ADDR": "10.7.7.7"})
        statuses.append(response.status_code)

    clients = [app.test_client() for _ in emails]
    tokens = [csrf_token(c.get("/admin/login").get_data(as_text=True)) for c in clients]
    threads = [
        threading.Thread(target=guess, args=guessing)
        for guessing in zip(clients, tokens, emails, strict=True)
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(staff, "authenticate_staff", held_check)
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(checked) + statuses.count(429) < len(emails) and time.monotonic() < deadline:
            time.sleep(0.01)
        all_under_way.set()
        for thread in threads:
            thread.join()
    return Counter(statuses), checked


def failures_recorded(app: Flask) -> int:
    with app.app_context():
        return len(
            db.session.scalars(
                select(AuditEvent).where(AuditEvent.action == audit.STAFF_SIGN_IN_FAILED)
            ).all()
        )


def test_guesses_sent_together_for_one_account_are_checked_no_more_than_the_limit(app):
    make_staff(app, "viewer@florent.test")
    limit = allowed(admin.signin.FAILURES_PER_ACCOUNT_AND_ADDRESS)

    statuses, checked = guess_together(app, ["viewer@florent.test"] * 30)

    assert len(checked) == limit
    assert statuses == Counter({401: limit, 429: 30 - limit})
    assert failures_recorded(app) == limit  # each password checked, and only those
    assert sign_in(app.test_client(), "viewer@florent.test", address="10.7.7.7").status_code == 429


def test_guesses_sent_together_from_one_address_are_checked_no_more_than_its_limit(app):
    limit = allowed(admin.signin.FAILURES_PER_ADDRESS)
    emails = [f"guess{n}@florent.test" for n in range(30)]

    statuses, checked = guess_together(app, emails)

    assert len(checked) == limit
    assert statuses == Counter({401: limit, 429: 30 - limit})
    assert failures_recorded(app) == limit


def test_signing_in_uses_up_none_of_the_room_an_address_has_for_failures(app):
    """An address may be a whole office's: its staff signing in are not failures."""
    make_staff(app, "viewer@florent.test")
    for _ in range(allowed(admin.signin.FAILURES_PER_ADDRESS) + 5):
        assert sign_in(app.test_client(), "viewer@florent.test").status_code == 302
    for _ in range(allowed(admin.signin.FAILURES_PER_ACCOUNT_AND_ADDRESS)):
        assert (
            sign_in(app.test_client(), "viewer@florent.test", "wrong password!!").status_code == 401
        )


def test_refused_guesses_leave_an_address_room_for_other_accounts(app, client):
    make_staff(app, "viewer@florent.test")
    make_staff(app, "other@florent.test")
    for _ in range(allowed(admin.signin.FAILURES_PER_ADDRESS)):
        sign_in(client, "viewer@florent.test", "wrong password!!")
    # Five failures, then refusals: only the failures count against the address.
    assert sign_in(client, "other@florent.test").status_code == 302


def test_a_sign_in_that_could_not_be_checked_is_no_failure(app, client, monkeypatch):
    make_staff(app, "viewer@florent.test")

    def database_down(email: str, password: str):
        raise RuntimeError("the database is down")

    with monkeypatch.context() as patch:
        patch.setattr(staff, "authenticate_staff", database_down)
        for _ in range(allowed(admin.signin.FAILURES_PER_ACCOUNT_AND_ADDRESS) + 1):
            assert sign_in(client, "viewer@florent.test").status_code == 500

    assert sign_in(client, "viewer@florent.test").status_code == 302


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
