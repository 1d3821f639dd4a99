"""Messages of a conversation.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "messages",
        sa.Column("id", sa.String(24), nullable=False),
        sa.Column("conversation_id", sa.String(24), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("date_trunc('milliseconds', now())"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        # Deleting a conversation deletes its messages in the same statement.
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name="fk_messages_conversation_id_conversations",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("id ~ '^[0-9a-f]{24}$'", name="ck_messages_id_is_object_id"),
        sa.CheckConstraint("role IN ('user', 'assistant')", name="ck_messages_role_known"),
    )
    op.create_index(
        "ix_messages_conversation_order", "messages", ["conversation_id", "created_at", "id"]
    )


def downgrade():
    op.drop_index("ix_messages_conversation_order", table_name="messages")
    op.drop_table("messages")
