"""Alembic environment shared by all services: each service passes its own
engine, metadata and versions folder (see services.common.db.Database)."""
from alembic import context

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=config.attributes["target_metadata"],
        render_as_batch=True,  # SQLite can only ALTER through table copies
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
