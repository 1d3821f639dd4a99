"""API keys carry permissions and may impersonate; an append-only audit trail.

Keys issued before permissions existed keep both, and none may impersonate.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BOTH = "ARRAY['conversations:read', 'conversations:write']::varchar[]"

# UPDATE and DELETE are refused, except the DELETE of a person's erasure, which sets
# florent.erasing_person for its own transaction (florent/audit.py).
APPEND_ONLY = """
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('florent.erasing_person', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
"""


def upgrade():
    op.add_column(
        "api_keys",
        sa.Column(
            "permissions", sa.ARRAY(sa.String(32)), server_default=sa.text(BOTH), nullable=False
        ),
    )
    op.add_column(
        "api_keys",
        sa.Column("can_impersonate", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.create_check_constraint(
        "ck_api_keys_permissions_known", "api_keys", f"permissions <@ {BOTH}"
    )
    op.create_table(
        "audit_events",
        sa.Column("org_id", sa.String(255), nullable=False),
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column(
            "occurred_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("date_trunc('milliseconds', now())"),
            nullable=False,
        ),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.String(255), nullable=False),
        sa.Column("acting_for", sa.String(255), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=True),
        sa.Column("request_id", sa.String(128), nullable=True),
        sa.Column("client_address", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("org_id", "id", name="pk_audit_events"),
    )
    for name, columns in (
        ("ix_audit_events_recent", []),
        ("ix_audit_events_org", ["org_id"]),
        ("ix_audit_events_actor", ["actor_id"]),
        ("ix_audit_events_action", ["action"]),
    ):
        order = [sa.text("occurred_at DESC"), sa.text("id DESC")]
        op.create_index(name, "audit_events", [*columns, *order])
    op.create_index("ix_audit_events_acting_for", "audit_events", ["org_id", "acting_for"])
    op.execute(APPEND_ONLY)


def downgrade():
    op.execute("DROP TRIGGER audit_events_append_only ON audit_events")
    op.execute("DROP FUNCTION audit_events_append_only()")
    op.drop_table("audit_events")
    op.drop_constraint("ck_api_keys_permissions_known", "api_keys", type_="check")
    op.drop_column("api_keys", "can_impersonate")
    op.drop_column("api_keys", "permissions")
