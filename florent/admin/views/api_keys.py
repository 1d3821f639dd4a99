"""API keys, never their secrets. Admins may issue a key (its plaintext is shown once,
on the page that confirms it) and revoke one."""

from __future__ import annotations

import secrets
from typing import Any, ClassVar

from flask import abort, flash, redirect, request, session
from flask_admin import expose
from flask_admin.contrib.sqla.filters import FilterEqual
from flask_admin.model.template import TemplateLinkRowAction
from flask_login import current_user
from flask_wtf import FlaskForm
from markupsafe import Markup
from wtforms import BooleanField, HiddenField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from ...auth import apikeys
from ...extensions import db
from ...models import PERMISSIONS, READ, WRITE, ApiKey
from ..signin import is_admin
from .base import StaffModelView


class ApiKeyView(StaffModelView):
    list_template = "staff_admin/api_key_list.html"
    column_list = (
        "name",
        "prefix",
        "org_id",
        "permissions",
        "can_impersonate",
        "created_at",
        "last_used_at",
        "revoked_at",
    )
    column_labels: ClassVar[dict[str, str]] = {
        "name": "Name",
        "prefix": "Prefix",
        "org_id": "Organization",
        "permissions": "Permissions",
        "can_impersonate": "Can impersonate",
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
        "permissions": lambda view, context, model, name: ", ".join(model.permissions) or "none",
        "can_impersonate": lambda view, context, model, name: (
            "yes" if model.can_impersonate else "no"
        ),
    }
    # The row's actions, in the list's "Actions" column (admins only).
    column_extra_row_actions: ClassVar[list[Any]] = [
        TemplateLinkRowAction("staff_row_actions.revoke_key", "Revoke…")
    ]

    @property
    def can_create(self) -> bool:  # type: ignore[override]
        return is_admin()

    @property
    def column_display_actions(self) -> bool:  # type: ignore[override]
        return is_admin()

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
            key, plaintext = apikeys.issue_api_key(
                form.org_id.data,
                form.name.data,
                by=current_user.actor,
                permissions=form.permissions.data,
                can_impersonate=form.can_impersonate.data,
            )
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
            lambda: apikeys.revoke_api_key(key.id, by=current_user.actor),
            f"Revoked API key {key.name} ({key.prefix}…).",
            heading=f"Revoke API key {key.name}?",
            facts={"Prefix": f"{key.prefix}…", "Organization": key.org_id},
            warning="Every request made with this key will be refused from now on. "
            "This cannot be undone.",
            button="Revoke key",
        )


# -- Issuing API keys ----------------------------------------------------------


def printable(form: FlaskForm, field: StringField) -> None:
    if field.data != field.data.strip() or any(not c.isprintable() for c in field.data):
        raise ValidationError("No leading or trailing spaces, and no control characters.")


class MultiCheckboxField(SelectMultipleField):
    """A choice of several, as checkboxes (WTForms' documented recipe)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class ApiKeyCreateForm(FlaskForm):
    org_id = StringField("Organization id", validators=[DataRequired(), Length(max=255), printable])
    name = StringField(
        "Name",
        description="What people will recognise the key by, e.g. CI robot.",
        validators=[DataRequired(), Length(max=100), printable],
    )
    permissions = MultiCheckboxField(
        "Permissions",
        choices={READ: "Read conversations", WRITE: "Write conversations"},
        default=list(PERMISSIONS),
        description="A key with neither can do nothing.",
        validate_choice=True,
    )
    can_impersonate = BooleanField(
        "Can impersonate users",
        description="Act on behalf of a person of the organization (X-Act-As-User); "
        "every such request is recorded in the audit trail.",
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
