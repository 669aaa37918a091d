"""Intake (services.requests): residents' service requests, their status
history and tracking codes. Web form, tracking page and JSON API; consumes
status changes from the matching service; emits volunteers.request_submitted and
residents' notifications."""
from __future__ import annotations

from pathlib import Path

import click
from flask import Flask
from sqlalchemy import select

from services.common.cli import register_db_commands
from services.common.community import load as load_community
from services.common.factory import register_api, service_app
from services.common.settings import PLACEHOLDERS

from . import config, hotline, staff

VERSIONS = Path(__file__).with_name("migrations")


def create_app(test_config: dict | None = None) -> Flask:
    from .models import Base, OutboxMessage

    app = service_app(__name__, config.load(), test_config, outbox_model=OutboxMessage)
    app.extensions["timers"] = hotline.timers(app.config["TIMERS"])

    from . import tasks, views  # noqa: F401  (tasks register with Celery)
    from .console import console
    from .open311 import open311

    app.extensions["csrf"].exempt(open311)  # authorised by api_key, no cookie credentials
    app.register_blueprint(open311)
    register_api(app, views.api)
    app.register_blueprint(views.web)
    app.register_blueprint(console)
    # The console's roster upload takes a larger body than the rest.
    app.config["BODY_LIMITS"] = {"console.roster_import": app.config["ROSTER_MAX_BYTES"] + 64 * 1024}
    staff.session_lifetime(app)
    staff.register_commands(app)
    register_db_commands(app, Base.metadata, VERSIONS, seed)
    return app


def seed(session, cfg) -> str:
    """Buildings come from the community data file; updated in place. The
    demo's staff accounts are made once, and only when a demo password is
    given (make run writes a random one into .env)."""
    from .models import Building, StaffMember

    data = load_community(cfg["COMMUNITY_FILE"])
    existing = {b.code: b for b in session.scalars(select(Building))}
    for b in data["buildings"]:
        row = existing.get(b["code"]) or Building(code=b["code"])
        row.name, row.grid, row.units = b["name"], b["grid"], b["units"]
        session.add(row)
    summary = f"{len(data['buildings'])} buildings"
    password = cfg.get("DEMO_STAFF_PASSWORD")
    if cfg["DEMO"] and password and any(password.lower().startswith(p) for p in PLACEHOLDERS):
        raise click.ClickException("LINLI_DEMO_STAFF_PASSWORD is still a placeholder: no demo account gets it")
    if cfg["DEMO"] and password and session.scalar(select(StaffMember.id).limit(1)) is None:
        staff.create(session, "office", password, "admin", "社区办公室", demo=True)
        staff.create(session, "grid1", password, "grid_leader", "第一网格网格长", grid="G1", demo=True)
        staff.create(session, "hall-3-1", password, "hallway_leader", "3幢1单元楼道长", stairwells=["3:1"], demo=True)
        summary += ", demo staff office / grid1 / hall-3-1"
    return summary
