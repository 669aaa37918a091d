"""SQLAlchemy set-up shared by the services: engine, scoped session, UTC
timestamps, and the Alembic migration runner (one env.py, versions per
service)."""
from __future__ import annotations

from datetime import timezone
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import DateTime, create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import scoped_session, sessionmaker
from sqlalchemy.types import TypeDecorator

MIGRATIONS_ENV = Path(__file__).with_name("migrations")


class UTCDateTime(TypeDecorator):
    """Stored as naive UTC (SQLite keeps no zone), always returned aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; Linli stores only aware UTC times")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


def _sqlite_pragmas(dbapi_conn, _record):
    # Web and worker processes share one file: WAL lets readers run beside
    # the writer, and busy_timeout makes a writer wait instead of failing.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # WAL with NORMAL sync: a commit survives any crash of the application;
    # only a power cut may lose the last moments (production runs PostgreSQL).
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # hide_parameters: a failed statement's error (and so a log line) never
        # carries the values, which may be a resident's name, phone or room.
        engine = create_engine(url, connect_args={"timeout": 10}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, hide_parameters=True)


class Database:
    """One engine and one scoped session per service process."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self.Session = scoped_session(sessionmaker(self.engine, expire_on_commit=False))

    def init_app(self, app) -> None:
        app.extensions["db"] = self
        app.teardown_appcontext(lambda _exc: self.Session.remove())

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def alembic_config(self, versions_dir: Path, metadata) -> AlembicConfig:
        cfg = AlembicConfig()
        cfg.set_main_option("path_separator", "os")
        cfg.set_main_option("script_location", str(MIGRATIONS_ENV))
        cfg.set_main_option("version_locations", str(versions_dir))
        cfg.attributes["engine"] = self.engine
        cfg.attributes["target_metadata"] = metadata
        return cfg

    def upgrade(self, versions_dir: Path, metadata) -> None:
        command.upgrade(self.alembic_config(versions_dir, metadata), "head")
