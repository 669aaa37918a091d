"""Community (services.community): the register of households and residents
(住户台账) and the community's programmes built on it — visits to residents
living alone or needing care (探访) and the daily check-in (报平安) for now;
events, check-ups, the canteen and the lift vote later. Staff read it through
the console (intake's token vouching for a staff member, services.common.auth);
visits reach visitors as help requests through intake's task."""
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

    from . import api, demo, tasks, views, visit_views  # noqa: F401  (tasks register with Celery; routes join blueprints)

    register_api(app, api.api)
    app.register_blueprint(views.web)
    register_db_commands(app, Base.metadata, VERSIONS, seed)
    app.cli.add_command(demo.remove_demo)
    return app


def seed(session, cfg) -> str:
    """The register comes from the office's file; the demo's (LINLI_DEMO=1
    only) is synthetic, seeded once (init-db runs on every start)."""
    if not cfg["DEMO"]:
        return "nothing to seed"
    from . import demo

    return demo.seed_register(session, cfg)
