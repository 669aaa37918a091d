"""Fixtures shared by the tests: a service app on a database of its own
(SQLite file or PostgreSQL), copied from one migrated and seeded by the
service's own `init-db` once per session, publishing to a Redis database
kept for unit tests."""
from __future__ import annotations

import importlib
import os
import re
import shutil
import uuid

import psycopg
import pytest
import redis

from services.common.settings import RATE_LIMITS

# Unit tests publish into their own Redis database, so that they never
# feed the queues that the integration tests' workers read; under
# pytest-xdist each worker has its own (15, 10, 9, 8: 12–14 are the
# integration tests', 13 also the benchmark's, 11 bench.stages').
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
UNIT_REDIS_URL = os.environ.get("LINLI_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{(15, 10, 9, 8)[_WORKER]}")
# A server where the tests may create and drop databases.
PG_ADMIN_URL = os.environ.get("LINLI_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
# Secrets as strong as production demands (settings.check_secrets): the
# tests run the services in production mode, not in the demo.
ADMIN_TOKEN = "admin-token-of-the-test-suite-0123456789"
REQUESTS_TOKEN = "intake-caller-token-of-the-test-suite-0123"
VOLUNTEERS_TOKEN = "matching-caller-token-of-the-test-suite-012"
SECRETS = {"SECRET_KEY": "session-key-of-the-test-suite-0123456789ab", "ADMIN_TOKEN": ADMIN_TOKEN,
           "PHONE_DIGEST_KEY": "phone-digest-key-of-the-test-suite-01234",
           "REQUESTS_TOKEN": REQUESTS_TOKEN, "VOLUNTEERS_TOKEN": VOLUNTEERS_TOKEN,
           "REGISTER_KEY": "register-key-of-the-test-suite-0123456789ab"}
# The same as environment variables, for the processes the integration tests start.
SECRET_ENV = {f"LINLI_{key}": value for key, value in SECRETS.items()}


def pg_url(dbname: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{dbname}"


def create_pg_database(dbname: str, template: str | None = None) -> str:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{dbname}"' + (f' TEMPLATE "{template}"' if template else ""))
    return pg_url(dbname)


def drop_pg_database(dbname: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    return request.param


@pytest.fixture
def unit_redis():
    client = redis.Redis.from_url(UNIT_REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def _sqlite_url(path) -> str:
    return f"sqlite:///{path}"


def _service_app(service: str, url: str, config: dict):
    module = importlib.import_module(f"services.{service}")
    return module.create_app({
        "TESTING": True,
        "DATABASE_URL": url,
        "REDIS_URL": UNIT_REDIS_URL,
        **SECRETS,
        # Tests post from one address; the limits are tested where they
        # are set on purpose (tests/test_security.py).
        "RATE_LIMITS": {name: "1000000 per minute" for name in RATE_LIMITS},
        "DEMO": False,
        **config,
    })


@pytest.fixture(scope="session")
def database_templates(tmp_path_factory):
    """Each service's database, migrated and seeded by its own `init-db`
    once per test session (per backend and configuration), for make_app to
    copy. Tests still get a database of their own and commit for real: the
    outbox publishes after commit, deliveries are claimed in sessions of
    their own, SQLite takes real write locks, so a rolled-back transaction
    per test would hide what these tests are about."""
    folder = tmp_path_factory.mktemp("templates")
    made: dict[tuple, str] = {}
    pg_templates: list[str] = []

    def template(service: str, backend: str, config: dict, setup) -> str:
        key = (service, backend, repr(sorted(config.items())), setup and setup.__qualname__)
        if key not in made:
            if backend == "postgresql":
                name = f"linli_template_{service}_{len(made)}_{uuid.uuid4().hex[:6]}"
                url = create_pg_database(name)
                pg_templates.append(name)
            else:
                name = f"{service}-{len(made)}.db"
                url = _sqlite_url(folder / name)
            app = _service_app(service, url, config)
            result = app.test_cli_runner().invoke(args=["init-db"])
            assert result.exit_code == 0, result.output
            if setup:
                setup(app)
            db = app.extensions["db"]
            if backend == "sqlite":
                with db.engine.connect() as conn:  # the whole database in the file we copy
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            db.engine.dispose()  # PostgreSQL copies a template only while nobody is connected
            made[key] = name if backend == "postgresql" else str(folder / name)
        return made[key]

    yield template
    for name in pg_templates:
        drop_pg_database(name)


@pytest.fixture
def make_app(tmp_path, monkeypatch, unit_redis, database_templates):
    """make_app("requests", backend="sqlite", setup=None, clock=None, **config)
    → a Flask app of that service on a database of its own, migrated and
    seeded (a copy of the session's template). `setup(app)`, e.g. staff
    accounts, runs once on the template; `clock` (a SetClock) replaces the
    app's clock."""
    monkeypatch.setenv("LINLI_DATA_DIR", str(tmp_path))
    made_pg = []

    def make(service: str, backend: str = "sqlite", setup=None, clock=None, **config):
        source = database_templates(service, backend, config, setup)
        if backend == "postgresql":
            name = f"linli_unit_{service}_{uuid.uuid4().hex[:8]}"
            url = create_pg_database(name, template=source)
            made_pg.append(name)
        else:
            copy = tmp_path / f"{service}.db"
            shutil.copyfile(source, copy)
            url = _sqlite_url(copy)
        app = _service_app(service, url, config)
        if clock is not None:
            app.extensions["clock"] = clock
        return app

    yield make
    for app_db in made_pg:
        drop_pg_database(app_db)


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


@pytest.fixture
def client(app):
    """A test client of the module's `app` fixture (Flask's tutorial names)."""
    return app.test_client()
