"""keyed text: a sign-in or offer link kept on the delivery only, until it is over

The inbox copy (notification) no longer holds links that are keys; the
delivery keeps the text with the link until it is sent or dead. Existing
notifications of those templates lose their links here.

Revision ID: n0002keyedtext
Revises: 362f48a1dc6b
Create Date: 2026-12-02 12:00:00
"""
import re

import sqlalchemy as sa
from alembic import op

revision = "n0002keyedtext"
down_revision = "362f48a1dc6b"
branch_labels = None
depends_on = None

LINK = re.compile(r"https?://\S+/(?:login|offers)/[\w-]+")


def upgrade():
    op.add_column("delivery", sa.Column("keyed_short", sa.Text(), nullable=True))
    op.add_column("delivery", sa.Column("keyed_full", sa.Text(), nullable=True))
    # Links already stored in inbox copies: removed (a message still waiting
    # goes out without its link; the volunteer asks again or opens the portal).
    note = sa.table("notification", sa.column("id"), sa.column("template"), sa.column("short_body", sa.Text()),
                    sa.column("full_body", sa.Text()))
    conn = op.get_bind()
    rows = conn.execute(sa.select(note.c.id, note.c.short_body, note.c.full_body)
                        .where(note.c.template.in_(("magic_link", "offer")))).all()
    for note_id, short, full in rows:
        conn.execute(note.update().where(note.c.id == note_id)
                     .values(short_body=LINK.sub("—", short), full_body=LINK.sub("—", full)))


def downgrade():
    op.drop_column("delivery", "keyed_full")
    op.drop_column("delivery", "keyed_short")
