"""A reply slot remembers the API key that took it, so a key's replies in progress are
counted as the key's, whoever it acts for.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade():
    # Nullable with no default: PostgreSQL adds it without rewriting the table.
    op.add_column("conversations", sa.Column("reply_key_id", sa.String(length=24)))
    op.create_index(
        "ix_conversations_key_replying",
        "conversations",
        ["org_id", "reply_key_id"],
        postgresql_where=sa.text("reply_key_id IS NOT NULL"),
    )


def downgrade():
    op.drop_index("ix_conversations_key_replying", table_name="conversations")
    op.drop_column("conversations", "reply_key_id")
