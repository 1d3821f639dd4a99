"""The organization leads every key of a person's data, ready to distribute by it.

Conversations, messages, idempotency keys and socket tickets are keyed by
(org_id, ...), and every reference between them carries org_id, so a distributed
PostgreSQL (Citus) can keep an organization's rows together (docs/scaling.md). Messages
learn their organization from their conversation. API keys and staff stay as they are:
small tables every node may hold whole.

Each primary key is rebuilt, which rewrites its index: on a large table, run this in a
quiet hour.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# (table, the foreign key to conversations, its index) before and after.
REFERENCES = [
    ("messages", "fk_messages_conversation_id_conversations", "ix_messages_conversation_order"),
    (
        "idempotency_keys",
        "fk_idempotency_keys_conversation_id_conversations",
        "ix_idempotency_keys_conversation_id",
    ),
    (
        "socket_tickets",
        "fk_socket_tickets_conversation_id_conversations",
        "ix_socket_tickets_conversation_id",
    ),
]


def upgrade():
    op.add_column("messages", sa.Column("org_id", sa.String(255), nullable=True))
    op.execute(
        "UPDATE messages AS m SET org_id = c.org_id FROM conversations AS c "
        "WHERE c.id = m.conversation_id"
    )
    op.alter_column("messages", "org_id", nullable=False)

    for table, foreign_key, index in REFERENCES:
        op.drop_constraint(foreign_key, table, type_="foreignkey")
        op.drop_index(index, table_name=table)
    for table, columns in (
        ("conversations", ["org_id", "id"]),
        ("messages", ["org_id", "id"]),
        ("socket_tickets", ["org_id", "ticket_hash"]),
    ):
        op.drop_constraint(f"pk_{table}", table, type_="primary")
        op.create_primary_key(f"pk_{table}", table, columns)

    op.create_index(
        "ix_messages_conversation_order",
        "messages",
        ["org_id", "conversation_id", "created_at", "id"],
    )
    op.create_index(
        "ix_idempotency_keys_conversation", "idempotency_keys", ["org_id", "conversation_id"]
    )
    op.create_index(
        "ix_socket_tickets_conversation", "socket_tickets", ["org_id", "conversation_id"]
    )
    # The admin lists everyone's rows by id (so by creation): no longer a primary key's.
    op.create_index("ix_conversations_id", "conversations", ["id"])
    op.create_index("ix_messages_id", "messages", ["id"])
    for table, _, _ in REFERENCES:
        op.create_foreign_key(
            f"fk_{table}_org_id_conversations",
            table,
            "conversations",
            ["org_id", "conversation_id"],
            ["org_id", "id"],
            ondelete="CASCADE",
        )


def downgrade():
    for table, _, _ in REFERENCES:
        op.drop_constraint(f"fk_{table}_org_id_conversations", table, type_="foreignkey")
    op.drop_index("ix_messages_id", table_name="messages")
    op.drop_index("ix_conversations_id", table_name="conversations")
    op.drop_index("ix_socket_tickets_conversation", table_name="socket_tickets")
    op.drop_index("ix_idempotency_keys_conversation", table_name="idempotency_keys")
    op.drop_index("ix_messages_conversation_order", table_name="messages")
    for table, column in (
        ("conversations", "id"),
        ("messages", "id"),
        ("socket_tickets", "ticket_hash"),
    ):
        op.drop_constraint(f"pk_{table}", table, type_="primary")
        op.create_primary_key(f"pk_{table}", table, [column])
    op.create_index(
        "ix_messages_conversation_order", "messages", ["conversation_id", "created_at", "id"]
    )
    op.create_index("ix_idempotency_keys_conversation_id", "idempotency_keys", ["conversation_id"])
    op.create_index("ix_socket_tickets_conversation_id", "socket_tickets", ["conversation_id"])
    for table, foreign_key, _ in REFERENCES:
        op.create_foreign_key(
            foreign_key, table, "conversations", ["conversation_id"], ["id"], ondelete="CASCADE"
        )
    op.drop_column("messages", "org_id")
