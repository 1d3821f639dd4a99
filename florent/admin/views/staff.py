"""Staff accounts (admins only). Accounts are created on the server, with the CLI; here
an admin may deactivate someone else's."""

from __future__ import annotations

from typing import Any, ClassVar

from flask import abort, flash, redirect, request
from flask_admin import expose
from flask_admin.model.template import TemplateLinkRowAction
from flask_login import current_user

from ...extensions import db
from ...models import Staff
from ...staff import accounts as staff
from .base import StaffModelView


class StaffView(StaffModelView):
    admin_only = True
    list_template = "staff_admin/staff_list.html"
    column_list = ("email", "role", "active", "created_at", "last_login_at")
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
        "active": lambda view, context, model, name: "yes" if model.active else "no",
    }
    # The row's actions, in the list's "Actions" column; none on one's own row.
    column_extra_row_actions: ClassVar[list[Any]] = [
        TemplateLinkRowAction("staff_row_actions.deactivate_staff", "Deactivate…")
    ]
    # Told to whoever reads the list: staff create accounts with the CLI.
    min_password_length = staff.MIN_PASSWORD_LENGTH

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
            lambda: staff.deactivate_staff(member.email, by=current_user.actor),
            f"Deactivated {member.email}.",
            heading=f"Deactivate {member.email}?",
            facts={"Role": member.role},
            warning="They will be signed out and can no longer sign in.",
            button="Deactivate",
        )
