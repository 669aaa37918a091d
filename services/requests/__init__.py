"""Intake (services.requests): residents' service requests, their status
history and tracking codes. Web form, tracking page and JSON API; consumes
status changes from the matching service; emits request.submitted and
residents' notifications."""
from __future__ import annotations

from pathlib import Path

from flask import Flask, render_template
from flask_smorest import Api
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import select

from services.common.cli import register_db_commands
from services.common.community import load as load_community
from services.common.db import Database
from services.common.outbox import Outbox
from services.common.queueing import celery_init_app
from services.common.web import init_web

from . import config

VERSIONS = Path(__file__).with_name("migrations")


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(config.load())
    if test_config:
        app.config.update(test_config)

    from .models import Base, OutboxMessage

    db = Database(app.config["DATABASE_URL"])
    db.init_app(app)
    init_web(app)
    celery_app = celery_init_app(app, "requests")
    app.extensions["outbox"] = Outbox(OutboxMessage, db, celery_app, source="requests")

    from . import tasks, views  # noqa: F401  (tasks register with Celery)

    csrf = CSRFProtect(app)
    csrf.exempt(views.api)  # the JSON API carries no cookie credentials
    Api(app).register_blueprint(views.api)
    app.register_blueprint(views.web)

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return render_template("csrf_error.html"), 400

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
