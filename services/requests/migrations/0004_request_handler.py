"""request handler: the named staff member a request is handed to (经办人)

Revision ID: r0004handler
Revises: r0003staffaudit
Create Date: 2026-12-02 15:50:00
"""
import sqlalchemy as sa
from alembic import op

revision = "r0004handler"
down_revision = "r0003staffaudit"
branch_labels = None
depends_on = None


def upgrade():
    # Plain ALTERs, no batch table copy: SQLite refuses to drop and rebuild
    # service_request while status_change rows point at it (foreign_keys=ON).
    op.add_column("service_request", sa.Column("handler", sa.String(length=64), nullable=True))
    op.create_index("ix_service_request_handler", "service_request", ["handler"])


def downgrade():
    # SQLite (3.35+) drops a column in place, once no index covers it.
    op.drop_index("ix_service_request_handler", table_name="service_request")
    op.drop_column("service_request", "handler")
