"""gateways: SMS and voice to residents

A recipient may opt out of SMS and calls (退订: the inbox only); a delivery
keeps the event's gateway parameters (Chinese SMS is a template code and
its parameters, not text) and counts its tries on the current channel (a
refusal moves on at once, so tries are no longer 3 per channel).

Revision ID: n0003gateways
Revises: n0002keyedtext
Create Date: 2026-12-02 17:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "n0003gateways"
down_revision = "n0002keyedtext"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("recipient", sa.Column("sms_opt_out", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("delivery", sa.Column("gateway_params", sa.JSON(), nullable=True))
    op.add_column("delivery", sa.Column("channel_tries", sa.Integer(), nullable=False, server_default="0"))


def downgrade():
    op.drop_column("delivery", "channel_tries")
    op.drop_column("delivery", "gateway_params")
    op.drop_column("recipient", "sms_opt_out")
