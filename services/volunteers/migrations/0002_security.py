"""security: offer tokens stored hashed, portal session epochs, demo markers

Revision ID: v0002security
Revises: 4c85f8c331cd
Create Date: 2026-12-02 10:45:00

Offer links stay valid across the upgrade: each stored token is replaced
by its SHA-256, which is what the offer page now looks up. A downgrade
cannot bring the tokens back; it gives each offer a fresh random token,
so links sent before the downgrade stop working.
"""
import hashlib
import secrets

import sqlalchemy as sa
from alembic import op

revision = "v0002security"
down_revision = "4c85f8c331cd"
branch_labels = None
depends_on = None

offer = sa.table("offer", sa.column("id", sa.Integer), sa.column("token", sa.String),
                 sa.column("token_hash", sa.String))


def sqlite_foreign_keys(on: bool) -> None:
    """SQLite changes a column by copying the table; dropping the old copy
    of a table others point to (assignment → offer) is refused while
    foreign keys are enforced, and the pragma is ignored inside a
    transaction. So: commit what came before (SQLite's DDL is not
    transactional here anyway), switch enforcement off for the copy, and on
    again after it, checking that every reference still holds."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    raw = bind.connection.dbapi_connection
    raw.commit()
    if on:
        bad = raw.execute("PRAGMA foreign_key_check").fetchall()
        if bad:
            raise RuntimeError(f"foreign keys broken by the migration: {bad[:5]}")
    raw.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")


def _mark_earlier_demo() -> None:
    """The demo seed's volunteers and station from before this marker existed
    (the demo was the default then), known by name and phone (the station by
    code and name) together, as the community file lists them."""
    from services.common.community import load
    from services.common.settings import community_file

    data = load(community_file())
    volunteer = sa.table("volunteer", sa.column("name"), sa.column("phone"), sa.column("demo", sa.Boolean()))
    for v in data.get("demo_volunteers", []):
        op.execute(volunteer.update().where(volunteer.c.name == v["name"], volunteer.c.phone == v["phone"])
                   .values(demo=True))
    station = sa.table("station", sa.column("code"), sa.column("name"), sa.column("demo", sa.Boolean()))
    for st in data.get("demo_stations", []):
        op.execute(station.update().where(station.c.code == st["code"], station.c.name == st["name"])
                   .values(demo=True))


def upgrade():
    # Plain ADD COLUMN (with a default) needs no table copy, even on SQLite.
    op.add_column("volunteer", sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("volunteer", sa.Column("demo", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("station", sa.Column("demo", sa.Boolean(), nullable=False, server_default=sa.false()))
    _mark_earlier_demo()

    op.add_column("offer", sa.Column("token_hash", sa.String(length=64), nullable=True))
    conn = op.get_bind()
    for offer_id, token in conn.execute(sa.select(offer.c.id, offer.c.token)).all():
        conn.execute(offer.update().where(offer.c.id == offer_id)
                     .values(token_hash=hashlib.sha256(token.encode()).hexdigest()))
    sqlite_foreign_keys(False)
    with op.batch_alter_table("offer", schema=None) as batch_op:
        batch_op.alter_column("token_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint("uq_offer_token_hash", ["token_hash"])
        batch_op.drop_column("token")
    sqlite_foreign_keys(True)


def downgrade():
    op.add_column("offer", sa.Column("token", sa.String(length=64), nullable=True))
    conn = op.get_bind()
    for (offer_id,) in conn.execute(sa.select(offer.c.id)).all():
        conn.execute(offer.update().where(offer.c.id == offer_id).values(token=secrets.token_urlsafe(24)))
    sqlite_foreign_keys(False)
    with op.batch_alter_table("offer", schema=None) as batch_op:
        batch_op.alter_column("token", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint("uq_offer_token", ["token"])
        batch_op.drop_constraint("uq_offer_token_hash", type_="unique")
        batch_op.drop_column("token_hash")
    with op.batch_alter_table("station", schema=None) as batch_op:
        batch_op.drop_column("demo")
    with op.batch_alter_table("volunteer", schema=None) as batch_op:
        batch_op.drop_column("demo")
        batch_op.drop_column("session_epoch")
    sqlite_foreign_keys(True)
