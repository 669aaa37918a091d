"""Matching (services.volunteers): volunteers, their skills and
availability, offers, assignments and escalations along the grid chain.
Offer pages, the volunteer portal and the staff API; consumes
volunteers.request_submitted; emits status changes and notifications."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click
from flask import Flask, current_app, render_template, request
from flask.cli import with_appcontext
from sqlalchemy import select

from services.common import contract
from services.common import extensions as ext
from services.common.cli import register_db_commands
from services.common.community import load as load_community
from services.common.factory import register_api, service_app

from . import config

VERSIONS = Path(__file__).with_name("migrations")


def create_app(test_config: dict | None = None) -> Flask:
    from .models import Base, OutboxMessage

    app = service_app(__name__, config.load(), test_config, outbox_model=OutboxMessage)
    # The volunteers app has portal sessions only (no staff sign-in here).
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(days=app.config["PORTAL_SESSION_DAYS"])
    # The roster upload alone may be larger than other bodies; still bounded,
    # so that an oversized file is refused before it is spooled to disk
    # (with room for the form's framing).
    app.config["BODY_LIMITS"] = {"api.VolunteerImport": app.config["ROSTER_MAX_BYTES"] + 64 * 1024}
    app.extensions["demo_leftovers"] = demo_leftovers

    # Offer pages join the portal's blueprint; tasks register with Celery.
    from . import offers, tasks  # noqa: F401
    from .api import api as staff_api
    from .portal import web

    api = register_api(app, staff_api)

    @app.errorhandler(413)
    def too_large(exc):
        # The API answers in JSON like its other errors; pages with a page.
        if request.path.startswith("/api/"):
            return api.handle_http_exception(exc)
        return render_template("error.html", code=413), 413

    app.register_blueprint(web)
    register_db_commands(app, Base.metadata, VERSIONS, seed)
    app.cli.add_command(import_volunteers)
    app.cli.add_command(remove_demo)
    return app


@click.command("import-volunteers")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--partial", is_flag=True, help="Import the good rows even if some rows are bad.")
@with_appcontext
def import_volunteers(path, partial):
    """Import a volunteer roster (CSV or XLSX), with a progress bar."""
    from . import roster

    cfg = current_app.config
    with open(path, "rb") as fh:
        data = fh.read(cfg["ROSTER_MAX_BYTES"] + 1)
    try:
        if len(data) > cfg["ROSTER_MAX_BYTES"]:
            raise roster.RosterTooLarge(f"The roster file is larger than {cfg['ROSTER_MAX_BYTES']} bytes.")
        rows = roster.read_rows(path, data, **roster.limits(cfg))
    except roster.RosterTooLarge as exc:
        raise click.ClickException(str(exc)) from exc
    with click.progressbar(length=len(rows), label="checking rows") as bar:
        report = roster.import_roster(ext.db_session(), rows, cfg["PHONE_DIGEST_KEY"], partial=partial,
                                      progress=bar.update, actor="cli", at=ext.clock().now())
    ext.db_session().commit()
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
    # Phone digests follow the configured key: made again when it changes
    # (LINLI_PHONE_DIGEST_KEY replaced an older fallback), or a volunteer
    # could be offered their own request.
    redigested = 0
    for vol in session.scalars(select(Volunteer).where(Volunteer.phone_digest.is_not(None))):
        digest = contract.phone_digest(vol.phone, cfg["PHONE_DIGEST_KEY"])
        if vol.phone_digest != digest:
            vol.phone_digest, redigested = digest, redigested + 1
    return (f"{len(data['buildings'])} buildings, {leader_count} leaders, {added} demo volunteers added, "
            f"{redigested} phone digests renewed")


def seed_demo(session, data: dict, cfg) -> int:
    """Demo volunteers (through the registry schema, as the API would take
    them) and the 翠邻里 station with its weekly sessions."""
    from .models import Station, StationSession, Volunteer
    from .schemas import StationSessionIn, VolunteerIn

    vols = []
    for v in data["demo_volunteers"]:
        vol = Volunteer(demo=True)
        vol.apply(VolunteerIn().load(v), cfg["PHONE_DIGEST_KEY"])
        session.add(vol)
        vols.append(vol)
    session.flush()
    for s in data.get("demo_stations", []):
        station = Station(code=s["code"], name=s["name"], place=s["place"], demo=True)
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


def demo_leftovers(session) -> str:
    """Demo volunteers who can still sign in (production refuses to start with any)."""
    from sqlalchemy import func

    from .models import Volunteer

    count = session.scalar(select(func.count()).select_from(Volunteer).where(Volunteer.demo.is_(True),
                                                                             Volunteer.active.is_(True)))
    return f"{count} demo volunteers" if count else ""


@click.command("remove-demo")
@with_appcontext
def remove_demo():
    """Remove the demo volunteers and stations (those the demo seed made).

    What never took part in anything is deleted. A demo volunteer or
    station with history (offers, tasks, bookings, hours, time coins) stays
    as a record, because that history belongs to real requests and to
    residents' timelines: the volunteer is deactivated, signed out and
    anonymised (no name, phone, channels, skills or availability left), the
    station's sessions are switched off."""
    session = ext.db_session()
    summary = remove_demo_data(session)
    session.commit()
    click.echo("demo data removed: " + ", ".join(f"{v} {k}" for k, v in summary.items()))


def remove_demo_data(session) -> dict:
    from sqlalchemy import delete, exists, or_, update

    from .models import (
        Assignment,
        Booking,
        CoinEntry,
        HoursEntry,
        LoginLink,
        Offer,
        Station,
        StationSession,
        Volunteer,
    )

    counts = {"stations deleted": 0, "stations kept with history": 0, "volunteers deleted": 0,
              "volunteers anonymised": 0}
    for station in session.scalars(select(Station).where(Station.demo.is_(True))).all():
        booked = session.scalar(select(exists().where(Booking.session_id == StationSession.id,
                                                      StationSession.station_id == station.id)))
        if booked:
            session.execute(update(StationSession).where(StationSession.station_id == station.id)
                            .values(active=False))
            counts["stations kept with history"] += 1
        else:
            session.execute(delete(StationSession).where(StationSession.station_id == station.id))
            session.delete(station)
            counts["stations deleted"] += 1
    session.flush()
    for vol in session.scalars(select(Volunteer).where(Volunteer.demo.is_(True))).all():
        vid = vol.id
        history = session.scalar(select(or_(
            exists().where(Offer.volunteer_id == vid), exists().where(Assignment.volunteer_id == vid),
            exists().where(HoursEntry.volunteer_id == vid), exists().where(CoinEntry.volunteer_id == vid),
            exists().where(StationSession.volunteer_id == vid))))
        session.execute(delete(LoginLink).where(LoginLink.volunteer_id == vid))
        session.execute(update(Station).where(Station.lead_volunteer_id == vid).values(lead_volunteer_id=None))
        if history:
            if vol.active or vol.phone_digest is not None:
                vol.end_sessions()
                vol.active = False
                vol.name = vol.display_name = f"demo-{vid}"
                vol.phone = f"removed-{vid}"  # unique, and never a mobile number one could sign in with
                vol.phone_digest = None
                vol.channels, vol.teams, vol.unit = [], [], None
                vol.skills, vol.windows, vol.days_off = [], [], []
                counts["volunteers anonymised"] += 1
        else:
            session.delete(vol)
            counts["volunteers deleted"] += 1
    session.flush()
    return counts
