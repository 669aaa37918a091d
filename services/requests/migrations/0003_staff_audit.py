"""staff audit: what the office changed about staff accounts and Open311 keys

Revision ID: r0003staffaudit
Revises: r0002publicid
Create Date: 2026-12-02 14:00:00
"""
import sqlalchemy as sa
from alembic import op

from services.common.db import UTCDateTime

revision = "r0003staffaudit"
down_revision = "r0002publicid"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "staff_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=300), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_staff_audit_at", "staff_audit", ["at"])


def downgrade():
    op.drop_index("ix_staff_audit_at", table_name="staff_audit")
    op.drop_table("staff_audit")
