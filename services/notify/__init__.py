"""Notification (services.notify): recipients and their channels,
notifications with their in-app inbox copy, and deliveries through Apprise.
Consumes notification requests from the other services."""
from __future__ import annotations

from pathlib import Path

from flask import Flask
from flask_smorest import Api

from services.common.cli import register_db_commands
from services.common.db import Database
from services.common.queueing import celery_init_app
from services.common.web import init_web

from . import config

VERSIONS = Path(__file__).with_name("migrations")


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(config.load())
    if test_config:
        app.config.update(test_config)

    from .models import Base

    db = Database(app.config["DATABASE_URL"])
    db.init_app(app)
    init_web(app)
    celery_init_app(app, "notify")

    from . import tasks, views  # noqa: F401  (tasks register with Celery)

    Api(app).register_blueprint(views.api)
    app.register_blueprint(views.web)
    register_db_commands(app, Base.metadata, VERSIONS, seed)
    return app


def seed(session, cfg) -> str:
    """Recipients arrive with their first notification; nothing to seed."""
    return "nothing to seed"
