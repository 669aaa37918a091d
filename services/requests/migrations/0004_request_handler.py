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
    with op.batch_alter_table("service_request") as batch:
        batch.add_column(sa.Column("handler", sa.String(length=64), nullable=True))
        batch.create_index("ix_service_request_handler", ["handler"])


def downgrade():
    with op.batch_alter_table("service_request") as batch:
        batch.drop_index("ix_service_request_handler")
        batch.drop_column("handler")
