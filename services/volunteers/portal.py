"""The volunteer portal (the `web` blueprint): sign-in by magic link, and
a volunteer's own pages under /me — open offers, live tasks and the
printable task sheet, the in-app inbox, service hours (corrections, and
confirmation by station leads) and time coins. The offer link's pages
(offers.py) join this blueprint and its sign-in."""
from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from decimal import Decimal

from flask import Blueprint as WebBlueprint
from flask import current_app, g, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext as _l
from flask_smorest import abort
from marshmallow import Schema, ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import defaultload, lazyload

from services.common import contract
from services.common import extensions as ext
from services.common.auth import public, signed_in
from services.common.clock import SHANGHAI, utcnow
from services.common.ratelimit import limit
from services.common.web import read_service

from .dispatch import dispatcher
from .models import (
    Assignment,
    Booking,
    HoursEntry,
    LoginLink,
    Offer,
    Station,
    StationSession,
    Volunteer,
    token_hash,
)
from .schemas import MOBILE, CompleteIn, CorrectionIn, DonateIn
from .timebank import TimeBank

log = logging.getLogger(__name__)

web = WebBlueprint("web", __name__)

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
LIVE_TASK = ("active", "started")  # assigned or in progress: the contact is needed


@web.after_request
def _no_store(response):
    # Portal and offer pages show residents' contacts, or answer for a
    # signed-in volunteer or a link token: no browser or proxy keeps a copy.
    response.headers["Cache-Control"] = "no-store"
    return response


# --- what other services tell the portal (read, never stored) ---


def contact(request_id: str, volunteer_id: int) -> dict | None:
    """The resident's contact, read from intake's API only for the volunteer
    who accepted (never stored here)."""
    found = read_service("REQUESTS_API_URL",
                         f"/api/v1/internal/requests/{request_id}/contact?reader=volunteer:{volunteer_id}")
    if found is not None:
        log.info("contact shown", extra={"service_request_id": request_id, "volunteer_id": volunteer_id})
    return found


def inbox(volunteer_id: int) -> list[dict]:
    """The volunteer's in-app messages, from notify's API (the portal works
    without them when notify is unreachable)."""
    return (read_service("NOTIFY_API_URL", f"/api/v1/inbox/volunteer:{volunteer_id}") or [])[:20]


# --- sign-in by magic link ---


@web.get("/login")
@public
def login_form():
    return render_template("login.html", sent=False, error=None)


def _phone_typed() -> str:
    return request.form.get("phone", "").replace(" ", "")


@web.post("/login")
@public
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
        dispatcher(ext.db_session()).notify(
            f"login:{link.id}", f"volunteer:{vol.id}", vol.channels, vol.language, "magic_link", urgent=True,
            context={"login_url": f"{current_app.config['VOLUNTEERS_URL']}/login/{token}", "minutes": minutes})
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
@public
def login_confirm(token: str):
    # A button, not an automatic sign-in: link previews must not use up the link.
    return render_template("login_confirm.html", valid=_valid_link(token) is not None, token=token)


@web.post("/login/<token>")
@public
def login_use(token: str):
    link = _valid_link(token)
    used = link is not None and ext.db_session().execute(
        update(LoginLink).where(LoginLink.id == link.id, LoginLink.used_at.is_(None)).values(used_at=utcnow())
    ).rowcount
    if not used:
        return render_template("login_confirm.html", valid=False, token=token), 400
    ext.db_session().commit()
    start_portal_session(ext.db_session().get(Volunteer, link.volunteer_id))
    return redirect(url_for("web.portal"), 303)


def start_portal_session(vol: Volunteer) -> None:
    """A fresh session at sign-in (nothing carried over from before), for
    PORTAL_SESSION_DAYS, tied to the volunteer's current session epoch."""
    session.clear()
    session.permanent = True
    session["volunteer_id"] = vol.id
    session["epoch"] = vol.session_epoch


def signed_in_volunteer() -> Volunteer | None:
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
@public
def logout():
    """Sign out everywhere: a copy of the cookie (another device, a
    stolen one) stops working too."""
    vol = signed_in_volunteer()
    if vol is not None:
        vol.end_sessions()
        ext.db_session().commit()
        log.info("portal signed out", extra={"volunteer_id": vol.id})
    session.clear()
    return redirect(url_for("web.login_form"), 303)


def _volunteer_signed_in() -> bool:
    vol = signed_in_volunteer()
    if vol is None:
        return False
    g.volunteer = vol
    return True


def _to_login():
    session.clear()
    return redirect(url_for("web.login_form"), 303)


# Every /me page; the sign-in pages and the offer link's pages are public.
volunteer_required = signed_in(_volunteer_signed_in, _to_login)


# --- the volunteer's own pages ---


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
    # Hours of services at the stations this volunteer leads, never their
    # own (coins follow confirmed hours). One query: the page shows who, when
    # and how long, and the rest loads only if touched.
    to_confirm = db.scalars(
        select(HoursEntry)
        .join(Assignment, Assignment.id == HoursEntry.assignment_id)
        .join(Booking, Booking.id == Assignment.booking_id)
        .join(StationSession, StationSession.id == Booking.session_id)
        .join(Station, Station.id == StationSession.station_id)
        .where(Station.lead_volunteer_id == vol.id, HoursEntry.status != "confirmed",
               HoursEntry.volunteer_id != vol.id)
        .order_by(HoursEntry.id)
        .options(lazyload(HoursEntry.assignment), defaultload(HoursEntry.volunteer).lazyload("*"))
    ).all()
    return render_template(
        "portal.html", vol=vol, offers=offers, inbox=inbox(vol.id),
        tasks=[(t, contact(t.request_id, vol.id)) for t in tasks],
        history=history, hours=hours, confirmed=confirmed, coins=TimeBank(db).coin_balance(vol.id),
        to_confirm=to_confirm, outcome=outcome, errors=errors or {},
        categories=contract.CATEGORY_BY_CODE, reasons=REASONS,
        visit_outcomes=[(code, _l(label)) for code, label in contract.VISIT_OUTCOME_LABELS.items()],
    ), status


def own(model, row_id: int):
    """The signed-in volunteer's own offer or task by id; anyone else's is a 404."""
    row = ext.db_session().get(model, row_id)
    if row is None or row.volunteer_id != g.volunteer.id:
        abort(404)
    return row


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

    rows = [(t, bookings.get(t.booking_id), contact(t.request_id, vol.id)) for t in sorted(tasks, key=when)]
    # Residents' contacts: never stored (the blueprint's Cache-Control: no-store).
    return render_template("task_sheet.html", vol=vol, rows=rows, categories=contract.CATEGORY_BY_CODE,
                           printed_at=utcnow())


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
    ok = dispatcher(ext.db_session()).start(own(Assignment, assignment_id))
    ext.db_session().commit()
    return redirect(url_for("web.portal", outcome="started" if ok else "refused"), 303)


@web.post("/me/tasks/<id:assignment_id>/complete")
@volunteer_required
def task_complete(assignment_id: int):
    task = own(Assignment, assignment_id)
    try:
        data = _form(CompleteIn())
        if task.request.programme_ref and data["outcome"] is None:
            raise ValidationError({"outcome": [_l("Say what you found.")]})
    except ValidationError as exc:
        return _portal(errors={f"complete-{assignment_id}": exc.messages}, status=422)
    ok = dispatcher(ext.db_session()).complete(task, data["minutes"], data["note"], data["outcome"]) is not None
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
    if not TimeBank(ext.db_session()).confirm_hours(entry, by=f"station-lead:{g.volunteer.id}",
                                                    hours=entry.correction_hours, by_volunteer=g.volunteer.id):
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
          TimeBank(ext.db_session()).move_coins(g.volunteer.id, data["amount"], "donated", f"to:{other.id}",
                                                to_volunteer=other.id))
    ext.db_session().commit()
    return redirect(url_for("web.portal", outcome="donated" if ok else "refused"), 303)
