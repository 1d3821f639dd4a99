"""The audit trail (admins only), newest first, read-only: nobody edits it."""

from __future__ import annotations

from typing import Any, ClassVar

from flask_admin.contrib.sqla.filters import FilterEqual

from ...models import AuditEvent
from .base import StaffModelView


class AuditEventView(StaffModelView):
    admin_only = True
    column_list = (
        "occurred_at",
        "org_id",
        "actor_kind",
        "actor_id",
        "acting_for",
        "action",
        "target",
        "request_id",
        "client_address",
    )
    column_labels: ClassVar[dict[str, str]] = {
        "occurred_at": "Time",
        "org_id": "Organization",
        "actor_kind": "Actor kind",
        "actor_id": "Actor",
        "acting_for": "Acting for",
        "action": "Action",
        "target": "Target",
        "request_id": "Request id",
        "client_address": "Client address",
    }
    # Each filter but the person's has its index, in this list's order (migration 0009):
    # a page is a walk of a few rows, however long the trail.
    column_filters = (
        FilterEqual(AuditEvent.org_id, "Organization"),
        FilterEqual(AuditEvent.actor_id, "Actor"),
        # e.g. api_key.issued, staff.sign_in_failed, api.get_conversation (docs/api.md).
        FilterEqual(AuditEvent.action, "Action"),
        FilterEqual(AuditEvent.acting_for, "Acting for"),
        "occurred_at",
    )
    column_default_sort: ClassVar[list[tuple[str, bool]]] = [("occurred_at", True), ("id", True)]
    sort_by: ClassVar[dict[str, Any] | None] = {
        "occurred_at": [AuditEvent.occurred_at, AuditEvent.id],
    }
