"""The Flask-Admin views, each behind the one StaffAccess guard."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from flask import (
    abort,
    flash,
    redirect,
    request,
    session,
    url_for,
)
from flask_admin import AdminIndexView, expose
from flask_admin.contrib.sqla import ModelView
from flask_admin.contrib.sqla.filters import FilterEqual
from flask_admin.contrib.sqla.typefmt import DEFAULT_FORMATTERS
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup
from sqlalchemy import func, select, text
from wtforms import HiddenField, StringField
from wtforms.validators import DataRequired, Length, ValidationError

from ..auth import apikeys
from ..extensions import db
from ..models import ApiKey, Conversation, Message, Staff
from ..staff import accounts as staff
from .signin import ConfirmForm, is_admin

# Above this many rows a table's size comes from PostgreSQL's statistics, not COUNT(*).
ESTIMATE_ROWS_ABOVE = 100_000
# A conversation's detail page shows at most this many messages, oldest first.
MESSAGES_SHOWN = 500


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


# -- Formatting ----------------------------------------------------------------


def format_time(value: datetime) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _time_formatter(view: Any, value: datetime, name: str) -> str:
    return format_time(value)


TYPE_FORMATTERS = {**DEFAULT_FORMATTERS, datetime: _time_formatter}


def excerpt(content: str, length: int = 120) -> str:
    flat = " ".join(content.split())
    return flat if len(flat) <= length else flat[: length - 1] + "…"


def _link(url: str, label: str, css: str = "") -> Markup:
    return Markup('<a href="{}" class="{}">{}</a>').format(url, css, label)


# -- The index -------------------------------------------------------------------


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
    # Listed column -> the attribute it sorts by, when that is not the column itself.
    sort_by: ClassVar[dict[str, Any] | None] = None

    def get_sortable_columns(self) -> dict[str, Any]:
        if self.sort_by is None:
            return super().get_sortable_columns()
        self._sortable_joins = {}
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


class ConversationView(StaffModelView):
    can_view_details = True
    details_template = "staff_admin/conversation_details.html"
    column_list = (
        "title",
        "org_id",
        "user_id",
        "model",
        "message_count",
        "last_message_at",
        "created_at",
        "updated_at",
    )
    column_details_list = ("id", *column_list[:4], "user_display", "timezone", *column_list[4:])
    column_labels: ClassVar[dict[str, str]] = {
        "id": "Id",
        "title": "Title",
        "org_id": "Organization",
        "user_id": "Owner",
        "message_count": "Messages",
        "last_message_at": "Last message",
        "created_at": "Created",
        "updated_at": "Updated",
        "user_display": "Addressed as",
    }
    column_searchable_list = ("title", "user_id", "org_id")
    column_filters = (
        FilterEqual(Conversation.org_id, "Organization"),
        FilterEqual(Conversation.user_id, "Owner"),
        "created_at",
        "updated_at",
    )
    # Ids start with their creation second, so the primary key serves "newest first"
    # (and sorting by creation) at any size. Other columns are not sortable: with no
    # index behind them, each page would sort the whole table.
    column_default_sort = ("id", True)
    sort_by: ClassVar[dict[str, Any] | None] = {"created_at": Conversation.id}
    column_formatters: ClassVar[dict[str, Any]] = {
        "title": lambda view, context, model, name: _link(
            view.get_url(".details_view", id=model.id), model.title
        ),
    }
    column_formatters_detail: ClassVar[dict[str, Any]] = {}

    def conversation_messages(self, conversation: Conversation) -> list[Message]:
        """The first messages of a conversation, oldest first (for its detail page)."""
        return list(
            db.session.scalars(
                select(Message)
                .where(Message.conversation_id == conversation.id)
                .order_by(Message.created_at, Message.id)
                .limit(MESSAGES_SHOWN)
            )
        )


class MessageView(StaffModelView):
    can_view_details = True
    column_list = ("conversation_id", "role", "created_at", "content")
    column_details_list = ("id", "conversation_id", "role", "created_at", "content")
    column_labels: ClassVar[dict[str, str]] = {
        "id": "Id",
        "conversation_id": "Conversation",
        "created_at": "Created",
    }
    column_filters = (
        FilterEqual(Message.conversation_id, "Conversation"),
        FilterEqual(Message.role, "Role"),
        "created_at",
    )
    column_default_sort = ("id", True)
    sort_by: ClassVar[dict[str, Any] | None] = {"created_at": Message.id}
    column_formatters: ClassVar[dict[str, Any]] = {
        "conversation_id": lambda view, context, model, name: _link(
            url_for("conversations.details_view", id=model.conversation_id),
            model.conversation_id,
            "text-monospace",
        ),
        "content": lambda view, context, model, name: excerpt(model.content),
    }


class ApiKeyView(StaffModelView):
    """Keys, never their secrets. Admins may issue a key (its plaintext is shown once,
    on the page that confirms it) and revoke one."""

    list_template = "staff_admin/api_key_list.html"
    column_list = ("name", "prefix", "org_id", "created_at", "last_used_at", "revoked_at")
    column_display_actions = False
    column_labels: ClassVar[dict[str, str]] = {
        "name": "Name",
        "prefix": "Prefix",
        "org_id": "Organization",
        "created_at": "Created",
        "last_used_at": "Last used",
        "revoked_at": "Revoked",
    }
    column_searchable_list = ("name", "org_id")
    column_filters = (FilterEqual(ApiKey.org_id, "Organization"), "revoked_at")
    column_default_sort = ("created_at", True)
    column_sortable_list = ("name", "created_at", "last_used_at", "revoked_at")
    # Never scaffold a form field for secret_hash.
    form_columns = ("name", "org_id")
    column_formatters: ClassVar[dict[str, Any]] = {
        "prefix": lambda view, context, model, name: Markup("<code>{}…</code>").format(
            model.prefix
        ),
        "revoked_at": lambda view, context, model, name: view.revoked_cell(model),
    }

    @property
    def can_create(self) -> bool:  # type: ignore[override]
        return is_admin()

    def revoked_cell(self, key: ApiKey) -> str:
        if key.revoked_at is not None:
            return format_time(key.revoked_at)
        if not is_admin():
            return ""
        return _link(
            self.get_url(".revoke_view", id=key.id), "Revoke…", "btn btn-sm btn-outline-danger"
        )

    @expose("/new/", methods=("GET", "POST"))
    def create_view(self) -> Any:
        """Issue a key and show its plaintext, this once."""
        if not is_admin():
            abort(403)
        form = ApiKeyCreateForm()
        if form.validate_on_submit():
            if not take_once_token(form.once.data):
                # A resubmitted form (a reload, a double click) issues nothing more.
                flash("That form was already used or has expired: no key was issued.", "warning")
                return redirect(self.get_url(".index_view"), 303)
            key, plaintext = apikeys.issue_api_key(form.org_id.data, form.name.data)
            return self.render("staff_admin/api_key_created.html", key=key, plaintext=plaintext)
        form.once.data = give_once_token()
        return self.render("staff_admin/api_key_create.html", form=form)

    @expose("/revoke/", methods=("GET", "POST"))
    def revoke_view(self) -> Any:
        """Ask, then revoke the key: its requests fail from then on."""
        if not is_admin():
            abort(403)
        key = db.session.get(ApiKey, request.args.get("id", ""))
        if key is None:
            abort(404)
        return self.confirm(
            lambda: apikeys.revoke_api_key(key.id),
            f"Revoked API key {key.name} ({key.prefix}…).",
            heading=f"Revoke API key {key.name}?",
            facts={"Prefix": f"{key.prefix}…", "Organization": key.org_id},
            warning="Every request made with this key will be refused from now on. "
            "This cannot be undone.",
            button="Revoke key",
        )


class StaffView(StaffModelView):
    admin_only = True
    list_template = "staff_admin/staff_list.html"
    column_list = ("email", "role", "active", "created_at", "last_login_at")
    column_display_actions = False
    column_labels: ClassVar[dict[str, str]] = {
        "email": "Email",
        "created_at": "Created",
        "last_login_at": "Last sign-in",
    }
    column_searchable_list = ("email",)
    column_filters = ("role", "active")
    column_default_sort = ("email", False)
    column_sortable_list = ("email", "role", "created_at", "last_login_at")
    # Never scaffold a form field for password_hash.
    form_columns = ("email", "role")
    column_formatters: ClassVar[dict[str, Any]] = {
        "active": lambda view, context, model, name: view.active_cell(model),
    }

    def active_cell(self, member: Staff) -> str:
        if not member.active:
            return "no"
        return Markup("yes {}").format(
            _link(
                self.get_url(".deactivate_view", id=member.id),
                "Deactivate…",
                "btn btn-sm btn-outline-danger ml-2",
            )
        )

    @expose("/deactivate/", methods=("GET", "POST"))
    def deactivate_view(self) -> Any:
        """Ask, then deactivate the account: it is signed out on its next request."""
        member = db.session.get(Staff, request.args.get("id", ""))
        if member is None:
            abort(404)
        if member.id == current_user.id:
            # The last admin must not lock everyone out by accident; the CLI still can.
            flash("You cannot deactivate your own account here.", "warning")
            return redirect(self.get_url(".index_view"), 303)
        return self.confirm(
            lambda: staff.deactivate_staff(member.email),
            f"Deactivated {member.email}.",
            heading=f"Deactivate {member.email}?",
            facts={"Role": member.role},
            warning="They will be signed out and can no longer sign in.",
            button="Deactivate",
        )


# -- Issuing API keys ----------------------------------------------------------


def printable(form: FlaskForm, field: StringField) -> None:
    if field.data != field.data.strip() or any(not c.isprintable() for c in field.data):
        raise ValidationError("No leading or trailing spaces, and no control characters.")


class ApiKeyCreateForm(FlaskForm):
    org_id = StringField("Organization id", validators=[DataRequired(), Length(max=255), printable])
    name = StringField(
        "Name",
        description="What people will recognise the key by, e.g. CI robot.",
        validators=[DataRequired(), Length(max=100), printable],
    )
    once = HiddenField()


def give_once_token() -> str:
    """A token that lets the form issue one key, so a resubmission issues none."""
    token = secrets.token_urlsafe(16)
    session["api_key_form"] = token
    return token


def take_once_token(token: str | None) -> bool:
    expected = session.pop("api_key_form", None)
    return bool(token and expected and secrets.compare_digest(token, expected))
