"""programme requests: the community service's visits arrive as requests
(channel "programme", one per reference), with who should go first

Revision ID: r0004programme
Revises: r0004handler
Create Date: 2026-12-02 16:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "r0004programme"
down_revision = "r0004handler"
branch_labels = None
depends_on = None


def upgrade():
    # Plain ALTERs, no batch table copy: SQLite refuses to drop and rebuild
    # service_request while status_change rows point at it; SQLite does not
    # enforce a VARCHAR's length, so only PostgreSQL widens the channel.
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("service_request", "channel", existing_type=sa.String(length=8), type_=sa.String(length=16))
    op.add_column("service_request", sa.Column("programme_ref", sa.String(length=48), nullable=True))
    op.add_column("service_request", sa.Column("preferred_volunteer_id", sa.Integer(), nullable=True))
    op.add_column("service_request", sa.Column("first_to", sa.String(length=8), nullable=True))
    op.create_index("uq_service_request_programme_ref", "service_request", ["programme_ref"], unique=True)


def downgrade():
    # SQLite (3.35+) drops a column in place, once no index covers it.
    op.drop_index("uq_service_request_programme_ref", table_name="service_request")
    op.drop_column("service_request", "first_to")
    op.drop_column("service_request", "preferred_volunteer_id")
    op.drop_column("service_request", "programme_ref")
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("service_request", "channel", existing_type=sa.String(length=16), type_=sa.String(length=8))
