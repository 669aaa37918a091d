"""The `flask init-db` command each service offers: migrate to the newest
schema, then seed what the service keeps from the community data file.
Both steps are idempotent, so the web container runs it on every start."""
from __future__ import annotations

from pathlib import Path

import click
from alembic import command
from flask import current_app

from . import extensions as ext


def register_db_commands(app, metadata, versions_dir: Path, seed) -> None:
    @app.cli.command("init-db")
    def init_db():
        """Upgrade the database to the newest migration and seed it."""
        db = ext.database()
        db.upgrade(versions_dir, metadata)
        session = db.Session()
        try:
            summary = seed(session, current_app.config)
            session.commit()
        finally:
            db.Session.remove()
        click.echo(f"{current_app.config['SERVICE']}: database ready ({summary})")
        from .factory import check_before_serving
        from .settings import ConfigError

        try:
            check_before_serving(current_app._get_current_object())
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None

    @app.cli.command("db-revision")
    @click.option("-m", "--message", required=True)
    def db_revision(message):
        """Write a new migration from the difference between models and database."""
        db = ext.database()
        command.revision(db.alembic_config(versions_dir, metadata), message=message, autogenerate=True)
