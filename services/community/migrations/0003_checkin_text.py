"""the morning check-in text: the day it was last sent

A resident who checks in daily and whom the register reaches by text gets
a morning text to answer with "1" (报平安 by reply); the plan remembers the
day it last asked for one, so that beat's tick asks once a day.

Revision ID: c0003checkintext
Revises: c0002changes
Create Date: 2026-12-02 19:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = "c0003checkintext"
down_revision = "c0002changes"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("visit_plan", schema=None) as batch_op:
        batch_op.add_column(sa.Column("checkin_texted_on", sa.Date(), nullable=True))


def downgrade():
    with op.batch_alter_table("visit_plan", schema=None) as batch_op:
        batch_op.drop_column("checkin_texted_on")
