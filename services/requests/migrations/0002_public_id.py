"""public id for Open311, demo marker for staff

Open311 showed the request's internal UUID as its service_request_id; each
request now gets a public id of its own (models.new_public_id), given to
existing rows here. Staff accounts the demo seed made earlier are marked
by username, name and role together.

Revision ID: r0002publicid
Revises: 8ab0c1eb1a92
Create Date: 2026-11-28 10:00:00
"""
import secrets

import sqlalchemy as sa
from alembic import op

revision = "r0002publicid"
down_revision = "8ab0c1eb1a92"
branch_labels = None
depends_on = None

# A copy of models.new_public_id as it is today: a migration must not change
# when the model's code does.
ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def _public_id() -> str:
    return "LL-" + "".join(secrets.choice(ALPHABET) for _ in range(10))


def upgrade():
    # Plain ALTERs, no batch table copy: SQLite refuses to drop and rebuild
    # service_request while status_change rows point at it (foreign_keys=ON).
    op.add_column("service_request", sa.Column("public_id", sa.String(length=16), nullable=True))

    bind = op.get_bind()
    table = sa.table("service_request", sa.column("id", sa.String), sa.column("public_id", sa.String))
    ids = bind.execute(sa.select(table.c.id).where(table.c.public_id.is_(None))).scalars().all()
    given: set[str] = set()
    rows = []
    for request_id in ids:
        public_id = _public_id()
        while public_id in given:
            public_id = _public_id()
        given.add(public_id)
        rows.append({"request_id": request_id, "new_public_id": public_id})
    if rows:
        bind.execute(table.update().where(table.c.id == sa.bindparam("request_id"))
                     .values(public_id=sa.bindparam("new_public_id")), rows)

    # SQLite can only tighten a column by copying the table (see above); there
    # the column stays nullable and the application always fills it.
    if bind.dialect.name != "sqlite":
        op.alter_column("service_request", "public_id", existing_type=sa.String(length=16), nullable=False)
    op.create_index("ix_service_request_public_id", "service_request", ["public_id"], unique=True)

    op.add_column("staff_member", sa.Column("demo", sa.Boolean(), nullable=False, server_default=sa.false()))
    # The demo seed's accounts from before this marker existed (the demo was
    # the default then): known by username, name and role together, so that a
    # real account that merely shares a username stays unmarked.
    staff = sa.table("staff_member", sa.column("username"), sa.column("display_name"), sa.column("role"),
                     sa.column("demo", sa.Boolean()))
    for username, name, role in DEMO_STAFF:
        op.execute(staff.update().where(staff.c.username == username, staff.c.display_name == name,
                                        staff.c.role == role).values(demo=True))


# As services.requests.seed made them.
DEMO_STAFF = (("office", "社区办公室", "admin"), ("grid1", "第一网格网格长", "grid_leader"),
              ("hall-3-1", "3幢1单元楼道长", "hallway_leader"))


def downgrade():
    # SQLite (3.35+) drops a column in place, once no index covers it.
    op.drop_column("staff_member", "demo")
    op.drop_index("ix_service_request_public_id", table_name="service_request")
    op.drop_column("service_request", "public_id")
