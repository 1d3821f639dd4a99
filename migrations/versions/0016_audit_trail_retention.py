"""The audit trail has a retention: events older than it are purged by the service. The
trigger lets such a DELETE through only for events at least 90 days old, in a transaction
that has said it purges, so no configuration can make the service delete recent events.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# The trigger's function, as migration 0009 made it with `{purge}` empty.
FUNCTION = """
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('florent.erasing_person', true) = 'on' THEN
        RETURN OLD;
    END IF;{purge}
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
"""
PURGE = """
    IF TG_OP = 'DELETE' AND current_setting('florent.purging_expired', true) = 'on'
            AND OLD.occurred_at < now() - interval '90 days' THEN
        RETURN OLD;
    END IF;"""


def upgrade():
    op.execute(FUNCTION.format(purge=PURGE))


def downgrade():
    op.execute(FUNCTION.format(purge=""))
