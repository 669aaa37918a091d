"""Intake (services.requests): residents' service requests, their status
history and tracking codes. Web form, tracking page and JSON API; consumes
status changes from the matching service; emits request.submitted and
residents' notifications."""
from __future__ import annotations

from pathlib import Path

from flask import Flask
from sqlalchemy import select

from services.common.cli import register_db_commands
from services.common.community import load as load_community
from services.common.factory import register_api, service_app

from . import config

VERSIONS = Path(__file__).with_name("migrations")


def create_app(test_config: dict | None = None) -> Flask:
    from .models import Base, OutboxMessage

    app = service_app(__name__, config.load(), test_config, outbox_model=OutboxMessage)

    from . import tasks, views  # noqa: F401  (tasks register with Celery)
    from .open311 import open311

    app.extensions["csrf"].exempt(open311)  # authorised by api_key, no cookie credentials
    app.register_blueprint(open311)
    register_api(app, views.api)
    app.register_blueprint(views.web)
    register_db_commands(app, Base.metadata, VERSIONS, seed)
    return app


def seed(session, cfg) -> str:
    """Buildings come from the community data file; updated in place."""
    from .models import Building

    data = load_community(cfg["COMMUNITY_FILE"])
    existing = {b.code: b for b in session.scalars(select(Building))}
    for b in data["buildings"]:
        row = existing.get(b["code"]) or Building(code=b["code"])
        row.name, row.grid, row.units = b["name"], b["grid"], b["units"]
        session.add(row)
    return f"{len(data['buildings'])} buildings"
