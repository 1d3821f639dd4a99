"""`flask staff ...`: staff accounts for the admin at /admin."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from ..audit import operator
from ..models import STAFF_ROLES
from ..staff import accounts as staff
from .tables import echo_table, moment, yes_no

staff_cli = AppGroup("staff", help="Manage staff accounts for the admin at /admin.")


@staff_cli.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(STAFF_ROLES), required=True, help="What they may do.")
@click.option(
    "--password",
    prompt=f"Password ({staff.MIN_PASSWORD_LENGTH} characters or more)",
    hide_input=True,
    confirmation_prompt=True,
    help="Prompted for when omitted, which is better: a command line stays in shell history.",
)
def create_staff_command(email: str, role: str, password: str) -> None:
    """Create a staff account that can sign in to /admin."""
    try:
        member = staff.create_staff(email, role=role, password=password, by=operator())
    except staff.StaffError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Created {member.role} {member.email}.")


@staff_cli.command("list")
def list_staff_command() -> None:
    """List staff accounts (never their password hashes)."""
    rows = [("EMAIL", "ROLE", "ACTIVE", "CREATED", "LAST LOGIN")]
    for member in staff.list_staff():
        rows.append(
            (
                member.email,
                member.role,
                yes_no(member.active),
                moment(member.created_at),
                moment(member.last_login_at),
            )
        )
    echo_table(rows)


@staff_cli.command("deactivate")
@click.argument("email")
def deactivate_staff_command(email: str) -> None:
    """Deactivate an account: it can no longer sign in, and its sessions end."""
    member = staff.deactivate_staff(email, by=operator())
    if member is None:
        raise click.ClickException("no such staff account")
    click.echo(f"Deactivated {member.email}.")
