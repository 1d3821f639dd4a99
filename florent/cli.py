"""flask commands: API keys, staff accounts, development tokens, housekeeping."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from .auth import apikeys
from .conversations import idempotency
from .conversations.schemas import format_timestamp
from .models import STAFF_ROLES
from .staff import accounts as staff

api_keys_cli = AppGroup("api-keys", help="Issue, list and revoke organization API keys.")


@api_keys_cli.command("create")
@click.option("--org", "org_id", required=True, help="Organization id the key belongs to.")
@click.option("--name", required=True, help="A name people will recognise the key by.")
def create_api_key(org_id: str, name: str) -> None:
    """Issue a key. Its plaintext is printed once, alone on the last line."""
    if not (1 <= len(org_id) <= 255 and 1 <= len(name) <= 100):
        raise click.BadParameter("--org must be 1-255 and --name 1-100 characters")
    key, plaintext = apikeys.issue_api_key(org_id, name)
    click.echo(f"Created API key {key.id} ({key.prefix}...) for organization {org_id}.", err=True)
    click.echo("Store it now: it cannot be shown again.", err=True)
    click.echo(plaintext)


@api_keys_cli.command("list")
@click.option("--org", "org_id", help="Only this organization's keys.")
def list_api_keys(org_id: str | None) -> None:
    """List keys (never their secrets)."""
    rows = [("ID", "PREFIX", "NAME", "ORG", "CREATED", "LAST USED", "REVOKED")]
    for key in apikeys.list_api_keys(org_id):
        rows.append(
            (
                key.id,
                key.prefix,
                key.name,
                key.org_id,
                format_timestamp(key.created_at),
                format_timestamp(key.last_used_at) if key.last_used_at else "-",
                format_timestamp(key.revoked_at) if key.revoked_at else "-",
            )
        )
    echo_table(rows)


@api_keys_cli.command("revoke")
@click.argument("key")
def revoke_api_key(key: str) -> None:
    """Revoke a key, given its id or its plaintext."""
    revoked = apikeys.revoke_api_key(key)
    if revoked is None:
        raise click.ClickException("no such API key")
    click.echo(f"Revoked API key {revoked.id} ({revoked.prefix}...).")


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
        member = staff.create_staff(email, role=role, password=password)
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
                "yes" if member.active else "no",
                format_timestamp(member.created_at),
                format_timestamp(member.last_login_at) if member.last_login_at else "-",
            )
        )
    echo_table(rows)


@staff_cli.command("deactivate")
@click.argument("email")
def deactivate_staff_command(email: str) -> None:
    """Deactivate an account: it can no longer sign in, and its sessions end."""
    member = staff.deactivate_staff(email)
    if member is None:
        raise click.ClickException("no such staff account")
    click.echo(f"Deactivated {member.email}.")


@click.command("dev-token")
@with_appcontext
@click.option("--user", "user_id", required=True, help="The user id (the token's sub).")
@click.option("--org", "org_id", required=True, help="The organization id (org_id).")
@click.option(
    "--ttl",
    default=3600 * 12,
    show_default=True,
    type=click.IntRange(1, 24 * 3600),
    help="Lifetime in seconds (a day at most, as for any session token).",
)
def dev_token(user_id: str, org_id: str, ttl: int) -> None:
    """Print a session JWT the development server accepts."""
    sessions = current_app.extensions["florent.auth"].sessions
    if sessions.dev_key is None:
        raise click.ClickException("dev tokens are refused in production")
    click.echo(sessions.dev_key.sign(user_id, org_id, issuer=sessions.issuer, ttl=ttl))


@click.command("purge-idempotency-keys")
@with_appcontext
def purge_idempotency_keys() -> None:
    """Delete Idempotency-Key records older than 24 hours (the service also does, as it goes)."""
    click.echo(f"Deleted {idempotency.purge_expired_keys()} expired idempotency keys.")


def echo_table(rows: list[tuple[str, ...]]) -> None:
    """Left-aligned columns, for people reading a terminal."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def register_cli(app: Flask) -> None:
    app.cli.add_command(api_keys_cli)
    app.cli.add_command(dev_token)
    app.cli.add_command(purge_idempotency_keys)
    app.cli.add_command(staff_cli)
