"""Staff accounts (being built for issue 4)."""

from flask.cli import AppGroup

staff_cli = AppGroup("staff", help="Manage staff accounts for the admin.")
