"""Notification (services.notify): recipients and their channels,
notifications with their in-app inbox copy, and deliveries through Apprise.
Consumes notification requests from the other services."""
from __future__ import annotations

from pathlib import Path

from flask import Flask

from services.common.cli import register_db_commands
from services.common.factory import register_api, service_app

from . import config

VERSIONS = Path(__file__).with_name("migrations")


def create_app(test_config: dict | None = None) -> Flask:
    from .models import Base, OutboxMessage

    app = service_app(__name__, config.load(), test_config, outbox_model=OutboxMessage)

    from . import tasks, views  # noqa: F401  (tasks register with Celery)

    register_api(app, views.api)
    app.register_blueprint(views.web)
    app.extensions["csrf"].exempt(views.gateway_web)  # authorised by the key in its address
    app.register_blueprint(views.gateway_web)
    register_db_commands(app, Base.metadata, VERSIONS, seed)
    return app


def seed(session, cfg) -> str:
    """Recipients arrive with their first notification; nothing to seed."""
    return "nothing to seed"
