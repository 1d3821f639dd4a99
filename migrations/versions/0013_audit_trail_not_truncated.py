"""The audit trail refuses TRUNCATE too: row triggers never see one, so UPDATE and DELETE
were refused while a TRUNCATE emptied the table.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade():
    # The append-only function of 0009 refuses any operation but an erasure's DELETE.
    op.execute(
        "CREATE TRIGGER audit_events_not_truncated BEFORE TRUNCATE ON audit_events "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()"
    )


def downgrade():
    op.execute("DROP TRIGGER audit_events_not_truncated ON audit_events")
