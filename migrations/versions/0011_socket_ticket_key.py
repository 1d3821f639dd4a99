"""A WebSocket ticket remembers the key that minted it while acting for a person, so the
socket it opens is recorded in the audit trail as that key's.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    # Nullable, no default: PostgreSQL adds the column without rewriting the table.
    op.add_column("socket_tickets", sa.Column("acting_key_id", sa.String(24), nullable=True))


def downgrade():
    op.drop_column("socket_tickets", "acting_key_id")
