"""Service stations (翠邻里服务站): fixed place, fixed time, fixed person.
The office adds stations and adds, changes and removes their weekly
sessions from the console (contract.STATION_CHANGE, apply_change).
A station request books the next weekly session of its service with a free
slot that fits the resident's window, instead of an at-home visit; the
resident is told when and where.

Transactions: like every matching operation, booking stages its changes in
the caller's session and never commits; the task that calls it commits
once. Two bookings of one slot are decided by a unique index, inside a
savepoint of the booking's own."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.common.inbox import Permanent

from . import engine
from .models import Booking, ServiceRequest, Station, StationSession, Volunteer

if TYPE_CHECKING:
    from .dispatch import Dispatcher

log = logging.getLogger(__name__)


def book(d: Dispatcher, req: ServiceRequest, weeks: int = 4) -> Booking | None:
    """Book the next session of the service with a free slot that fits the
    resident's window (within `weeks`); none: the caller offers the request
    to volunteers instead."""
    sessions = d.session.scalars(
        select(StationSession).where(StationSession.category == req.category, StationSession.active.is_(True))
    ).all()
    for starts_at, sess in _occurrences(sessions, d.now, weeks):
        if starts_at <= d.now:
            continue
        if req.window_start and starts_at < req.window_start:
            continue
        if req.window_end and starts_at > req.window_end:
            continue
        booking = _take_slot(d.session, req, sess, starts_at)
        if booking is None:
            continue
        d.new_assignment(req.id, sess.volunteer_id, actor="station", booking_id=booking.id)
        req.status = "assigned"
        place = f"{sess.station.name}（{sess.station.place}）"
        d.tell_intake(req, "assigned", actor="station", volunteer_name=sess.volunteer.display_name,
                      appointment_at=starts_at, place=place)
        log.info("station slot booked",
                 extra={"service_request_id": req.id, "session_id": sess.id, "slot": booking.slot})
        return booking
    return None


def _take_slot(session, req: ServiceRequest, sess: StationSession, starts_at: datetime) -> Booking | None:
    """The lowest free slot of one occurrence. A concurrent booking of the
    same slot loses on the unique index and looks again."""
    day = starts_at.astimezone(engine.SHANGHAI).date()
    for _ in range(sess.slots + 1):
        used = set(session.scalars(select(Booking.slot).where(
            Booking.session_id == sess.id, Booking.day == day, Booking.status == "booked")))
        free = [n for n in range(1, sess.slots + 1) if n not in used]
        if not free:
            return None
        try:
            with session.begin_nested():
                booking = Booking(session_id=sess.id, day=day, slot=free[0], request_id=req.id,
                                  starts_at=starts_at)
                session.add(booking)
                session.flush()
            return booking
        except IntegrityError:
            continue
    return None


def _occurrences(sessions, now: datetime, weeks: int) -> list[tuple[datetime, StationSession]]:
    """Every weekly session's dates from today (in Asia/Shanghai) for
    `weeks`, soonest first."""
    today = now.astimezone(engine.SHANGHAI).date()
    found = []
    for sess in sessions:
        for offset in range(weeks * 7 + 1):
            day = today + timedelta(days=offset)
            if day.weekday() == sess.weekday:
                found.append((datetime.combine(day, sess.start_time, engine.SHANGHAI), sess))
    found.sort(key=lambda pair: (pair[0], pair[1].id))
    return found


def _session_volunteer(session, data: dict) -> Volunteer:
    vol = session.get(Volunteer, data["volunteer_id"])
    if vol is None or data["category"] not in vol.skill_codes:
        # The console checked this when the office saved it; nothing to retry.
        raise Permanent("the volunteer does not offer this service")
    return vol


def apply_change(session, data: dict) -> str:
    """A station or weekly session the office added, changed or removed in
    the console. A removed session takes no new bookings; its booked slots
    stay. The same change sent twice has one effect (and the inbox keeps
    one message once). What was done, for the log."""
    action = data["action"]
    if action == "add_station":
        st = data["station"]
        if session.scalar(select(Station.id).where(Station.code == st["code"])) is not None:
            return "exists"
        if st["lead_volunteer_id"] is not None and session.get(Volunteer, st["lead_volunteer_id"]) is None:
            raise Permanent("no such lead volunteer")
        session.add(Station(**st))
        return "added"
    if action == "add_session":
        if session.get(Station, data["station_id"]) is None:
            raise LookupError("station not received yet")  # retried: its add_station may be on its way
        values = data["session"]
        _session_volunteer(session, values)
        row = dict(station_id=data["station_id"], category=values["category"], weekday=values["weekday"],
                   start_time=values["start"], end_time=values["end"], volunteer_id=values["volunteer_id"],
                   slots=values["slots"])
        same = session.scalar(select(StationSession.id).filter_by(active=True, **row))
        if same is None:
            session.add(StationSession(**row))
        return "added"
    sess = session.get(StationSession, data["session_id"])
    if sess is None:
        raise Permanent("no such session")
    if action == "remove_session":
        sess.active = False
        return "removed"
    values = data["session"]
    _session_volunteer(session, values)
    sess.category, sess.weekday, sess.volunteer_id, sess.slots = (values["category"], values["weekday"],
                                                                 values["volunteer_id"], values["slots"])
    sess.start_time, sess.end_time = values["start"], values["end"]
    return "changed"
