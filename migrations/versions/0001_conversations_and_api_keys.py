"""Conversations and organization API keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Times are stored at the millisecond precision the API shows.
NOW_MS = sa.text("date_trunc('milliseconds', now())")


def upgrade():
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("org_id", sa.String(255), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        # SHA-256 of the secret; the secret itself is never stored.
        sa.Column("secret_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW_MS, nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.CheckConstraint("id ~ '^[0-9a-f]{24}$'", name="ck_api_keys_id_is_object_id"),
    )
    op.create_index("ix_api_keys_org_id", "api_keys", ["org_id"])

    op.create_table(
        "conversations",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("org_id", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("title", sa.String(120), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("user_display", sa.String(200), nullable=True),
        sa.Column("timezone", sa.String(100), nullable=True),
        sa.Column("message_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_message_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=NOW_MS, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=NOW_MS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_conversations"),
        sa.CheckConstraint("id ~ '^[0-9a-f]{24}$'", name="ck_conversations_id_is_object_id"),
        sa.CheckConstraint(
            "char_length(title) BETWEEN 1 AND 120", name="ck_conversations_title_length"
        ),
        sa.CheckConstraint(
            "message_count >= 0", name="ck_conversations_message_count_not_negative"
        ),
    )
    # "This caller's conversations, most recently updated first": the list endpoint's
    # keyset pagination on (updated_at, id) walks this index and nothing else.
    op.create_index(
        "ix_conversations_owner_recent",
        "conversations",
        ["org_id", "user_id", sa.text("updated_at DESC"), sa.text("id DESC")],
    )


def downgrade():
    op.drop_index("ix_conversations_owner_recent", table_name="conversations")
    op.drop_table("conversations")
    op.drop_index("ix_api_keys_org_id", table_name="api_keys")
    op.drop_table("api_keys")
