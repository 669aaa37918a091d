"""programme ref: a community visit's reference on matching's copy of the
request, so that the visitor's outcome goes back to the visit

Revision ID: v0005programme
Revises: v0003office
Create Date: 2026-12-02 16:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "v0005programme"
down_revision = "v0003office"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("service_request", sa.Column("programme_ref", sa.String(length=48), nullable=True))


def downgrade():
    # SQLite (3.35+) drops a column in place.
    op.drop_column("service_request", "programme_ref")
