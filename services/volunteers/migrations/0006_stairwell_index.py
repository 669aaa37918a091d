"""stairwell index: volunteers by building and stairwell

Revision ID: v0006stairwell
Revises: v0005programme
Create Date: 2026-12-02 19:20:00

Matching reads a request's candidates nearest first, its stairwell before
the rest of its building (dispatch.Dispatcher.best_free): (building, unit)
finds a stairwell's volunteers without reading the whole building's, and
still serves the building alone, so the single-column index goes.
"""
from alembic import op

revision = "v0006stairwell"
down_revision = "v0005programme"
branch_labels = None
depends_on = None


def upgrade():
    op.create_index("ix_volunteer_building_unit", "volunteer", ["building", "unit"])
    op.drop_index("ix_volunteer_building", table_name="volunteer")


def downgrade():
    op.create_index("ix_volunteer_building", "volunteer", ["building"])
    op.drop_index("ix_volunteer_building_unit", table_name="volunteer")
