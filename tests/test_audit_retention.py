"""The audit trail's retention: events past it are purged as the service goes, a batch at
a time, and the database keeps every event younger than its own floor whatever it is asked."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from florent import audit, housekeeping
from florent.auth.apikeys import issue_api_key
from florent.config import (
    AUDIT_MAX_RETENTION_DAYS,
    AUDIT_MIN_RETENTION_DAYS,
    ConfigError,
    read_settings,
)
from florent.extensions import db
from florent.models import AuditEvent

from .conftest import bearer
from .factories import TESTER, URL

OLD_EVENTS = text(
    "INSERT INTO audit_events (org_id, id, occurred_at, actor_kind, actor_id, action) "
    "SELECT 'org_01ACME', substr(md5(random()::text || n), 1, 24), "
    "now() - make_interval(days => :age), 'api_key', 'k', :action "
    "FROM generate_series(1, :count) AS n"
)


def add_events(action: str, *, age_days: int, count: int = 1) -> None:
    db.session.execute(OLD_EVENTS, {"age": age_days, "action": action, "count": count})
    db.session.commit()


def actions() -> list[str]:
    return sorted(db.session.scalars(select(AuditEvent.action)))


def test_events_past_the_retention_go_once_a_request_made_through_impersonation_is_sent(
    app, client
):
    with app.app_context():
        assert app.config["FLORENT_AUDIT_RETENTION_DAYS"] == 365
        add_events("old.enough", age_days=366)
        add_events("within.retention", age_days=364)
        _, plaintext = issue_api_key("org_01ACME", "bridge", by=TESTER, can_impersonate=True)
    housekeeping.forget("audit trail")

    # A request that is not impersonated fills nothing, and purges nothing.
    plain = client.get(URL, headers=bearer(plaintext))
    assert plain.status_code == 200
    plain.close()
    with app.app_context():
        assert "old.enough" in actions()

    headers = {**bearer(plaintext), "X-Act-As-User": "user_01ALICE"}
    response = client.get(URL, headers=headers)
    assert response.status_code == 200
    with app.app_context():
        assert "old.enough" in actions()  # not while the response is on its way
    response.close()  # as the server does once it has sent it

    with app.app_context():
        assert actions() == sorted([audit.KEY_ISSUED, "api.list_conversations", "within.retention"])


def test_a_backlog_goes_a_bounded_number_of_batches_at_a_time(app):
    with app.app_context():
        add_events("old.enough", age_days=400, count=2 * audit.PURGE_BATCH + 500)

        assert audit.purge_expired(365, batches=2) == 2 * audit.PURGE_BATCH
        assert audit.purge_expired(365, batches=2) == 500
        assert actions() == []


def test_flask_audit_purge_deletes_every_event_past_the_retention_at_once(app):
    with app.app_context():
        add_events("old.enough", age_days=400, count=audit.PURGE_BATCH * audit.PURGE_BATCHES + 1)
        add_events("within.retention", age_days=364)

    result = app.test_cli_runner().invoke(args=["audit", "purge"])

    assert result.exit_code == 0, result.output
    expected = audit.PURGE_BATCH * audit.PURGE_BATCHES + 1
    assert result.output == f"Deleted {expected} audit events older than 365 days.\n"
    with app.app_context():
        assert actions() == ["within.retention"]


@pytest.mark.parametrize(
    "statement",
    [
        # The purge, asked to keep less than the floor: a younger event stops it whole.
        "SELECT set_config('florent.purging_expired', 'on', true); "
        "DELETE FROM audit_events WHERE occurred_at < now() - interval '10 days'",
        # An old event, deleted without saying it is a purge.
        "DELETE FROM audit_events WHERE occurred_at < now() - interval '365 days'",
    ],
    ids=["younger than the floor", "not a purge"],
)
def test_the_database_refuses_deletes_other_than_the_purge_of_old_events(app, statement):
    with app.app_context():
        add_events("young", age_days=AUDIT_MIN_RETENTION_DAYS - 1)
        add_events("old", age_days=400)
        with pytest.raises(DBAPIError) as refused:
            for part in statement.split("; "):
                db.session.execute(text(part))
        db.session.rollback()

        assert isinstance(refused.value.orig, psycopg.errors.InsufficientPrivilege)
        assert actions() == ["old", "young"]


def test_the_purge_keeps_events_younger_than_the_floor_it_may_be_set_to(app):
    with app.app_context():
        add_events("young", age_days=AUDIT_MIN_RETENTION_DAYS - 1)
        add_events("old", age_days=AUDIT_MIN_RETENTION_DAYS + 1)

        assert audit.purge_expired(AUDIT_MIN_RETENTION_DAYS) == 1
        assert actions() == ["young"]


@pytest.mark.parametrize("value", ["30", "89", "0", "-1", "a year", "36501", "3000000"])
def test_a_retention_outside_the_floor_and_a_century_or_not_a_number_is_refused(value):
    with pytest.raises(ConfigError, match="FLORENT_AUDIT_RETENTION_DAYS"):
        read_settings({"FLORENT_AUDIT_RETENTION_DAYS": value})


def test_a_retention_of_the_floor_or_longer_is_taken():
    floor = str(AUDIT_MIN_RETENTION_DAYS)
    assert read_settings({"FLORENT_AUDIT_RETENTION_DAYS": floor}).audit_retention_days == 90
    assert read_settings({"FLORENT_AUDIT_RETENTION_DAYS": "730"}).audit_retention_days == 730
    century = read_settings({"FLORENT_AUDIT_RETENTION_DAYS": str(AUDIT_MAX_RETENTION_DAYS)})
    assert century.audit_retention_days == AUDIT_MAX_RETENTION_DAYS
    assert read_settings({}).audit_retention_days == 365
    assert timedelta(days=read_settings({}).audit_retention_days) > timedelta(days=90)
