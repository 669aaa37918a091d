"""resident messages: how the resident asked to hear back about their
request (none, text, call), their own opt-in

Revision ID: r0007messages
Revises: r0006phonecalls
Create Date: 2026-12-02 17:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = "r0007messages"
down_revision = "r0006phonecalls"
branch_labels = None
depends_on = None


def upgrade():
    # Requests from before the opt-in existed: nobody asked for messages.
    op.add_column("service_request", sa.Column("messages", sa.String(length=8), nullable=False,
                                               server_default="none"))


def downgrade():
    # SQLite (3.35+) drops a column in place.
    op.drop_column("service_request", "messages")
