"""The one guard every admin view passes, the read-only model view they build on, the
admin's own "Not found" page, and how values are shown."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask_admin.contrib.sqla import ModelView
from flask_admin.contrib.sqla.typefmt import DEFAULT_FORMATTERS
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup
from werkzeug.exceptions import NotFound

from ... import audit
from ..signin import ConfirmForm

# -- The guard -------------------------------------------------------------------


class StaffAccess:
    """Who may open a view: signed-in staff, and only admins where `admin_only` says so."""

    admin_only = False

    def is_accessible(self) -> bool:
        return current_user.is_authenticated and (current_user.is_admin or not self.admin_only)

    def is_visible(self) -> bool:
        return self.is_accessible()

    def inaccessible_callback(self, name: str, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return redirect(url_for("staff_auth.login", next=request.full_path.rstrip("?")))
        abort(403)

    def create_blueprint(self, admin: Any) -> Blueprint:
        blueprint = super().create_blueprint(admin)  # type: ignore[misc]
        # A 404 raised by this view's pages (an unknown id, a missing asset) gets the
        # admin's own page. The app's handlers stay as they are: the API's are JSON.
        blueprint.register_error_handler(NotFound, self.not_found)
        return blueprint

    def not_found(self, error: NotFound) -> tuple[str, int]:
        return self.render("staff_admin/not_found.html"), 404  # type: ignore[attr-defined]


# -- Formatting ----------------------------------------------------------------


def format_time(value: datetime) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _time_formatter(view: Any, value: datetime, name: str) -> str:
    return format_time(value)


TYPE_FORMATTERS = {**DEFAULT_FORMATTERS, datetime: _time_formatter}


def record_opened(org_id: str, conversation_id: str) -> None:
    """The audit trail's record that the signed-in staff member read this conversation's
    messages."""
    event = audit.Event(org_id, current_user.actor, audit.CONVERSATION_OPENED, conversation_id)
    audit.record_now(event)


def link(url: str, label: str, css: str = "") -> Markup:
    return Markup('<a href="{}" class="{}">{}</a>').format(url, css, label)


# -- The model views -------------------------------------------------------------


class StaffModelView(StaffAccess, ModelView):
    """Read-only by default; lists never count their rows (no COUNT(*) per page load)."""

    can_create = False
    can_edit = False
    can_delete = False
    can_export = False
    can_set_page_size = False
    page_size = 25
    simple_list_pager = True
    # Any form Flask-Admin itself renders carries the Flask-WTF CSRF token.
    form_base_class = FlaskForm
    column_type_formatters = TYPE_FORMATTERS
    column_type_formatters_detail = TYPE_FORMATTERS
    # Listed column -> the attribute it sorts by, when that is not the column itself; a
    # list of attributes sorts by each in turn (a tie-breaker), all in one direction.
    sort_by: ClassVar[dict[str, Any] | None] = None

    def get_sortable_columns(self) -> dict[str, Any]:
        if self.sort_by is None:
            return super().get_sortable_columns()
        # No joins: every sort is on the model's own columns.
        self._sortable_joins = {
            name: [None] * len(by) for name, by in self.sort_by.items() if isinstance(by, list)
        }
        return dict(self.sort_by)

    def confirm(
        self,
        act: Callable[[], None],
        done: str,
        *,
        heading: str,
        facts: dict[str, str],
        warning: str,
        button: str,
    ) -> Any:
        """Ask first; on the confirmed post, `act`, say `done`, and go back to the list."""
        form = ConfirmForm()
        if form.validate_on_submit():
            act()
            flash(done, "success")
            return redirect(self.get_url(".index_view"), 303)
        return self.render(
            "staff_admin/confirm.html",
            form=form,
            heading=heading,
            facts=facts,
            warning=warning,
            button=button,
        )
