"""A WebSocket ticket remembers until when the session token that minted it is good, so
the socket it opens stops working when the token would be refused on a request.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade():
    # Nullable with no default: PostgreSQL adds it without rewriting the table. Tickets
    # minted before it have none, and live a minute at most.
    op.add_column(
        "socket_tickets",
        sa.Column("caller_valid_until", sa.DateTime(timezone=True)),
    )


def downgrade():
    op.drop_column("socket_tickets", "caller_valid_until")
