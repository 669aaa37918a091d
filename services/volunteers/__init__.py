"""Matching (services.volunteers): volunteers, their skills and
availability, offers, assignments and escalations along the grid chain.
Offer pages and the registry API; consumes request.submitted; emits status
changes and notifications."""
from __future__ import annotations

from pathlib import Path

import click
from flask import Flask
from flask.cli import with_appcontext
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

    register_api(app, views.api)
    app.register_blueprint(views.web)
    register_db_commands(app, Base.metadata, VERSIONS, seed)
    app.cli.add_command(import_volunteers)
    return app


@click.command("import-volunteers")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--partial", is_flag=True, help="Import the good rows even if some rows are bad.")
@with_appcontext
def import_volunteers(path, partial):
    """Import a volunteer roster (CSV or XLSX), with a progress bar."""
    from . import roster
    from .views import import_roster

    with open(path, "rb") as fh:
        rows = roster.read_rows(path, fh.read())
    with click.progressbar(length=len(rows), label="checking rows") as bar:
        report = import_roster(rows, partial=partial, progress=bar.update)
    for error in report["errors"]:
        click.echo(f"row {error['row']}: {error['errors']}")
    click.echo(f"imported {report['imported']} of {report['rows']} rows")
    if report["errors"] and not report["imported"]:
        raise SystemExit(1)


def seed(session, cfg) -> str:
    """Grids, buildings and leaders from the community data file (updated in
    place); demo volunteers once, into an empty registry, unless LINLI_DEMO=0."""
    from .models import Building, Grid, Leader, Volunteer

    data = load_community(cfg["COMMUNITY_FILE"])
    for g in data["grids"]:
        session.merge(Grid(code=g["code"], name=g["name"]))
    for b in data["buildings"]:
        session.merge(Building(code=b["code"], name=b["name"], grid=b["grid"], units=b["units"]))
    session.flush()
    leaders = {(x.role, x.grid, x.building, x.unit): x for x in session.scalars(select(Leader))}

    def leader(role, grid, building, unit, person):
        row = leaders.get((role, grid, building, unit)) or Leader(role=role, grid=grid, building=building, unit=unit)
        row.name, row.phone, row.channels = person["name"], person["phone"], person.get("channels", [])
        session.add(row)

    leader("office", None, None, None, data["community"]["office"])
    for g in data["grids"]:
        leader("grid", g["code"], None, None, g["leader"])
    for b in data["buildings"]:
        for unit, person in b["hallway_leaders"].items():
            leader("hallway", b["grid"], b["code"], unit, person)
    leader_count = 1 + len(data["grids"]) + sum(len(b["hallway_leaders"]) for b in data["buildings"])
    added = 0
    if cfg["DEMO"] and session.scalar(select(Volunteer.id).limit(1)) is None:
        added = seed_demo(session, data, cfg)
    return f"{len(data['buildings'])} buildings, {leader_count} leaders, {added} demo volunteers added"


def seed_demo(session, data: dict, cfg) -> int:
    """Demo volunteers (through the registry schema, as the API would take
    them) and the 翠邻里 station with its weekly sessions."""
    from .models import Station, StationSession, Volunteer
    from .schemas import StationSessionIn, VolunteerIn

    vols = []
    for v in data["demo_volunteers"]:
        vol = Volunteer()
        vol.apply(VolunteerIn().load(v), cfg["PHONE_DIGEST_KEY"])
        session.add(vol)
        vols.append(vol)
    session.flush()
    for s in data.get("demo_stations", []):
        station = Station(code=s["code"], name=s["name"], place=s["place"])
        session.add(station)
        session.flush()
        for spec in s["sessions"]:
            barber = next(v for v in vols if spec["category"] in v.skill_codes)
            station.lead_volunteer_id = station.lead_volunteer_id or barber.id
            slot = StationSessionIn().load({**spec, "volunteer_id": barber.id})
            session.add(StationSession(station_id=station.id, category=slot["category"], weekday=slot["weekday"],
                                       start_time=slot["start"], end_time=slot["end"], volunteer_id=barber.id,
                                       slots=slot["slots"]))
    return len(vols)
