"""`flask audit list`: the audit trail as JSON lines; `flask audit purge`: the events past
the retention deleted now; `flask people erase`: a person's data erased on a
data-protection request, and audited."""

from __future__ import annotations

from datetime import UTC, datetime

import click
import orjson
from flask import current_app
from flask.cli import AppGroup

from .. import audit
from ..conversations.erasure import erase_person

audit_cli = AppGroup("audit", help="Read the audit trail, or purge what is past its retention.")
people_cli = AppGroup("people", help="Data-protection requests about a person.")


class Moment(click.ParamType):
    """An ISO 8601 time; UTC when it names no offset."""

    name = "time"

    def convert(self, value: str, param: click.Parameter | None, ctx: click.Context | None):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time, e.g. 2026-12-01T09:00:00Z", param, ctx)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@audit_cli.command("list")
@click.option("--org", "org_id", help="Only this organization's events.")
@click.option("--since", type=Moment(), help="Only events at or after this time (ISO 8601).")
def list_audit_events(org_id: str | None, since: datetime | None) -> None:
    """Print events as JSON lines, oldest first."""
    schema = audit.AuditEventSchema()
    for event in audit.list_events(org_id=org_id, since=since):
        click.echo(orjson.dumps(schema.dump(event)))


@audit_cli.command("purge")
def purge_audit_events() -> None:
    """Delete every event older than the retention (FLORENT_AUDIT_RETENTION_DAYS) now. The
    service does it as it goes, after requests made through impersonation."""
    retention_days = current_app.config["FLORENT_AUDIT_RETENTION_DAYS"]
    deleted = audit.purge_expired(retention_days, batches=None)
    click.echo(f"Deleted {deleted} audit events older than {retention_days} days.")


@people_cli.command("erase")
@click.option("--org", "org_id", required=True, help="The person's organization id.")
@click.option("--user", "user_id", required=True, help="The person's user id.")
@click.confirmation_option(prompt="Erase every conversation of this person, for good?")
def erase_person_command(org_id: str, user_id: str) -> None:
    """Erase a person's conversations (with their messages) and the audit events of
    requests made acting for them, and record that it was done, and by whom."""
    conversations = erase_person(org_id, user_id)
    # Last: an erasure cut short is run again, and its record is written once it is whole.
    events = audit.erase_person(org_id, user_id, by=audit.operator())
    click.echo(
        f"Erased {conversations} conversations and {events} audit events of {user_id} in {org_id}."
    )
