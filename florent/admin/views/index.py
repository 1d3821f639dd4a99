"""The admin's home page, and every address under /admin that leads nowhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

from flask import abort, current_app, request
from flask_admin import AdminIndexView, expose
from sqlalchemy import func, select, text
from werkzeug.exceptions import MethodNotAllowed

from ...extensions import db
from ...models import ApiKey
from .base import StaffAccess

# What the catch-all for unknown addresses answers to.
CATCH_ALL_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Above this many rows a table's size comes from PostgreSQL's statistics, not COUNT(*).
ESTIMATE_ROWS_ABOVE = 100_000


@dataclass(frozen=True)
class RowCount:
    value: int
    estimated: bool


def row_count(table: str) -> RowCount:
    """Exact for small tables; PostgreSQL's own estimate for big ones, so the index
    page never scans a million rows."""
    estimate = db.session.scalar(
        text(
            "SELECT GREATEST(c.reltuples::bigint, s.n_live_tup, 0) FROM pg_class c"
            " LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid"
            " WHERE c.oid = to_regclass(:table)"
        ),
        {"table": table},
    )
    if estimate is not None and estimate > ESTIMATE_ROWS_ABOVE:
        return RowCount(estimate, estimated=True)
    return RowCount(db.session.scalar(text(f'SELECT count(*) FROM "{table}"')), estimated=False)


class StaffIndexView(StaffAccess, AdminIndexView):
    @expose("/")
    def index(self) -> str:
        """What the store holds, in round figures once the tables are large."""
        counts = {
            "Conversations": row_count("conversations"),
            "Messages": row_count("messages"),
            # Keys are issued one by one by people: this table stays small.
            "Active API keys": RowCount(
                db.session.scalar(
                    select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None))
                ),
                estimated=False,
            ),
        }
        return self.render("staff_admin/index.html", counts=counts)

    @expose("/<path:path>")
    def unknown(self, path: str) -> NoReturn:
        """Any other address under /admin: the admin's "Not found" page for staff (every
        route that exists is more specific, so it wins), the sign-in page for others."""
        abort(404)

    def _handle_view(self, name: str, **kwargs: Any) -> Any:
        if name == "unknown":
            refuse_other_methods()
        return super()._handle_view(name, **kwargs)


def refuse_other_methods() -> None:
    """A page that exists for other methods only (sign-out takes a POST) would land in the
    catch-all: it answers 405, as it would without one, to everyone."""
    allowed = set(current_app.create_url_adapter(request).allowed_methods())
    if others := allowed - CATCH_ALL_METHODS:
        raise MethodNotAllowed(valid_methods=sorted(others | {"OPTIONS"}))
