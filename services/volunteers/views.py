"""Matching's HTTP side: the offer page a volunteer reaches from a message,
the volunteer portal (magic-link sign-in, offers, tasks, hours, time
coins), and the staff API (registry, rosters, stations, reassignment,
hours and the time bank)."""
from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from decimal import Decimal
from functools import wraps

from flask import Blueprint as WebBlueprint
from flask import current_app, g, redirect, render_template, request, session, url_for
from flask.views import MethodView
from flask_babel import lazy_gettext as _l
from flask_smorest import abort
from marshmallow import Schema, ValidationError
from sqlalchemy import and_, func, or_, select, update

from services.common import contract
from services.common import extensions as ext
from services.common.clock import SHANGHAI
from services.common.db import utcnow
from services.common.factory import ApiBlueprint, page_of
from services.common.ratelimit import limit
from services.common.tables import download, table
from services.common.web import read_service, require_caller

from . import roster
from .dispatch import Dispatcher
from .models import (
    Assignment,
    Booking,
    Building,
    Escalation,
    HoursEntry,
    LoginLink,
    Offer,
    ServiceRequest,
    Station,
    StationSession,
    Volunteer,
    VolunteerSkill,
    token_hash,
)
from .schemas import (
    MOBILE,
    AssignIn,
    CompleteIn,
    ConfirmIn,
    CorrectionIn,
    DonateIn,
    ExportArgs,
    HoursOut,
    HoursQuery,
    ImportArgs,
    RankingArgs,
    RequestDispatchOut,
    SpendIn,
    StationIn,
    StationOut,
    StationSessionIn,
    StationSessionOut,
    VolunteerIn,
    VolunteerOut,
    VolunteerPatch,
    VolunteerQuery,
)

log = logging.getLogger(__name__)

web = WebBlueprint("web", __name__)
api = ApiBlueprint("api", __name__, url_prefix="/api/v1", description="Volunteer registry, stations, hours")

REASONS = {
    "same_stairwell": _l("You live in the same stairwell."),
    "same_building": _l("You live in the same building."),
    "same_grid": _l("You live in the same grid."),
    "same_community": _l("You are one of the few neighbours with this skill."),
}
OUTCOMES = {
    "accepted": _l("Thank you! The task is yours. The resident's contact is below."),
    "declined": _l("You declined. We will ask another neighbour."),
    "full": _l("You already have as many tasks as you said you can take. Finish one first."),
    "closed": _l("This offer is no longer open."),
    "taken": _l("Another volunteer took this request first. Thank you all the same."),
    "started": _l("Started. Thank you!"),
    "completed": _l("Completed. Your hours wait for the organiser's confirmation."),
    "correction": _l("Your correction was sent to the organiser."),
    "donated": _l("Your time coins were donated. Thank you!"),
    "confirmed": _l("Hours confirmed."),
    "refused": _l("That could not be done."),
}



def _dispatcher() -> Dispatcher:
    return Dispatcher(ext.db_session(), ext.outbox(), current_app.config)


LIVE_TASK = ("active", "started")  # assigned or in progress: the contact is needed


# --- the offer page (linked from the offer message) ---


def _offer(token: str) -> Offer | None:
    return ext.db_session().scalar(select(Offer).where(Offer.token_hash == token_hash(token)))


@web.after_request
def _no_store(response):
    # Portal and offer pages show residents' contacts, or answer for a
    # signed-in volunteer or a link token: no browser or proxy keeps a copy.
    response.headers["Cache-Control"] = "no-store"
    return response


@web.get("/")
def home():
    return render_template("home.html")


@web.get("/offers/<token>")
def offer_page(token: str):
    """The offer as its link shows it. A GET never changes anything and
    never signs in: link previews and crawlers open links too."""
    offer = _offer(token)
    if offer is None:
        return render_template("not_found.html"), 404
    return _render_offer(offer, url_for("web.answer_offer", token=token),
                         outcome=OUTCOMES.get(request.args.get("outcome", "")))


def _render_offer(offer: Offer, action: str, outcome=None, status: int = 200):
    live = offer.status == "accepted" and _live_assignment(offer) is not None
    # The contact is for the volunteer doing the task, in their own signed-in
    # browser, while the task is live: not for whoever else holds the link
    # (a forwarded message, a shared phone), and not after completion.
    reader = _signed_in_volunteer()
    mine = reader is not None and reader.id == offer.volunteer_id
    return render_template(
        "offer.html", offer=offer, req=offer.request, category=contract.CATEGORY_BY_CODE[offer.request.category],
        reasons=[REASONS[r] for r in offer.reason.split() if r in REASONS], action=action,
        open_now=offer.status == "open" and (offer.expires_at is None or offer.expires_at > utcnow()),
        live=live, mine=mine, contact=_contact(offer.request_id, offer.volunteer_id) if live and mine else None,
        outcome=outcome,
    ), status


def _live_assignment(offer: Offer) -> Assignment | None:
    return ext.db_session().scalar(select(Assignment).where(
        Assignment.offer_id == offer.id, Assignment.status.in_(LIVE_TASK)))


@web.post("/offers/<token>")
def answer_offer(token: str):
    """Accept or decline (with an optional reason). Accepting through the
    link signs the offer's volunteer in to the portal in this browser: the
    link and a deliberate POST are the same proof as a sign-in link, and
    the contact is shown only to a signed-in volunteer."""
    offer = _offer(token)
    if offer is None:
        return render_template("not_found.html"), 404
    outcome = _answer(offer, url_for("web.answer_offer", token=token))
    if not isinstance(outcome, str):
        return outcome
    if outcome == "accepted":
        vol = ext.db_session().get(Volunteer, offer.volunteer_id)
        if vol is not None and vol.active:
            _start_portal_session(vol)
    return redirect(url_for("web.offer_page", token=token, outcome=outcome), 303)


def _answer(offer: Offer, action: str):
    """The form's decision, carried out and committed: the outcome, or a
    page to show again."""
    decision = request.form.get("decision")
    dispatcher = _dispatcher()
    if decision == "accept":
        outcome = dispatcher.accept(offer)
    elif decision == "decline":
        reason = request.form.get("reason", "").strip()[:200]
        outcome = "declined" if dispatcher.decline(offer, reason) else "closed"
    else:
        return _render_offer(offer, action, outcome=_l("Choose accept or decline."), status=400)
    ext.db_session().commit()
    return outcome


def _contact(request_id: str, volunteer_id: int) -> dict | None:
    """The resident's contact, read from intake's API only for the volunteer
    who accepted (never stored here)."""
    contact = read_service("REQUESTS_API_URL",
                           f"/api/v1/internal/requests/{request_id}/contact?reader=volunteer:{volunteer_id}")
    if contact is not None:
        log.info("contact shown", extra={"request_id": request_id, "volunteer_id": volunteer_id})
    return contact


# --- the volunteer portal: sign-in by magic link ---


@web.get("/login")
def login_form():
    return render_template("login.html", sent=False, error=None)


def _phone_typed() -> str:
    return request.form.get("phone", "").replace(" ", "")


@web.post("/login")
# Sign-in links are urgent messages: nobody may send a volunteer twenty of
# them at 3 a.m. (per phone), nor walk the phone numbers (per address).
@limit("magic_link_phone", key=_phone_typed)
@limit("magic_link_address")
def login_send():
    phone = _phone_typed()
    if not MOBILE.match(phone):
        return render_template("login.html", sent=False, error=_l("Enter your 11-digit mobile number.")), 422
    vol = ext.db_session().scalar(select(Volunteer).where(Volunteer.phone == phone, Volunteer.active.is_(True)))
    if vol is not None:
        token = secrets.token_urlsafe(32)
        minutes = current_app.config["LOGIN_LINK_MINUTES"]
        link = LoginLink(volunteer_id=vol.id, token_hash=token_hash(token),
                         expires_at=utcnow() + timedelta(minutes=minutes))
        ext.db_session().add(link)
        ext.db_session().flush()
        _dispatcher().notify(f"login:{link.id}", f"volunteer:{vol.id}", vol.channels, vol.language, "magic_link",
                             urgent=True, context={"login_url": f"{current_app.config['VOLUNTEERS_URL']}/login/{token}",
                                                   "minutes": minutes})
        ext.db_session().commit()
        log.info("login link sent", extra={"volunteer_id": vol.id})
    # The same answer either way: the page does not tell who is registered.
    return render_template("login.html", sent=True, error=None)


def _valid_link(token: str) -> LoginLink | None:
    link = ext.db_session().scalar(select(LoginLink).where(LoginLink.token_hash == token_hash(token)))
    if link is None or link.used_at is not None or link.expires_at <= utcnow():
        return None
    return link


@web.get("/login/<token>")
def login_confirm(token: str):
    # A button, not an automatic sign-in: link previews must not use up the link.
    return render_template("login_confirm.html", valid=_valid_link(token) is not None, token=token)


@web.post("/login/<token>")
def login_use(token: str):
    link = _valid_link(token)
    used = link is not None and ext.db_session().execute(
        update(LoginLink).where(LoginLink.id == link.id, LoginLink.used_at.is_(None)).values(used_at=utcnow())
    ).rowcount
    if not used:
        return render_template("login_confirm.html", valid=False, token=token), 400
    ext.db_session().commit()
    _start_portal_session(ext.db_session().get(Volunteer, link.volunteer_id))
    return redirect(url_for("web.portal"), 303)


def _start_portal_session(vol: Volunteer) -> None:
    """A fresh session at sign-in (nothing carried over from before), for
    PORTAL_SESSION_DAYS, tied to the volunteer's current session epoch."""
    session.clear()
    session.permanent = True
    session["volunteer_id"] = vol.id
    session["epoch"] = vol.session_epoch


def _signed_in_volunteer() -> Volunteer | None:
    """The volunteer of this browser's portal session, if it still counts:
    active, and begun in the volunteer's current epoch."""
    volunteer_id, epoch = session.get("volunteer_id"), session.get("epoch")
    if not isinstance(volunteer_id, int) or not isinstance(epoch, int):
        return None
    vol = ext.db_session().get(Volunteer, volunteer_id)
    if vol is None or not vol.active or vol.session_epoch != epoch:
        return None
    return vol


@web.post("/logout")
def logout():
    """Sign out everywhere: a copy of the cookie (another device, a
    stolen one) stops working too."""
    vol = _signed_in_volunteer()
    if vol is not None:
        vol.end_sessions()
        ext.db_session().commit()
        log.info("portal signed out", extra={"volunteer_id": vol.id})
    session.clear()
    return redirect(url_for("web.login_form"), 303)


def volunteer_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        vol = _signed_in_volunteer()
        if vol is None:
            session.clear()
            return redirect(url_for("web.login_form"), 303)
        g.volunteer = vol
        return view(*args, **kwargs)
    return wrapper


def _form(schema: Schema) -> dict:
    values = {k: v for k, v in request.form.items() if k != "csrf_token" and v != ""}
    return schema.load(values)


@web.get("/me")
@volunteer_required
def portal():
    return _portal(OUTCOMES.get(request.args.get("outcome", "")))


def _portal(outcome=None, errors=None, status=200):
    vol, db = g.volunteer, ext.db_session()
    offers = db.scalars(select(Offer).where(Offer.volunteer_id == vol.id, Offer.status == "open")
                        .order_by(Offer.id.desc())).all()
    tasks = db.scalars(select(Assignment).where(Assignment.volunteer_id == vol.id,
                                                Assignment.status.in_(LIVE_TASK))
                       .order_by(Assignment.id)).all()
    history = db.scalars(select(Assignment).where(Assignment.volunteer_id == vol.id,
                                                  Assignment.status == "completed")
                         .order_by(Assignment.completed_at.desc()).limit(20)).all()
    hours = db.scalars(select(HoursEntry).where(HoursEntry.volunteer_id == vol.id)
                       .order_by(HoursEntry.completed_at.desc())).all()
    confirmed = sum((h.hours for h in hours if h.status == "confirmed"), Decimal(0))
    led = db.scalars(select(Station.id).where(Station.lead_volunteer_id == vol.id)).all()
    to_confirm = []
    if led:
        # Never their own: nobody confirms their own hours (coins follow them).
        to_confirm = [h for h in db.scalars(select(HoursEntry).where(HoursEntry.status != "confirmed",
                                                                     HoursEntry.volunteer_id != vol.id)).all()
                      if h.assignment.booking_id and _station_of(h.assignment) in led]
    return render_template(
        "portal.html", vol=vol, offers=offers, inbox=_inbox(vol.id),
        tasks=[(t, _contact(t.request_id, vol.id)) for t in tasks],
        history=history, hours=hours, confirmed=confirmed, coins=_dispatcher().coin_balance(vol.id),
        to_confirm=to_confirm, outcome=outcome, errors=errors or {},
        categories=contract.CATEGORY_BY_CODE, reasons=REASONS,
    ), status


def _own(model, row_id: int):
    """The signed-in volunteer's own offer or task by id; anyone else's is a 404."""
    row = ext.db_session().get(model, row_id)
    if row is None or row.volunteer_id != g.volunteer.id:
        abort(404)
    return row


@web.get("/me/offers/<id:offer_id>")
@volunteer_required
def my_offer(offer_id: int):
    """An offer opened from the portal: the link's token is not stored, so
    the signed-in volunteer reaches their offers by id."""
    return _render_offer(_own(Offer, offer_id), url_for("web.answer_my_offer", offer_id=offer_id),
                         outcome=OUTCOMES.get(request.args.get("outcome", "")))


@web.post("/me/offers/<id:offer_id>")
@volunteer_required
def answer_my_offer(offer_id: int):
    offer = _own(Offer, offer_id)
    outcome = _answer(offer, url_for("web.answer_my_offer", offer_id=offer_id))
    if not isinstance(outcome, str):
        return outcome
    return redirect(url_for("web.my_offer", offer_id=offer_id, outcome=outcome), 303)


@web.get("/me/sheet")
@volunteer_required
def task_sheet():
    """A printable sheet of the volunteer's open tasks — home visits and the
    station sessions they run, in time order — for volunteers who would
    rather carry paper than a phone."""
    vol, db = g.volunteer, ext.db_session()
    tasks = db.scalars(select(Assignment).where(Assignment.volunteer_id == vol.id,
                                                Assignment.status.in_(LIVE_TASK))).all()
    bookings = {b.id: b for b in db.scalars(select(Booking).where(
        Booking.id.in_([t.booking_id for t in tasks if t.booking_id]))).all()}
    far_future = datetime.max.replace(tzinfo=SHANGHAI)

    def when(t):
        booking = bookings.get(t.booking_id)
        return booking.starts_at if booking else t.complete_by or far_future

    rows = [(t, bookings.get(t.booking_id), _contact(t.request_id, vol.id)) for t in sorted(tasks, key=when)]
    # Residents' contacts: never stored (the blueprint's Cache-Control: no-store).
    return render_template("task_sheet.html", vol=vol, rows=rows, categories=contract.CATEGORY_BY_CODE,
                           printed_at=utcnow())


def _inbox(volunteer_id: int) -> list[dict]:
    """The volunteer's in-app messages, from notify's API (the portal works
    without them when notify is unreachable)."""
    return (read_service("NOTIFY_API_URL", f"/api/v1/inbox/volunteer:{volunteer_id}") or [])[:20]


@web.post("/me/inbox/read")
@volunteer_required
def inbox_read():
    """Mark messages read: a task for notify (it owns the inbox), not an HTTP write."""
    up_to = request.form.get("up_to", "")
    if up_to.isdigit() and int(up_to) > 0:
        ext.outbox().emit(ext.db_session(), contract.INBOX_READ,
                                              {"recipient": f"volunteer:{g.volunteer.id}", "up_to_id": int(up_to)})
        ext.db_session().commit()
    return redirect(url_for("web.portal"), 303)


def _station_of(assignment: Assignment) -> int | None:
    booking = ext.db_session().get(Booking, assignment.booking_id) if assignment.booking_id else None
    return booking.session.station_id if booking else None


@web.post("/me/tasks/<id:assignment_id>/start")
@volunteer_required
def task_start(assignment_id: int):
    ok = _dispatcher().start(_own(Assignment, assignment_id))
    ext.db_session().commit()
    return redirect(url_for("web.portal", outcome="started" if ok else "refused"), 303)


@web.post("/me/tasks/<id:assignment_id>/complete")
@volunteer_required
def task_complete(assignment_id: int):
    task = _own(Assignment, assignment_id)
    try:
        data = _form(CompleteIn())
    except ValidationError as exc:
        return _portal(errors={f"complete-{assignment_id}": exc.messages}, status=422)
    ok = _dispatcher().complete(task, data["minutes"], data["note"]) is not None
    ext.db_session().commit()
    return redirect(url_for("web.portal", outcome="completed" if ok else "refused"), 303)


@web.post("/me/hours/<id:entry_id>/correction")
@volunteer_required
def hours_correction(entry_id: int):
    entry = ext.db_session().get(HoursEntry, entry_id)
    if entry is None or entry.volunteer_id != g.volunteer.id:
        abort(404)
    try:
        data = _form(CorrectionIn())
    except ValidationError as exc:
        return _portal(errors={f"correction-{entry_id}": exc.messages}, status=422)
    entry.status, entry.correction_hours, entry.correction_reason = "correction", data["hours"], data["reason"]
    ext.db_session().commit()
    return redirect(url_for("web.portal", outcome="correction"), 303)


@web.post("/me/hours/<id:entry_id>/confirm")
@volunteer_required
def hours_confirm_as_lead(entry_id: int):
    """A station lead confirms the hours of services at their station."""
    entry = ext.db_session().get(HoursEntry, entry_id)
    station = ext.db_session().get(Station, _station_of(entry.assignment) or 0) if entry is not None else None
    if station is None or station.lead_volunteer_id != g.volunteer.id:
        abort(404)
    if not _dispatcher().confirm_hours(entry, by=f"station-lead:{g.volunteer.id}", hours=entry.correction_hours,
                                       by_volunteer=g.volunteer.id):
        # Their own entry: another organiser (or staff) confirms it.
        return _portal(OUTCOMES["refused"], status=403)
    ext.db_session().commit()
    return redirect(url_for("web.portal", outcome="confirmed"), 303)


@web.post("/me/coins/donate")
@volunteer_required
def donate():
    try:
        data = _form(DonateIn())
    except ValidationError as exc:
        return _portal(errors={"donate": exc.messages}, status=422)
    other = ext.db_session().get(Volunteer, data["to"])
    ok = (other is not None and other.id != g.volunteer.id and
          _dispatcher().move_coins(g.volunteer.id, data["amount"], "donated", f"to:{other.id}", to_volunteer=other.id))
    ext.db_session().commit()
    return redirect(url_for("web.portal", outcome="donated" if ok else "refused"), 303)


# --- staff API ---


@api.before_request
def _staff_only():
    # Before validation, so that a caller without the token learns nothing.
    # The staff console (intake's token) may read; only staff automation writes.
    if request.method in ("GET", "HEAD"):
        require_caller("admin", "requests")
    else:
        require_caller("admin")


def _volunteer(volunteer_id: int) -> Volunteer:
    vol = ext.db_session().get(Volunteer, volunteer_id)
    if vol is None:
        abort(404, message="no such volunteer")
    return vol


def _phone_free(phone: str) -> None:
    if ext.db_session().scalar(select(Volunteer.id).where(Volunteer.phone == phone)) is not None:
        abort(422, errors={"json": {"phone": ["A volunteer with this phone number is registered already."]}})


def _has_team(team: str):
    """Teams are a short JSON list: matched in SQL, so that pages count right."""
    if ext.db_session().get_bind().dialect.name == "postgresql":
        elements = func.json_array_elements_text(Volunteer.teams).table_valued("value")
    else:
        elements = func.json_each(Volunteer.teams).table_valued("value")
    return select(elements.c.value).where(elements.c.value == team).exists()


@api.route("/volunteers")
class Volunteers(MethodView):
    @api.arguments(VolunteerQuery, location="query")
    @api.response(200, VolunteerOut(many=True))
    @api.paginate()
    def get(self, query, pagination_parameters):
        """List volunteers, by skill, building (and unit), stairwell, grid,
        team, active; a page at a time."""
        stmt = select(Volunteer).join(Building, Volunteer.building == Building.code).order_by(Volunteer.id)
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

    @api.arguments(VolunteerIn)
    @api.response(201, VolunteerOut)
    def post(self, data):
        """Register a volunteer (one per phone number)."""
        _phone_free(data["phone"])
        vol = Volunteer()
        vol.apply(data, current_app.config["PHONE_DIGEST_KEY"])
        ext.db_session().add(vol)
        ext.db_session().commit()
        log.info("volunteer registered", extra={"volunteer_id": vol.id})
        return vol


@api.route("/volunteers/<id:volunteer_id>")
class VolunteerById(MethodView):
    @api.response(200, VolunteerOut)
    def get(self, volunteer_id):
        """One volunteer."""
        return _volunteer(volunteer_id)

    @api.arguments(VolunteerPatch(partial=True))
    @api.response(200, VolunteerOut)
    def patch(self, data, volunteer_id):
        """Update some fields; `active: false` deactivates (no new offers)."""
        vol = _volunteer(volunteer_id)
        if "phone" in data and data["phone"] != vol.phone:
            _phone_free(data["phone"])
        if "building" not in data and "unit" in data and data["unit"] not in vol.home.units:
            abort(422, errors={"json": {"unit": ["That building has no such unit."]}})
        vol.apply(data, current_app.config["PHONE_DIGEST_KEY"])
        ext.db_session().commit()
        return vol


@api.route("/volunteers/import")
class VolunteerImport(MethodView):
    @api.arguments(ImportArgs, location="query")
    @api.response(200)
    def post(self, args):
        """Import a roster (CSV or XLSX, field `file`). A file with bad rows
        imports nothing unless `partial=true`; the report lists each bad row."""
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            abort(422, errors={"files": {"file": ["Attach a .csv or .xlsx roster."]}})
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
                                      partial=args["partial"])
        ext.db_session().commit()
        # Bad rows and nothing imported: the whole file was refused.
        return report, 422 if report["errors"] and not report["imported"] else 200


@api.route("/volunteers/export")
class VolunteerExport(MethodView):
    @api.arguments(ExportArgs, location="query")
    @api.response(200)
    def get(self, args):
        """The roster as CSV or XLSX (channel URLs are never exported)."""
        vols = ext.db_session().scalars(select(Volunteer).order_by(Volunteer.id)).all()
        return download(roster.export(vols, args["format"]), f"volunteers.{args['format']}", args["format"])


@api.route("/stations")
class Stations(MethodView):
    @api.response(200, StationOut(many=True))
    @api.paginate()
    def get(self, pagination_parameters):
        """Service stations."""
        return page_of(ext.db_session(), select(Station).order_by(Station.id), pagination_parameters)

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
    @api.response(200, StationSessionOut(many=True))
    @api.paginate()
    def get(self, station_id, pagination_parameters):
        """A station's weekly sessions."""
        return page_of(ext.db_session(), select(StationSession).where(StationSession.station_id == station_id)
                      .order_by(StationSession.id), pagination_parameters)

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


@api.route("/requests/<uuid:request_id>")
class RequestDispatch(MethodView):
    @api.response(200, RequestDispatchOut)
    def get(self, request_id):
        """A request's offers, assignments and escalations, oldest first."""
        req = ext.db_session().get(ServiceRequest, str(request_id))
        if req is None:
            abort(404, message="no such request")
        rid = req.id
        return {
            "id": rid, "status": req.status, "escalation_level": req.escalation_level,
            "offers": ext.db_session().scalars(select(Offer).where(Offer.request_id == rid).order_by(Offer.id)).all(),
            "assignments": ext.db_session().scalars(select(Assignment).where(Assignment.request_id == rid)
                                         .order_by(Assignment.id)).all(),
            "escalations": ext.db_session().scalars(select(Escalation).where(Escalation.request_id == rid)
                                         .order_by(Escalation.id)).all(),
        }


@api.route("/requests/<uuid:request_id>/assign")
class Reassign(MethodView):
    @api.arguments(AssignIn)
    @api.response(200)
    def post(self, data, request_id):
        """Assign or reassign a request to a volunteer by hand."""
        req = ext.db_session().get(ServiceRequest, str(request_id))
        if req is None:
            abort(404, message="no such request")
        _volunteer(data["volunteer_id"])
        outcome = _dispatcher().staff_assign(req, data["volunteer_id"], actor=data["actor"])
        if outcome != "assigned":
            abort(409, message=f"not assigned: {outcome}")
        ext.db_session().commit()
        return {"status": outcome}


def _month_bounds(month: str) -> tuple[datetime, datetime]:
    """A calendar month in Asia/Shanghai, as UTC bounds."""
    year, mon = map(int, month.split("-"))
    start = datetime(year, mon, 1, tzinfo=SHANGHAI)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=SHANGHAI)
    return start, end


@api.route("/hours")
class Hours(MethodView):
    @api.arguments(HoursQuery, location="query")
    @api.response(200, HoursOut(many=True))
    @api.paginate()
    def get(self, query, pagination_parameters):
        """Service hours, by status, month and volunteer."""
        stmt = select(HoursEntry).order_by(HoursEntry.completed_at, HoursEntry.id)
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
    @api.arguments(RankingArgs, location="query")
    @api.response(200)
    def get(self, args):
        """Every confirmed hours entry of a month, as CSV or XLSX: the record
        the residents' committee certifies (Linli issues no certificate)."""
        start, end = _month_bounds(args["month"])
        entries = ext.db_session().scalars(select(HoursEntry).where(
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
    @api.arguments(ConfirmIn)
    @api.response(200, HoursOut)
    def post(self, data, entry_id):
        """Confirm (or correct, with `hours`) a volunteer's hours; credits time coins."""
        entry = ext.db_session().get(HoursEntry, entry_id)
        if entry is None:
            abort(404, message="no such hours entry")
        _dispatcher().confirm_hours(entry, by=data["by"], hours=data["hours"])
        ext.db_session().commit()
        return entry


@api.route("/hours/ranking")
class HoursRanking(MethodView):
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


@api.route("/coins/spend")
class CoinsSpend(MethodView):
    @api.arguments(SpendIn)
    @api.response(200)
    def post(self, data):
        """Record time coins spent on a service (never paid out as cash)."""
        _volunteer(data["volunteer_id"])
        dispatcher = _dispatcher()
        if not dispatcher.move_coins(data["volunteer_id"], data["amount"], "spent", data["ref"]):
            abort(409, message="not enough time coins")
        ext.db_session().commit()
        return {"balance": str(dispatcher.coin_balance(data["volunteer_id"]))}

