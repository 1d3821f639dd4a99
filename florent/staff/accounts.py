"""Staff accounts for the admin at /admin (`flask staff ...` lives in cli.py).

Staff are people who browse the store; they are not API callers and never own
conversations. Each service function is one transaction, committed here.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from functools import cache

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from .. import audit
from ..audit import Actor
from ..extensions import db
from ..models import STAFF_ROLES, Staff

# werkzeug's scrypt (N=2**15, r=8, p=1): memory-hard, and no new dependency. The tests
# lower the cost through this name, as Django's test settings swap in a fast hasher.
PASSWORD_HASH_METHOD = "scrypt"
MIN_PASSWORD_LENGTH = 12
# Long enough for any passphrase, short enough that hashing it is never a burden.
MAX_PASSWORD_LENGTH = 1024
MAX_EMAIL_LENGTH = 254
EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


class StaffError(ValueError):
    """A staff account cannot be created or changed as asked; the message says why."""


@dataclass(frozen=True)
class StaffUser:
    """The signed-in staff member, as Flask-Login sees it (a plain value, not a row)."""

    id: str
    email: str
    role: str
    session_version: int

    is_authenticated = True
    is_active = True
    is_anonymous = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def actor(self) -> Actor:
        """Who the audit trail says acted: staff are known there by their email."""
        return staff_actor(self.email)

    def get_id(self) -> str:
        """What the session cookie holds: the account and its session version, so that
        bumping the version ends every session issued before."""
        return f"{self.id}.{self.session_version}"


def normalize_email(email: str) -> str:
    return email.strip().lower()


def staff_actor(email: str) -> Actor:
    return Actor("staff", email)


# Staff events belong to no organization.
NO_ORGANIZATION = ""


def _record(by: Actor, action: str, email: str) -> None:
    audit.record(audit.Event(NO_ORGANIZATION, by, action, target=email))


def create_staff(email: str, *, role: str, password: str, by: Actor) -> Staff:
    """Create an active account, recording who did; the email is stored lowercased."""
    email = normalize_email(email)
    if len(email) > MAX_EMAIL_LENGTH or not EMAIL.fullmatch(email):
        raise StaffError("not an email address")
    if role not in STAFF_ROLES:
        raise StaffError(f"the role must be one of {', '.join(STAFF_ROLES)}")
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise StaffError(
            f"the password must be {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters long"
        )
    staff = Staff(
        email=email,
        role=role,
        password_hash=generate_password_hash(password, method=PASSWORD_HASH_METHOD),
    )
    db.session.add(staff)
    try:
        db.session.flush()  # a taken email fails here, before its event is written
        _record(by, audit.STAFF_CREATED, email)
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise StaffError("a staff account with that email already exists") from None
    return staff


def list_staff() -> list[Staff]:
    return list(db.session.scalars(select(Staff).order_by(Staff.email)))


def deactivate_staff(email: str, *, by: Actor) -> Staff | None:
    """Deactivate the account, recording who did; its open sessions end on their next
    request. None when no such account exists."""
    staff = db.session.scalar(
        update(Staff)
        .where(Staff.email == normalize_email(email))
        .values(active=False, session_version=Staff.session_version + 1)
        .returning(Staff)
    )
    if staff is not None:
        _record(by, audit.STAFF_DEACTIVATED, staff.email)
    db.session.commit()
    return staff


def sign_out(user: StaffUser) -> None:
    """Sign the account out everywhere: every session cookie issued so far stops working."""
    db.session.execute(
        update(Staff).where(Staff.id == user.id).values(session_version=Staff.session_version + 1)
    )
    _record(user.actor, audit.STAFF_SIGNED_OUT, user.email)
    db.session.commit()


def authenticate_staff(email: str, password: str) -> StaffUser | None:
    """The active account these credentials open, recording the sign-in; else None,
    recording the failure (under the email tried, an account's or not).

    An unknown email costs the same hash check as a wrong password, so response
    times do not tell which emails have accounts.
    """
    email = normalize_email(email)
    staff = db.session.scalar(select(Staff).where(Staff.email == email))
    stored_hash = staff.password_hash if staff is not None else _dummy_hash(PASSWORD_HASH_METHOD)
    if not check_password_hash(stored_hash, password) or staff is None or not staff.active:
        db.session.rollback()
        _record(staff_actor(email), audit.STAFF_SIGN_IN_FAILED, email)
        db.session.commit()
        return None
    staff.last_login_at = func.now()
    user = StaffUser(staff.id, staff.email, staff.role, staff.session_version)
    _record(user.actor, audit.STAFF_SIGNED_IN, user.email)
    db.session.commit()
    return user


def load_staff_user(session_id: str) -> StaffUser | None:
    """The account behind a session, read on every request; None once deactivated or
    signed out (the session's version is no longer the account's)."""
    staff_id, _, version = session_id.partition(".")
    if not version.isdigit():
        return None
    row = db.session.execute(
        select(Staff.id, Staff.email, Staff.role, Staff.session_version).where(
            Staff.id == staff_id, Staff.active, Staff.session_version == int(version)
        )
    ).first()
    return StaffUser(*row) if row else None


@cache
def _dummy_hash(method: str) -> str:
    return generate_password_hash(secrets.token_urlsafe(16), method=method)
