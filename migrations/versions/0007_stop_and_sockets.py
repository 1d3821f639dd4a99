"""A message's status (a stopped reply), and single-use tickets for the WebSocket.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.add_column(
        "messages",
        sa.Column("status", sa.String(16), server_default=sa.text("'complete'"), nullable=False),
    )
    op.create_check_constraint(
        "ck_messages_status_known", "messages", "status IN ('complete', 'stopped')"
    )
    op.create_table(
        "socket_tickets",
        sa.Column("ticket_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("org_id", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("conversation_id", sa.String(24), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ticket_hash", name="pk_socket_tickets"),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name="fk_socket_tickets_conversation_id_conversations",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_socket_tickets_conversation_id", "socket_tickets", ["conversation_id"])
    op.create_index("ix_socket_tickets_expires_at", "socket_tickets", ["expires_at"])


def downgrade():
    op.drop_table("socket_tickets")
    op.drop_constraint("ck_messages_status_known", "messages", type_="check")
    op.drop_column("messages", "status")
