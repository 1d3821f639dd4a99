"""A conversation remembers when Florent started its reply (one turn at a time).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    # Nullable and without a default: adding it rewrites nothing and takes no long lock.
    op.add_column(
        "conversations", sa.Column("reply_started_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade():
    op.drop_column("conversations", "reply_started_at")
