"""Service stations (翠邻里服务站): fixed place, fixed time, fixed person.
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

from . import engine
from .models import Booking, ServiceRequest, StationSession

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
