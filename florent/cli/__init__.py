"""flask commands: API keys, staff accounts, the audit trail and people's erasure,
development tokens, housekeeping."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from ..conversations import idempotency
from .api_keys import api_keys_cli
from .audit import audit_cli, people_cli
from .staff import staff_cli


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


def register_cli(app: Flask) -> None:
    app.cli.add_command(api_keys_cli)
    app.cli.add_command(audit_cli)
    app.cli.add_command(dev_token)
    app.cli.add_command(people_cli)
    app.cli.add_command(purge_idempotency_keys)
    app.cli.add_command(staff_cli)
