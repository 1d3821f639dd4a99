"""A caller's conversations in an order of their own (NULLS LAST), which only their index
has: the planner no longer walks everyone's conversations for one caller's page.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def rebuild(nulls: str) -> None:
    """Build the new index beside the old one without blocking writes, then swap names."""
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_conversations_owner_recent_new",
            "conversations",
            ["org_id", "user_id", sa.text(f"updated_at DESC{nulls}"), sa.text(f"id DESC{nulls}")],
            postgresql_concurrently=True,
        )
        op.drop_index(
            "ix_conversations_owner_recent",
            table_name="conversations",
            postgresql_concurrently=True,
        )
        op.execute(
            "ALTER INDEX ix_conversations_owner_recent_new RENAME TO ix_conversations_owner_recent"
        )


def upgrade():
    # Neither column is ever null: NULLS LAST only makes the order the caller's index's
    # alone (conversations/service.py, NEWEST_FIRST).
    rebuild(" NULLS LAST")


def downgrade():
    rebuild("")
