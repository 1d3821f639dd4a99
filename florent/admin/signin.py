"""Staff sign-in and sign-out, sessions, and the throttle on failed sign-ins."""

from __future__ import annotations

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
from flask_login import AnonymousUserMixin, LoginManager, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFProtect
from wtforms import EmailField, PasswordField
from wtforms.validators import DataRequired, Length

from .. import staff
from .security import ADMIN_URL, is_admin_path

csrf = CSRFProtect()
login_manager = LoginManager()

# Failed sign-ins allowed per quarter-hour. An address may be shared by a whole office
# (or be the proxy's, without ProxyFix), so it gets more room than one account does.
FAILURES_PER_EMAIL = 5
FAILURES_PER_ADDRESS = 20
INVALID_CREDENTIALS = "Invalid email or password."
TOO_MANY_ATTEMPTS = "Too many failed sign-in attempts. Try again later."


# -- Sessions -----------------------------------------------------------------


class AnonymousStaff(AnonymousUserMixin):
    is_admin = False


login_manager.anonymous_user = AnonymousStaff
login_manager.login_view = "staff_auth.login"


@login_manager.user_loader
def load_user(staff_id: str) -> staff.StaffUser | None:
    # Read on every request, so a deactivated account is signed out at once.
    return staff.load_staff_user(staff_id)


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
    if not target or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not is_admin_path(parts.path):
        return default
    return target


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
            email = staff.normalize_email(form.email.data)
            throttle: staff.LoginThrottle = current_app.extensions["florent.login_throttle"]
            keys = {
                f"email:{email}": FAILURES_PER_EMAIL,
                f"addr:{request.remote_addr}": FAILURES_PER_ADDRESS,
            }
            wait = throttle.retry_after(keys)
            user = None if wait else staff.authenticate_staff(email, form.password.data)
            if wait:
                error, status, headers = TOO_MANY_ATTEMPTS, 429, {"Retry-After": str(wait)}
            elif user is None:
                throttle.record_failure(*keys)
            else:
                throttle.reset(f"email:{email}")
                session.clear()  # no state from before sign-in carries over
                login_user(user)
                session.permanent = True
                return redirect(next_url)
    return render_template("staff_admin/login.html", form=form, error=error), status, headers


@auth.post("/logout")
def logout() -> Any:
    """Sign out (a POST, so another site cannot sign staff out)."""
    logout_user()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("staff_auth.login"))
