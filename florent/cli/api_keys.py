"""`flask api-keys ...`: issue, list and revoke organization API keys."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from ..audit import operator
from ..auth import apikeys
from ..models import PERMISSIONS
from .tables import echo_table, moment, yes_no

api_keys_cli = AppGroup("api-keys", help="Issue, list and revoke organization API keys.")


@api_keys_cli.command("create")
@click.option("--org", "org_id", required=True, help="Organization id the key belongs to.")
@click.option("--name", required=True, help="A name people will recognise the key by.")
@click.option(
    "--permission",
    "permissions",
    multiple=True,
    type=click.Choice(PERMISSIONS),
    help="What the key may do; repeat for both. Without it, the key has both.",
)
@click.option(
    "--can-impersonate",
    is_flag=True,
    help="The key may act on behalf of a person of its organization (X-Act-As-User).",
)
def create_api_key(
    org_id: str, name: str, permissions: tuple[str, ...], can_impersonate: bool
) -> None:
    """Issue a key. Its plaintext is printed once, alone on the last line."""
    if not (1 <= len(org_id) <= 255 and 1 <= len(name) <= 100):
        raise click.BadParameter("--org must be 1-255 and --name 1-100 characters")
    key, plaintext = apikeys.issue_api_key(
        org_id,
        name,
        by=operator(),
        permissions=permissions or PERMISSIONS,
        can_impersonate=can_impersonate,
    )
    click.echo(f"Created API key {key.id} ({key.prefix}...) for organization {org_id}.", err=True)
    click.echo("Store it now: it cannot be shown again.", err=True)
    click.echo(plaintext)


@api_keys_cli.command("list")
@click.option("--org", "org_id", help="Only this organization's keys.")
def list_api_keys(org_id: str | None) -> None:
    """List keys (never their secrets)."""
    rows = [
        (
            "ID",
            "PREFIX",
            "NAME",
            "ORG",
            "PERMISSIONS",
            "IMPERSONATE",
            "CREATED",
            "LAST USED",
            "REVOKED",
        )
    ]
    for key in apikeys.list_api_keys(org_id):
        rows.append(
            (
                key.id,
                key.prefix,
                key.name,
                key.org_id,
                ",".join(key.permissions) or "none",
                yes_no(key.can_impersonate),
                moment(key.created_at),
                moment(key.last_used_at),
                moment(key.revoked_at),
            )
        )
    echo_table(rows)


@api_keys_cli.command("revoke")
@click.argument("key")
def revoke_api_key(key: str) -> None:
    """Revoke a key, given its id or its plaintext."""
    revoked = apikeys.revoke_api_key(key, by=operator())
    if revoked is None:
        raise click.ClickException("no such API key")
    click.echo(f"Revoked API key {revoked.id} ({revoked.prefix}...).")
