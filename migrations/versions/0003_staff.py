"""Staff accounts for the admin at /admin.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "staff",
        sa.Column("id", sa.String(24), nullable=False),
        # Stored lowercased, so uniqueness and sign-in ignore case.
        sa.Column("email", sa.String(254), nullable=False),
        # A werkzeug scrypt hash; the password itself is never stored.
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("date_trunc('milliseconds', now())"),
            nullable=False,
        ),
        sa.Column("last_login_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_staff"),
        sa.UniqueConstraint("email", name="uq_staff_email"),
        sa.CheckConstraint("id ~ '^[0-9a-f]{24}$'", name="ck_staff_id_is_object_id"),
        sa.CheckConstraint("role IN ('viewer', 'admin')", name="ck_staff_role_known"),
        sa.CheckConstraint("email = lower(email)", name="ck_staff_email_lowercase"),
    )


def downgrade():
    op.drop_table("staff")
