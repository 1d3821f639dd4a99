"""Staff accounts for the admin at /admin: the use cases and the sign-in throttle
(`flask staff ...` lives in cli.py).

Staff are people who browse the store; they are not API callers and never own
conversations. Each service function is one transaction, committed here.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from functools import cache

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import check_password_hash, generate_password_hash

from .extensions import db
from .models import STAFF_ROLES, Staff

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

    is_authenticated = True
    is_active = True
    is_anonymous = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def get_id(self) -> str:
        return self.id


def normalize_email(email: str) -> str:
    return email.strip().lower()


def create_staff(email: str, *, role: str, password: str) -> Staff:
    """Create an active account; the email is stored lowercased."""
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
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise StaffError("a staff account with that email already exists") from None
    return staff


def list_staff() -> list[Staff]:
    return list(db.session.scalars(select(Staff).order_by(Staff.email)))


def deactivate_staff(email: str) -> Staff | None:
    """Deactivate the account; its open sessions end on their next request.

    None when no such account exists.
    """
    staff = db.session.scalar(
        update(Staff)
        .where(Staff.email == normalize_email(email))
        .values(active=False)
        .returning(Staff)
    )
    db.session.commit()
    return staff


def authenticate_staff(email: str, password: str) -> StaffUser | None:
    """The active account these credentials open, recording the sign-in; else None.

    An unknown email costs the same hash check as a wrong password, so response
    times do not tell which emails have accounts.
    """
    staff = db.session.scalar(select(Staff).where(Staff.email == normalize_email(email)))
    stored_hash = staff.password_hash if staff is not None else _dummy_hash(PASSWORD_HASH_METHOD)
    if not check_password_hash(stored_hash, password) or staff is None or not staff.active:
        db.session.rollback()
        return None
    staff.last_login_at = func.now()
    user = StaffUser(id=staff.id, email=staff.email, role=staff.role)
    db.session.commit()
    return user


def load_staff_user(staff_id: str) -> StaffUser | None:
    """The account behind a session, read on every request; None once deactivated."""
    row = db.session.execute(
        select(Staff.id, Staff.email, Staff.role).where(Staff.id == staff_id, Staff.active)
    ).first()
    return StaffUser(id=row.id, email=row.email, role=row.role) if row else None


@cache
def _dummy_hash(method: str) -> str:
    return generate_password_hash(secrets.token_urlsafe(16), method=method)


# -- Throttling failed sign-ins -----------------------------------------------


class LoginThrottle:
    """Counts failed sign-ins per key (an email, a client address) over a sliding window.

    The counts live in this process: each worker keeps its own and a restart forgets
    them, so with N workers a guesser gets at most N times the allowance. That still
    turns online guessing from millions of tries into a handful per quarter-hour; a
    shared store (a PostgreSQL table, Redis) would make the limit exact.
    """

    def __init__(self, *, window_seconds: float = 15 * 60, max_keys: int = 100_000):
        self.window_seconds = window_seconds
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, limits: dict[str, int]) -> int:
        """Seconds until every key is under its limit again; 0 when an attempt may go ahead."""
        now = time.monotonic()
        wait = 0.0
        with self._lock:
            for key, limit in limits.items():
                failures = self._recent(key, now)
                if len(failures) >= limit:
                    wait = max(wait, failures[-limit] + self.window_seconds - now)
        return int(wait) + 1 if wait else 0

    def record_failure(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) >= self.max_keys:
                self._forget_oldest(now)
            for key in keys:
                self._failures.setdefault(key, deque(maxlen=100)).append(now)

    def reset(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._failures.clear()

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key, deque())
        while failures and failures[0] <= now - self.window_seconds:
            failures.popleft()
        if not failures:
            self._failures.pop(key, None)
        return failures

    def _forget_oldest(self, now: float) -> None:
        """Bound memory under a flood of distinct keys: drop expired keys, then the oldest."""
        for key in list(self._failures):
            self._recent(key, now)
        while len(self._failures) >= self.max_keys:
            del self._failures[next(iter(self._failures))]
