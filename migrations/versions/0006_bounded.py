"""Bounded by design: message lengths kept for the history's running sum, a caller's
replies in progress found by index, staff session versions, idempotency keys that go
with their conversation, and all conversations by last update (the admin's list).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    # A stored generated column: computed once per message, and the ALTER rewrites the
    # table once (a lock for as long as that takes on a large table).
    op.add_column(
        "messages",
        sa.Column(
            "content_chars",
            sa.Integer(),
            sa.Computed("char_length(content)", persisted=True),
            nullable=False,
        ),
    )
    # The admin lists all conversations as the API lists a caller's: last updated first.
    op.create_index(
        "ix_conversations_recent",
        "conversations",
        [sa.text("updated_at DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "ix_conversations_owner_replying",
        "conversations",
        ["org_id", "user_id"],
        postgresql_where=sa.text("reply_started_at IS NOT NULL"),
    )
    op.add_column(
        "staff",
        sa.Column("session_version", sa.Integer(), server_default=sa.text("1"), nullable=False),
    )

    op.add_column("idempotency_keys", sa.Column("conversation_id", sa.String(24), nullable=True))
    # Keys of conversations that still exist learn which one they made (from the stored
    # response); keys of deleted conversations go, as they would have with them.
    op.execute(
        """
        UPDATE idempotency_keys AS k
        SET conversation_id = c.id
        FROM conversations AS c
        WHERE k.response_body IS NOT NULL
          AND c.id = convert_from(k.response_body, 'UTF8')::jsonb -> 'conversation' ->> '_id'
        """
    )
    op.execute("DELETE FROM idempotency_keys WHERE conversation_id IS NULL")
    op.create_foreign_key(
        "fk_idempotency_keys_conversation_id_conversations",
        "idempotency_keys",
        "conversations",
        ["conversation_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_index("ix_idempotency_keys_conversation_id", "idempotency_keys", ["conversation_id"])


def downgrade():
    op.drop_index("ix_idempotency_keys_conversation_id", table_name="idempotency_keys")
    op.drop_constraint(
        "fk_idempotency_keys_conversation_id_conversations", "idempotency_keys", type_="foreignkey"
    )
    op.drop_column("idempotency_keys", "conversation_id")
    op.drop_column("staff", "session_version")
    op.drop_index("ix_conversations_owner_replying", table_name="conversations")
    op.drop_index("ix_conversations_recent", table_name="conversations")
    op.drop_column("messages", "content_chars")
