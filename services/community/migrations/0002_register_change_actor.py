"""register changes say who asked and what they touched

Revision ID: c0002changes
Revises: c0001register
Create Date: 2026-12-02 16:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "c0002changes"
down_revision = "c0001register"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("register_change", schema=None) as batch_op:
        batch_op.add_column(sa.Column("actor", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("household_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("resident_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_register_change_actor"), ["actor"], unique=False)


def downgrade():
    with op.batch_alter_table("register_change", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_register_change_actor"))
        batch_op.drop_column("resident_id")
        batch_op.drop_column("household_id")
        batch_op.drop_column("actor")
