"""Security for every page under /admin: the only cookie sessions, CSP with nonces, no
framing, no caching."""

from __future__ import annotations

import base64
import hashlib
import secrets

from flask import Flask, Request, Response, g, request
from flask.sessions import SecureCookieSessionInterface, SessionMixin

ADMIN_URL = "/admin"
ADMIN_STATIC = ADMIN_URL + "/static/"  # Flask-Admin's own files


def is_admin_path(path: str) -> bool:
    return path == ADMIN_URL or path.startswith(ADMIN_URL + "/")


class AdminOnlySessions(SecureCookieSessionInterface):
    """Cookie sessions for the staff admin's pages only.

    Everywhere else (the API, health checks) a request gets Flask's read-only null
    session: no cookie is parsed or set, no `Vary: Cookie` is sent, and the API cannot
    be driven by a staff member's browser cookie even by mistake.

    The admin's static files get none either. A permanent session is re-sent on every
    response, so a stylesheet still loading from the previous page could answer after
    the next page had stored a new session, and put the old cookie back: the API-key
    form's one-use token was lost that way (seen in the browser test).
    """

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        path = request.path
        if not is_admin_path(path) or path.startswith(ADMIN_STATIC):
            return self.make_null_session(app)
        return super().open_session(app, request)


# -- Security headers ----------------------------------------------------------


def csp_nonce() -> str:
    """This response's nonce for Flask-Admin's inline scripts and styles."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce


def _source_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


# Flask-Admin's "Add Filter" menu items carry onclick="return false;" (it keeps their
# javascript:void(0) links from navigating). That exact handler may run; no other may.
FLASK_ADMIN_INLINE_HANDLERS = _source_hash("return false;")


def content_security_policy(nonce: str | None) -> str:
    own = f"'self' 'nonce-{nonce}'" if nonce else "'self'"
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src {own}",
            f"script-src-attr 'unsafe-hashes' {FLASK_ADMIN_INLINE_HANDLERS}",
            f"style-src {own}",
            # Bootstrap draws a few icons as data: SVGs in its stylesheet.
            "img-src 'self' data:",
            "font-src 'self'",
            "connect-src 'self'",
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        )
    )


def secure_admin_response(response: Response) -> Response:
    """Anti-framing, content-security and no-cache headers on every admin page."""
    if not is_admin_path(request.path):
        return response
    headers = response.headers
    headers["Content-Security-Policy"] = content_security_policy(g.get("csp_nonce"))
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    # Not "no-referrer": Flask-WTF checks the Referer of form posts over HTTPS.
    headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "admin.static":
        # Pages show stored conversations and, once, an API key: keep them out of caches.
        headers["Cache-Control"] = "no-store"
    return response
