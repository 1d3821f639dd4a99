"""Staff admin at /admin: sign-in, security headers, and Flask-Admin views behind one guard.

Every page under /admin is either the sign-in page (signin.py) or a Flask-Admin view
whose class mixes in `StaffAccess` (views/base.py); that mixin is the only place access
is decided, and where a 404 gets the admin's own page. Any other address under /admin
reaches the index view's catch-all (views/index.py): the same guard, then that page.
security.py sets the headers of every admin response.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from flask_admin import Admin
from flask_admin.theme import Bootstrap4Theme

from ..extensions import csrf, db, login_manager
from ..models import ApiKey, AuditEvent, Conversation, Message, Staff
from . import security, signin, views
from .security import ADMIN_URL, AdminOnlySessions, csp_nonce, secure_admin_response
from .signin import SignInThrottle, auth
from .views import (
    ApiKeyView,
    AuditEventView,
    ConversationView,
    MessageView,
    StaffIndexView,
    StaffView,
    format_time,
)

__all__ = ["init_admin", "security", "signin", "views"]


def init_admin(app: Flask, *, throttle_storage_uri: str) -> None:
    """Register the staff login and the Flask-Admin views."""
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=app.config["FLORENT_ENV"] == "production",
        # A staff session left idle this long ends (Flask checks the cookie's signed age).
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
    )
    app.session_interface = AdminOnlySessions()
    csrf.init_app(app)
    # The API authenticates every request with a bearer token, never a cookie.
    for name, blueprint in app.blueprints.items():
        if name.split(".")[0] == "api":
            csrf.exempt(blueprint)
    login_manager.init_app(app)
    app.extensions["florent.signin_throttle"] = SignInThrottle(throttle_storage_uri)
    app.register_blueprint(auth)
    app.add_template_filter(format_time, "admin_time")
    app.after_request(secure_admin_response)

    admin = Admin(
        app,
        name="Florent admin",
        url=ADMIN_URL,
        index_view=StaffIndexView(url=ADMIN_URL, name="Home"),
        theme=Bootstrap4Theme(base_template="staff_admin/base.html"),
        csp_nonce_generator=csp_nonce,
    )
    admin.add_view(ConversationView(Conversation, db, "Conversations", endpoint="conversations"))
    admin.add_view(MessageView(Message, db, "Messages", endpoint="messages"))
    admin.add_view(ApiKeyView(ApiKey, db, "API keys", endpoint="api_keys", url="api-keys"))
    admin.add_view(StaffView(Staff, db, "Staff", endpoint="staff"))
    admin.add_view(AuditEventView(AuditEvent, db, "Audit trail", endpoint="audit", url="audit"))
