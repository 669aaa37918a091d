"""phone calls: the console's call log (来电登记) of calls the office and
hallway leaders took, and what came of each

Revision ID: r0006phonecalls
Revises: r0004programme
Create Date: 2026-12-02 17:00:00
"""
import sqlalchemy as sa
from alembic import op

import services.common.db

revision = "r0006phonecalls"
down_revision = "r0004programme"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "phone_call",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("called_at", services.common.db.UTCDateTime(), nullable=False),
        sa.Column("caller_phone", sa.String(length=20), nullable=False),
        sa.Column("caller_name", sa.String(length=64), nullable=False),
        sa.Column("building_code", sa.String(length=16), nullable=True),
        sa.Column("unit", sa.String(length=8), nullable=True),
        sa.Column("topic", sa.String(length=32), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("referred_to", sa.String(length=16), nullable=True),
        sa.Column("service_request_id", sa.String(length=36), nullable=True),
        sa.Column("taken_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", services.common.db.UTCDateTime(), nullable=False),
        sa.Column("anonymised_at", services.common.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["building_code"], ["building.code"]),
        sa.ForeignKeyConstraint(["service_request_id"], ["service_request.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("called_at", "building_code", "outcome", "service_request_id", "taken_by"):
        op.create_index(f"ix_phone_call_{column}", "phone_call", [column], unique=False)


def downgrade():
    for column in ("called_at", "building_code", "outcome", "service_request_id", "taken_by"):
        op.drop_index(f"ix_phone_call_{column}", table_name="phone_call")
    op.drop_table("phone_call")
