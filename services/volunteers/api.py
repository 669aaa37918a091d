"""Matching's staff API (/api/v1): the volunteer registry and its roster
files, service stations and their weekly sessions, what matching did with
a request (and reassignment by hand), service hours and the time bank.
Staff automation writes; the staff console (intake's token) reads."""
from __future__ import annotations

import logging
from datetime import datetime

from flask import current_app, g
from flask.views import MethodView
from flask_smorest import abort
from sqlalchemy import and_, false, func, or_, select, true

from services.common import extensions as ext
from services.common.auth import callers, staff
from services.common.clock import SHANGHAI
from services.common.factory import ApiBlueprint, page_of
from services.common.tables import download, table

from . import roster
from .dispatch import dispatcher
from .models import (
    Assignment,
    Building,
    CoinEntry,
    Escalation,
    HoursEntry,
    Offer,
    ServiceRequest,
    StaffChange,
    Station,
    StationSession,
    Volunteer,
    VolunteerSkill,
)
from .schemas import (
    ROSTER,
    AssignIn,
    CoinsOut,
    ConfirmIn,
    ExportArgs,
    HoursOut,
    HoursQuery,
    ImportArgs,
    PhoneDigestQuery,
    RankingArgs,
    RegisteredOut,
    RequestDispatchOut,
    RosterFile,
    SpendIn,
    StaffChangeOut,
    StationIn,
    StationOut,
    StationSessionIn,
    StationSessionOut,
    VolunteerIn,
    VolunteerOut,
    VolunteerPatch,
    VolunteerQuery,
)
from .timebank import TimeBank

log = logging.getLogger(__name__)

api = ApiBlueprint("api", __name__, url_prefix="/api/v1", description="Volunteer registry, stations, hours")


# The staff console reads for a signed-in staff member (intake's token and
# their claims, services.common.auth) within their scope; only staff
# automation (the admin token) writes here, the console's changes come as tasks.
staff_reads = staff
staff_writes = callers("admin")
# Who verified a credential given through this API: staff automation.
AUTOMATION = "admin-token"


def _in_scope():
    """The acting staff member's part of the registry (a SQL filter on
    Volunteer joined with its Building): a grid leader's grid, a hallway
    leader's stairwells, all of it for the office."""
    acting = g.acting
    if acting.admin:
        return true()
    if acting.role == "grid_leader":
        return Building.grid == acting.grid
    pairs = [s.split(":", 1) for s in acting.stairwells]
    return or_(*(and_(Volunteer.building == b, Volunteer.unit == u) for b, u in pairs)) if pairs else false()


def _scoped(stmt):
    return stmt.join(Building, Volunteer.building == Building.code).where(_in_scope())


# --- the volunteer registry and its roster files ---


def _volunteer(volunteer_id: int) -> Volunteer:
    vol = ext.db_session().get(Volunteer, volunteer_id)
    if vol is None:
        abort(404, message="no such volunteer")
    return vol


def _phone_free(phone: str) -> None:
    if ext.db_session().scalar(select(Volunteer.id).where(Volunteer.phone == phone)) is not None:
        # A conflict with the registry, not a malformed request (the document cannot know who is registered).
        abort(409, errors={"json": {"phone": ["A volunteer with this phone number is registered already."]}})


def _has_team(team: str):
    """Teams are a short JSON list: matched in SQL, so that pages count right."""
    if ext.db_session().get_bind().dialect.name == "postgresql":
        elements = func.json_array_elements_text(Volunteer.teams).table_valued("value")
    else:
        elements = func.json_each(Volunteer.teams).table_valued("value")
    return select(elements.c.value).where(elements.c.value == team).exists()


@api.route("/volunteers")
class Volunteers(MethodView):
    @staff_reads
    @api.arguments(VolunteerQuery, location="query")
    @api.response(200, VolunteerOut(many=True))
    @api.paginate()
    def get(self, query, pagination_parameters):
        """List volunteers, by skill, building (and unit), stairwell, grid,
        team, active; a page at a time."""
        stmt = _scoped(select(Volunteer)).order_by(Volunteer.id)
        if "skill" in query:
            stmt = stmt.where(Volunteer.skills.any(VolunteerSkill.category == query["skill"]))
        if "building" in query:
            stmt = stmt.where(Volunteer.building == query["building"])
        if "unit" in query:
            stmt = stmt.where(Volunteer.unit == query["unit"])
        if query.get("stairwell"):
            # A hallway leader's area: any of these building:unit pairs.
            pairs = [s.split(":", 1) for s in query["stairwell"]]
            stmt = stmt.where(or_(*(and_(Volunteer.building == b, Volunteer.unit == u) for b, u in pairs)))
        if "grid" in query:
            stmt = stmt.where(Building.grid == query["grid"])
        if "active" in query:
            stmt = stmt.where(Volunteer.active.is_(query["active"]))
        if "team" in query:
            stmt = stmt.where(_has_team(query["team"]))
        return page_of(ext.db_session(), stmt, pagination_parameters)

    @staff_writes
    @api.arguments(VolunteerIn)
    @api.response(201, VolunteerOut)
    def post(self, data):
        """Register a volunteer (one per phone number)."""
        _phone_free(data["phone"])
        vol = Volunteer()
        vol.apply(data, current_app.config["PHONE_DIGEST_KEY"], actor=AUTOMATION, at=ext.clock().now())
        ext.db_session().add(vol)
        ext.db_session().commit()
        log.info("volunteer registered", extra={"volunteer_id": vol.id})
        return vol


@api.route("/volunteers/<id:volunteer_id>")
class VolunteerById(MethodView):
    @staff_reads
    @api.response(200, VolunteerOut)
    def get(self, volunteer_id):
        """One volunteer (within the acting staff member's scope)."""
        vol = ext.db_session().scalar(_scoped(select(Volunteer)).where(Volunteer.id == volunteer_id))
        if vol is None:
            abort(404, message="no such volunteer")
        return vol

    @staff_writes
    @api.arguments(VolunteerPatch(partial=VolunteerPatch.ANY))
    @api.response(200, VolunteerOut)
    def patch(self, data, volunteer_id):
        """Update some fields; `active: false` deactivates (no new offers)."""
        vol = _volunteer(volunteer_id)
        if "phone" in data and data["phone"] != vol.phone:
            _phone_free(data["phone"])
        if "building" not in data and "unit" in data and data["unit"] not in vol.home.units:
            abort(422, errors={"json": {"unit": ["That building has no such unit."]}})
        vol.apply(data, current_app.config["PHONE_DIGEST_KEY"], actor=AUTOMATION, at=ext.clock().now())
        ext.db_session().commit()
        return vol


@api.route("/volunteers/registered")
class PhoneRegistered(MethodView):
    @staff_reads
    @api.arguments(PhoneDigestQuery, location="query")
    @api.response(200, RegisteredOut)
    def get(self, query):
        """Whether a phone number is registered, asked by its keyed digest
        (never the number, which must not appear in a URL): the console's
        check before it asks for a registration. Yes or no, community-wide."""
        found = ext.db_session().scalar(select(Volunteer.id).where(Volunteer.phone_digest == query["phone_digest"]))
        return {"registered": found is not None}


@api.route("/staff-changes/<uuid:change_id>")
class StaffChangeById(MethodView):
    @staff_reads
    @api.response(200, StaffChangeOut)
    def get(self, change_id):
        """What became of a registry change the console asked for (a
        registration, an update, a roster import): 404 until matching has
        carried it out. Staff see their own changes, the office all."""
        change = ext.db_session().get(StaffChange, str(change_id))
        if change is None or not (g.acting.admin or change.actor == g.acting.actor):
            abort(404, message="not carried out yet")
        return change


@api.route("/volunteers/import")
class VolunteerImport(MethodView):
    @staff_writes
    @api.arguments(ImportArgs, location="query")
    @api.arguments(RosterFile, location="files")
    @api.response(200)
    @api.alt_response(422, description="A refused file: the report (rows, imported, errors by row), "
                                       "or the request's errors")
    def post(self, args, files):
        """Import a roster (CSV or XLSX, field `file`). A file with bad rows
        imports nothing unless `partial=true`; the report lists each bad row."""
        upload = files["file"]
        if not upload.filename:
            abort(422, errors={"files": {"file": [ROSTER]}})
        limit = current_app.config["ROSTER_MAX_BYTES"]
        data = upload.read(limit + 1)
        if len(data) > limit:
            abort(413, message=f"The roster file is larger than {limit} bytes; split it into smaller files.")
        try:
            rows = roster.read_rows(upload.filename, data, **roster.limits(current_app.config))
        except roster.RosterTooLarge as exc:
            abort(413, message=str(exc))
        except Exception as exc:  # not a CSV/XLSX at all
            abort(422, errors={"files": {"file": [f"Not a readable roster: {type(exc).__name__}"]}})
        report = roster.import_roster(ext.db_session(), rows, current_app.config["PHONE_DIGEST_KEY"],
                                      partial=args["partial"], actor=AUTOMATION, at=ext.clock().now())
        ext.db_session().commit()
        # Bad rows and nothing imported: the whole file was refused.
        return report, 422 if report["errors"] and not report["imported"] else 200


@api.route("/volunteers/export")
class VolunteerExport(MethodView):
    @staff_reads
    @api.arguments(ExportArgs, location="query")
    @api.response(200)
    def get(self, args):
        """The roster as CSV or XLSX (channel URLs are never exported)."""
        vols = ext.db_session().scalars(_scoped(select(Volunteer)).order_by(Volunteer.id)).all()
        return download(roster.export(vols, args["format"]), f"volunteers.{args['format']}", args["format"])


# --- stations: fixed place, fixed time, fixed person ---


@api.route("/stations")
class Stations(MethodView):
    @staff_reads
    @api.response(200, StationOut(many=True))
    @api.paginate()
    def get(self, pagination_parameters):
        """Service stations."""
        return page_of(ext.db_session(), select(Station).order_by(Station.id), pagination_parameters)

    @staff_writes
    @api.arguments(StationIn)
    @api.response(201, StationOut)
    def post(self, data):
        """Add a station (fixed place)."""
        if data["lead_volunteer_id"] is not None:
            _volunteer(data["lead_volunteer_id"])
        if ext.db_session().scalar(select(Station).where(Station.code == data["code"])):
            abort(409, message="a station with that code exists")
        station = Station(**data)
        ext.db_session().add(station)
        ext.db_session().commit()
        return station


@api.route("/stations/<id:station_id>/sessions")
class StationSessions(MethodView):
    @staff_reads
    @api.response(200, StationSessionOut(many=True))
    @api.paginate()
    def get(self, station_id, pagination_parameters):
        """A station's weekly sessions."""
        return page_of(ext.db_session(), select(StationSession).where(StationSession.station_id == station_id)
                      .order_by(StationSession.id), pagination_parameters)

    @staff_writes
    @api.arguments(StationSessionIn)
    @api.response(201, StationSessionOut)
    def post(self, data, station_id):
        """Add a weekly session: fixed time, fixed person, a number of slots."""
        if ext.db_session().get(Station, station_id) is None:
            abort(404, message="no such station")
        vol = _volunteer(data["volunteer_id"])
        if data["category"] not in vol.skill_codes:
            abort(422, errors={"json": {"volunteer_id": ["That volunteer does not offer this service."]}})
        sess = StationSession(station_id=station_id, category=data["category"], weekday=data["weekday"],
                              start_time=data["start"], end_time=data["end"], volunteer_id=vol.id,
                              slots=data["slots"])
        ext.db_session().add(sess)
        ext.db_session().commit()
        return sess


# --- what matching did with a request ---


@api.route("/requests/<uuid:request_id>")
class RequestDispatch(MethodView):
    @staff_reads
    @api.response(200, RequestDispatchOut)
    def get(self, request_id):
        """A request's offers, assignments and escalations, oldest first."""
        req = _request_in_scope(request_id)
        rid = req.id
        return {
            "id": rid, "status": req.status, "escalation_level": req.escalation_level,
            "offers": ext.db_session().scalars(select(Offer).where(Offer.request_id == rid).order_by(Offer.id)).all(),
            "assignments": ext.db_session().scalars(select(Assignment).where(Assignment.request_id == rid)
                                         .order_by(Assignment.id)).all(),
            "escalations": ext.db_session().scalars(select(Escalation).where(Escalation.request_id == rid)
                                         .order_by(Escalation.id)).all(),
        }


def _request_in_scope(request_id) -> ServiceRequest:
    req = ext.db_session().get(ServiceRequest, str(request_id))
    if req is None or not g.acting.allows_place(req.home.grid, req.building, req.unit):
        abort(404, message="no such request")
    return req


@api.route("/requests/<uuid:request_id>/candidates")
class RequestCandidates(MethodView):
    @staff_reads
    @api.response(200, VolunteerOut(many=True))
    @api.paginate()
    def get(self, request_id, pagination_parameters):
        """Active volunteers with the request's skill, from the whole
        community (volunteers serve any building), for a staff member whose
        scope holds the request."""
        req = _request_in_scope(request_id)
        stmt = (select(Volunteer).where(Volunteer.active.is_(True),
                                        Volunteer.skills.any(VolunteerSkill.category == req.category))
                .order_by(Volunteer.id))
        return page_of(ext.db_session(), stmt, pagination_parameters)


@api.route("/requests/<uuid:request_id>/assign")
class Reassign(MethodView):
    @staff_writes
    @api.arguments(AssignIn)
    @api.response(200)
    def post(self, data, request_id):
        """Assign or reassign a request to a volunteer by hand."""
        req = ext.db_session().get(ServiceRequest, str(request_id))
        if req is None:
            abort(404, message="no such request")
        _volunteer(data["volunteer_id"])
        outcome = dispatcher(ext.db_session()).staff_assign(req, data["volunteer_id"], actor=data["actor"])
        if outcome != "assigned":
            abort(409, message=f"not assigned: {outcome}")
        ext.db_session().commit()
        return {"status": outcome}


# --- service hours and the time bank ---


def _month_bounds(month: str) -> tuple[datetime, datetime]:
    """A calendar month in Asia/Shanghai, as UTC bounds."""
    year, mon = map(int, month.split("-"))
    start = datetime(year, mon, 1, tzinfo=SHANGHAI)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=SHANGHAI)
    return start, end


@api.route("/hours")
class Hours(MethodView):
    @staff_reads
    @api.arguments(HoursQuery, location="query")
    @api.response(200, HoursOut(many=True))
    @api.paginate()
    def get(self, query, pagination_parameters):
        """Service hours, by status, month and volunteer."""
        stmt = (select(HoursEntry).join(Volunteer, HoursEntry.volunteer_id == Volunteer.id)
                .join(Building, Volunteer.building == Building.code).where(_in_scope())
                .order_by(HoursEntry.completed_at, HoursEntry.id))
        if "status" in query:
            stmt = stmt.where(HoursEntry.status == query["status"])
        if "volunteer_id" in query:
            stmt = stmt.where(HoursEntry.volunteer_id == query["volunteer_id"])
        if "month" in query:
            start, end = _month_bounds(query["month"])
            stmt = stmt.where(HoursEntry.completed_at >= start, HoursEntry.completed_at < end)
        return page_of(ext.db_session(), stmt, pagination_parameters)


@api.route("/hours/export")
class HoursExport(MethodView):
    @staff_reads
    @api.arguments(RankingArgs, location="query")
    @api.response(200)
    def get(self, args):
        """Every confirmed hours entry of a month, as CSV or XLSX: the record
        the residents' committee certifies (Linli issues no certificate)."""
        start, end = _month_bounds(args["month"])
        entries = ext.db_session().scalars(
            select(HoursEntry).join(Volunteer, HoursEntry.volunteer_id == Volunteer.id)
            .join(Building, Volunteer.building == Building.code).where(_in_scope()).where(
            HoursEntry.status == "confirmed", HoursEntry.completed_at >= start, HoursEntry.completed_at < end)
            .order_by(HoursEntry.volunteer_id, HoursEntry.completed_at)).all()
        header = ("volunteer_id", "name", "completed_at", "category", "hours", "confirmed_by", "confirmed_at")
        rows = [[e.volunteer_id, e.volunteer.name, e.completed_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M"),
                 e.assignment.request.category, str(e.hours), e.confirmed_by,
                 e.confirmed_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")] for e in entries]
        fmt = "csv" if args["format"] == "json" else args["format"]
        return download(table(header, rows, fmt), f"hours-record-{args['month']}.{fmt}", fmt)


@api.route("/hours/<id:entry_id>/confirm")
class HoursConfirm(MethodView):
    @staff_writes
    @api.arguments(ConfirmIn)
    @api.response(200, HoursOut)
    def post(self, data, entry_id):
        """Confirm (or correct, with `hours`) a volunteer's hours; credits time coins."""
        entry = ext.db_session().get(HoursEntry, entry_id)
        if entry is None:
            abort(404, message="no such hours entry")
        TimeBank(ext.db_session()).confirm_hours(entry, by=data["by"], hours=data["hours"])
        ext.db_session().commit()
        return entry


@api.route("/hours/ranking")
class HoursRanking(MethodView):
    @staff_reads
    @api.arguments(RankingArgs, location="query")
    @api.response(200)
    def get(self, args):
        """Confirmed hours per volunteer in a month, most first (最美一区人);
        as JSON, or CSV/XLSX for the residents' committee that certifies them."""
        start, end = _month_bounds(args["month"])
        rows = ext.db_session().execute(
            select(Volunteer.id, Volunteer.name, func.sum(HoursEntry.hours), func.count(HoursEntry.id))
            .join(HoursEntry, HoursEntry.volunteer_id == Volunteer.id)
            .where(HoursEntry.status == "confirmed", HoursEntry.completed_at >= start, HoursEntry.completed_at < end)
            .group_by(Volunteer.id, Volunteer.name).order_by(func.sum(HoursEntry.hours).desc(), Volunteer.id)
        ).all()
        ranking = [{"rank": i, "volunteer_id": vid, "name": name, "hours": str(hours), "tasks": tasks}
                   for i, (vid, name, hours, tasks) in enumerate(rows, start=1)]
        if args["format"] == "json":
            return ranking
        header = ("rank", "volunteer_id", "name", "hours", "tasks")
        data = table(header, [[r[h] for h in header] for r in ranking], args["format"])
        return download(data, f"hours-{args['month']}.{args['format']}", args["format"])


@api.route("/volunteers/<id:volunteer_id>/coins")
class VolunteerCoins(MethodView):
    @staff_reads
    @api.response(200, CoinsOut)
    def get(self, volunteer_id):
        """A volunteer's time coins (within the acting staff member's scope):
        the balance and the 20 latest entries, newest first."""
        if ext.db_session().scalar(_scoped(select(Volunteer.id)).where(Volunteer.id == volunteer_id)) is None:
            abort(404, message="no such volunteer")
        entries = ext.db_session().scalars(select(CoinEntry).where(CoinEntry.volunteer_id == volunteer_id)
                                           .order_by(CoinEntry.id.desc()).limit(20)).all()
        return {"balance": TimeBank(ext.db_session()).coin_balance(volunteer_id), "entries": entries}


@api.route("/coins/spend")
class CoinsSpend(MethodView):
    @staff_writes
    @api.arguments(SpendIn)
    @api.response(200)
    def post(self, data):
        """Record time coins spent on a service (never paid out as cash)."""
        _volunteer(data["volunteer_id"])
        bank = TimeBank(ext.db_session())
        if not bank.move_coins(data["volunteer_id"], data["amount"], "spent", data["ref"]):
            abort(409, message="not enough time coins")
        ext.db_session().commit()
        return {"balance": str(bank.coin_balance(data["volunteer_id"]))}
