"""office registry: who verified a credential and when; staff changes

Revision ID: v0003office
Revises: v0003hourscorrection
Create Date: 2026-12-02 14:10:00

The console now registers and edits volunteers and imports rosters through
tasks. Each verified skill records its verifier and time (unknown, NULL,
for credentials verified before this revision), and `staff_change` holds
the outcome of each change the console asked for, under its change id.
"""
import sqlalchemy as sa
from alembic import op

import services.common.db

revision = "v0003office"
down_revision = "v0003hourscorrection"
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMN (nullable) needs no table copy, even on SQLite.
    op.add_column("volunteer_skill", sa.Column("verified_by", sa.String(length=64), nullable=True))
    op.add_column("volunteer_skill", sa.Column("verified_at", services.common.db.UTCDateTime(), nullable=True))
    op.create_table(
        "staff_change",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("volunteer_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.Column("done_at", services.common.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade():
    op.drop_table("staff_change")
    # Nothing points at volunteer_skill: SQLite's table copy is safe here.
    with op.batch_alter_table("volunteer_skill", schema=None) as batch_op:
        batch_op.drop_column("verified_at")
        batch_op.drop_column("verified_by")
