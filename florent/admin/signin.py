"""Staff sign-in and sign-out, sessions, and the throttle on failed sign-ins."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    has_request_context,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import AnonymousUserMixin, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from ..extensions import login_manager
from ..limits import Throttle, shared_storage
from ..staff import accounts as staff
from .security import ADMIN_URL, is_admin_path

# Failed sign-ins allowed per quarter-hour: for one account from one address, and from
# one address in all. A flood from one place locks out that place only: the account's
# owner still signs in from anywhere else. An address may be a whole office's (or the
# proxy's), so it gets more room than one account does.
FAILURES_PER_ACCOUNT_AND_ADDRESS = "5 per 15 minutes"
FAILURES_PER_ADDRESS = "20 per 15 minutes"
# A session ends this long after sign-in, however active it has been.
SESSION_LIFETIME_SECONDS = 12 * 3600
INVALID_CREDENTIALS = "Invalid email or password."
TOO_MANY_ATTEMPTS = "Too many failed sign-in attempts. Try again later."


# -- Sessions -----------------------------------------------------------------


class AnonymousStaff(AnonymousUserMixin):
    is_admin = False


login_manager.anonymous_user = AnonymousStaff
login_manager.login_view = "staff_auth.login"


@login_manager.user_loader
def load_user(session_id: str) -> staff.StaffUser | None:
    # Read on every request, so a deactivated or signed-out account is signed out at once.
    if time.time() - session.get("signed_in_at", 0) > SESSION_LIFETIME_SECONDS:
        return None
    return staff.load_staff_user(session_id)


class SignInThrottle:
    """Failed sign-ins, counted in the rate limits' storage (shared when it is Redis)."""

    def __init__(self, storage_uri: str):
        self.storage = storage = shared_storage(storage_uri)
        self.per_account = Throttle(storage, FAILURES_PER_ACCOUNT_AND_ADDRESS)
        self.per_address = Throttle(storage, FAILURES_PER_ADDRESS)

    def keys(self, email: str, address: str | None) -> list[tuple[Throttle, str]]:
        return [
            (self.per_account, f"signin:{address}:{email}"),
            (self.per_address, f"signin:{address}"),
        ]

    def begin(self, email: str, address: str | None) -> int:
        """Count a sign-in as in progress before its password is checked, so guesses sent
        together cannot all be checked; the seconds to wait instead, and nothing counted,
        when either limit has no room for it."""
        begun = [
            (throttle, key, throttle.begin(key)) for throttle, key in self.keys(email, address)
        ]
        wait = max(wait for _, _, wait in begun)
        if wait:
            # Refused under one key: taken back under the other, which let it through.
            for throttle, key, refused in begun:
                if not refused:
                    throttle.end(key, failed=False)
        return wait

    def end(self, email: str, address: str | None, *, failed: bool) -> None:
        """A sign-in `begin` let through is over; a failure counts under both keys."""
        for throttle, key in self.keys(email, address):
            throttle.end(key, failed=failed)

    def reset(self, email: str, address: str | None) -> None:
        throttle, key = self.keys(email, address)[0]
        throttle.reset(key)


def is_admin() -> bool:
    return has_request_context() and current_user.is_authenticated and current_user.is_admin


# -- Sign-in and sign-out ------------------------------------------------------

auth = Blueprint("staff_auth", __name__, url_prefix=ADMIN_URL)


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=staff.MAX_EMAIL_LENGTH)])
    password = PasswordField(
        "Password", validators=[DataRequired(), Length(max=staff.MAX_PASSWORD_LENGTH)]
    )


class ConfirmForm(FlaskForm):
    """A form with nothing in it but its CSRF token: a confirmed state change."""


def safe_next(target: str | None) -> str:
    """Where to go after signing in: only back into the admin on this site."""
    default = url_for("admin.index")
    if not target or target.startswith("//") or "\\" in target or not target.isprintable():
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not is_admin_path(parts.path):
        return default
    return target


def authenticate(
    throttle: SignInThrottle, email: str, address: str | None, password: str
) -> staff.StaffUser | None:
    """The account a sign-in the throttle let through opens, if any; the sign-in then
    ends, a failure counted and a success clearing the account's failures here."""
    failed = False
    try:
        user = staff.authenticate_staff(email, password)
        failed = user is None
    finally:
        # An exception judged nothing (the database failed, say): no failure to count.
        throttle.end(email, address, failed=failed)
    if user is not None:
        throttle.reset(email, address)
    return user


@auth.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """The staff sign-in form; the same answer for a wrong password and an unknown email."""
    next_url = safe_next(request.args.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url)
    form = LoginForm()
    error, status, headers = None, 200, {}
    if request.method == "POST":
        error, status = INVALID_CREDENTIALS, 401
        if form.validate():
            email, address = staff.normalize_email(form.email.data), request.remote_addr
            throttle: SignInThrottle = current_app.extensions["florent.signin_throttle"]
            wait = throttle.begin(email, address)
            user = None if wait else authenticate(throttle, email, address, form.password.data)
            if wait:
                error, status, headers = TOO_MANY_ATTEMPTS, 429, {"Retry-After": str(wait)}
            elif user is not None:
                session.clear()  # no state from before sign-in carries over
                login_user(user)
                session.permanent = True
                session["signed_in_at"] = int(time.time())
                return redirect(next_url)
    return render_template("staff_admin/login.html", form=form, error=error), status, headers


@auth.post("/logout")
def logout() -> Any:
    """Sign out (a POST, so another site cannot sign staff out), ending every session of
    the account, a copied cookie's included."""
    if current_user.is_authenticated:
        staff.sign_out(current_user)
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("staff_auth.login"))
