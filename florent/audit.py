"""The audit trail: security-relevant events, appended to `audit_events`, never changed,
kept for the retention (FLORENT_AUDIT_RETENTION_DAYS).

An event is written in the transaction of the change it records where there is one
(a key issued, a staff account deactivated, a request made through impersonation), so
the change and its record stand or fall together. What the trail keeps: when, which
organization, who acted (kind and id), for whom, what, on what, the request id and
the client address.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from flask import g, has_request_context, request
from marshmallow import fields
from sqlalchemy import Connection, Interval, bindparam, delete, func, insert, select, text, tuple_

from .conversations.schemas import Timestamp
from .dumping import OutputSchema
from .extensions import db
from .ids import new_object_id
from .models import AuditEvent

# What is recorded.
KEY_ISSUED, KEY_REVOKED = "api_key.issued", "api_key.revoked"
STAFF_SIGNED_IN, STAFF_SIGN_IN_FAILED = "staff.signed_in", "staff.sign_in_failed"
STAFF_SIGNED_OUT, STAFF_CREATED = "staff.signed_out", "staff.created"
STAFF_DEACTIVATED, CONVERSATION_OPENED = "staff.deactivated", "admin.conversation_opened"
PERSON_ERASED = "person.erased"
# A request made through impersonation records the API action it was, e.g. api.get_conversation.

INSERT = insert(AuditEvent)
# The erasure of a person is the one way to delete events: the trigger lets a DELETE
# through only in a transaction that has said so (migration 0009).
ERASING = text("SELECT set_config('florent.erasing_person', 'on', true)")
# A person is in the trail only as the one a key acted for: actors are keys, staff and
# operators, whose ids a person's may equal (a key may act for its own key id), so an
# event is never matched by its actor. Nor by its target, which names keys, accounts and
# conversations, and the person only in the record of their erasure, which stays.
ERASE = delete(AuditEvent).where(
    AuditEvent.org_id == bindparam("org_id"), AuditEvent.acting_for == bindparam("user_id")
)
# Events past the retention go too, a batch at a time, in a transaction that says it
# purges: the trigger lets through only events older than its own floor (migration 0016).
PURGING = text("SELECT set_config('florent.purging_expired', 'on', true)")
PURGE_BATCH = 1000
# Per run (once a minute per process): a backlog goes over a few minutes, not in one go.
PURGE_BATCHES = 10
PURGE = delete(AuditEvent).where(
    tuple_(AuditEvent.org_id, AuditEvent.id).in_(
        select(AuditEvent.org_id, AuditEvent.id)
        .where(AuditEvent.occurred_at < func.now() - bindparam("retention", type_=Interval()))
        .limit(PURGE_BATCH)
    )
)


@dataclass(frozen=True)
class Actor:
    """Who acted: an API key ("api_key"), a staff member in the admin ("staff") or an
    operator at the command line ("operator")."""

    kind: str
    id: str


@dataclass(frozen=True)
class Event:
    # Empty for an event of no organization's (a staff member signing in).
    org_id: str
    actor: Actor
    action: str
    target: str | None = None
    acting_for: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "id": new_object_id(),
            "org_id": self.org_id,
            "actor_kind": self.actor.kind,
            "actor_id": self.actor.id[:255],
            "action": self.action,
            "target": None if self.target is None else self.target[:255],
            "acting_for": self.acting_for,
            **_request_facts(),
        }


def _request_facts() -> dict[str, Any]:
    if not has_request_context():
        return {"request_id": None, "client_address": None}
    return {"request_id": g.get("request_id"), "client_address": request.remote_addr}


def record(event: Event, connection: Connection | None = None) -> None:
    """Append the event: in `connection`'s transaction, or the session's (which the
    use case then commits)."""
    (connection or db.session.connection()).execute(INSERT, event.row())


def record_now(event: Event) -> None:
    """Append the event in a transaction of its own (an event with no change to ride)."""
    record(event)
    db.session.commit()


def operator() -> Actor:
    """Who runs a command: the operating-system user."""
    return Actor("operator", os.environ.get("SUDO_USER") or os.environ.get("USER") or "unknown")


# -- Impersonation: the request's event rides on the use case's transaction ------------


def expect(event: Event) -> None:
    """The event of this request, written by the first transaction the request commits
    (database.py), or on its own when the request ends without one."""
    g.audit_pending = event


def pending() -> Event | None:
    return g.get("audit_pending") if has_request_context() else None


def name_target(target: str) -> None:
    """The request's pending event names what the request made: a new conversation's id
    is known only once its use case has chosen it, after the event was expected."""
    event = pending()
    if event is not None and event.target is None:
        expect(replace(event, target=target))


def written() -> None:
    g.audit_pending = None


def record_leftover() -> None:
    """after_request: an impersonated request that wrote nothing is recorded anyway."""
    event = pending()
    if event is not None:
        record_now(event)
        written()


# -- Reading and erasing ---------------------------------------------------------------


class AuditEventSchema(OutputSchema):
    """An event as `flask audit list` prints it."""

    id = fields.String()
    occurred_at = Timestamp()
    org_id = fields.String()
    actor_kind = fields.String()
    actor_id = fields.String()
    acting_for = fields.String(allow_none=True)
    action = fields.String()
    target = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
    client_address = fields.String(allow_none=True)


def list_events(org_id: str | None = None, since: datetime | None = None) -> Iterator[AuditEvent]:
    """Events, oldest first, read a thousand at a time however many there are."""
    query = select(AuditEvent).order_by(AuditEvent.occurred_at, AuditEvent.id)
    if org_id is not None:
        query = query.where(AuditEvent.org_id == org_id)
    if since is not None:
        query = query.where(AuditEvent.occurred_at >= since)
    yield from db.session.scalars(query.execution_options(yield_per=1000))


def erase_person(org_id: str, user_id: str, *, by: Actor) -> int:
    """Delete the events about a person (requests made acting for them) and record the
    erasure, in one transaction: the one way an event goes before its retention ends.
    Returns how many were."""
    connection = db.session.connection()
    connection.execute(ERASING)
    erased = connection.execute(ERASE, {"org_id": org_id, "user_id": user_id}).rowcount
    # Under `target`, which ERASE leaves alone: the record that the erasure was done.
    record(Event(org_id, by, PERSON_ERASED, target=user_id), connection)
    db.session.commit()
    return erased


def purge_expired(retention_days: int, *, batches: int | None = PURGE_BATCHES) -> int:
    """Delete events older than the retention, a batch per transaction, `batches` at most
    (None: until none is left); returns how many."""
    params = {"retention": timedelta(days=retention_days)}
    total, batch = 0, 0
    while batches is None or batch < batches:
        batch += 1
        connection = db.session.connection()
        connection.execute(PURGING)
        deleted = connection.execute(PURGE, params).rowcount
        db.session.commit()
        total += deleted
        if deleted < PURGE_BATCH:
            break
    return total
