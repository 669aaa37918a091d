"""reply digest: residents' SMS replies find the message they answer

A delivery by SMS or call keeps the keyed digest of the phone it went to,
so that a reply (上行) pushed by the gateway finds the follow-up or the
morning check-in text it answers, without the number being stored.

Revision ID: n0004replies
Revises: n0003gateways
Create Date: 2026-12-02 19:20:00
"""
import sqlalchemy as sa
from alembic import op

revision = "n0004replies"
down_revision = "n0003gateways"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("delivery", sa.Column("phone_digest", sa.String(32), nullable=True))
    op.create_index("ix_delivery_phone_digest", "delivery", ["phone_digest"])


def downgrade():
    op.drop_index("ix_delivery_phone_digest", "delivery")
    op.drop_column("delivery", "phone_digest")
