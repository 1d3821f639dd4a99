"""Staff admin at /admin (being built for issue 4)."""

from flask import Flask


def init_admin(app: Flask) -> None:
    """Register the staff login and the Flask-Admin views."""
