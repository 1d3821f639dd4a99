"""The Flask-Admin views, one module per model, each behind the one StaffAccess guard."""

from __future__ import annotations

from .api_keys import ApiKeyView
from .audit import AuditEventView
from .base import StaffAccess, StaffModelView, format_time
from .conversations import ConversationView
from .index import StaffIndexView
from .messages import MessageView
from .staff import StaffView

__all__ = [
    "ApiKeyView",
    "AuditEventView",
    "ConversationView",
    "MessageView",
    "StaffAccess",
    "StaffIndexView",
    "StaffModelView",
    "StaffView",
    "format_time",
]
