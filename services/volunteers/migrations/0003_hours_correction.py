"""hours correction: the office's correction of a volunteer's hours keeps
the hours before it and the reason (who: confirmed_by)

Revision ID: v0003hourscorrection
Revises: v0002security
Create Date: 2026-12-02 14:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "v0003hourscorrection"
down_revision = "v0002security"
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMNs: no table copy on SQLite.
    op.add_column("hours_entry", sa.Column("corrected_from", sa.Numeric(precision=5, scale=1), nullable=True))
    op.add_column("hours_entry", sa.Column("corrected_reason", sa.String(length=300), nullable=False,
                                           server_default=""))


def downgrade():
    op.drop_column("hours_entry", "corrected_reason")
    op.drop_column("hours_entry", "corrected_from")
