"""Reads that the resident's pages, the staff console and the staff API
share: the community's buildings in the order residents count them, and
the staff queue within a staff member's scope."""
from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import Select, and_, false, func, or_, select

from services.common import extensions as ext

from .models import FINAL, Building, ServiceRequest, normalise_tracking_code
from .staff import Scope

# The columns the queue sorts by (?sort=…): a fixed list, never a column
# name taken from the address.
SORTS = {
    "received": (ServiceRequest.created_at,),
    "code": (ServiceRequest.tracking_code,),
    "service": (ServiceRequest.category,),
    "where": (ServiceRequest.building_code, ServiceRequest.unit, ServiceRequest.room),
    "grid": (Building.grid, ServiceRequest.building_code),
    "status": (ServiceRequest.status,),
    "due": (ServiceRequest.due_at,),
}


def default_direction(sort: str) -> str:
    """Newest first; every other column from its smallest (the earliest deadline)."""
    return "desc" if sort == "received" else "asc"

LAST_4 = re.compile(r"^[0-9]{4}$")


def sorted_buildings() -> list[Building]:
    """The community's buildings in the order residents count them (2 before 10)."""
    return sorted(ext.db_session().scalars(select(Building)).all(), key=lambda b: (len(b.code), b.code))


def waiting(now: datetime, actor: str | None = None):
    """What waits for a staff member (the count in the console's
    navigation): open — not completed, closed or cancelled — and handed
    to them, or nobody has it yet (not taken by staff nor by a volunteer,
    nor handed to another named member), or it was passed to staff
    (escalated), or it is past a deadline."""
    unclaimed = and_(ServiceRequest.taken_at.is_(None), ServiceRequest.handler.is_(None))
    return and_(ServiceRequest.status.not_in(FINAL), or_(
        unclaimed, ServiceRequest.handler == actor if actor else false(),
        ServiceRequest.status == "escalated", ServiceRequest.due_at < now))


def waiting_count(scope: Scope, now: datetime, actor: str | None = None) -> int:
    return ext.db_session().scalar(select(func.count()).select_from(ServiceRequest)
                                   .where(scope.where(), waiting(now, actor))) or 0


def search(term: str):
    """One box for what a caller can tell the desk: the tracking code, the
    last 4 digits of the phone, or the room."""
    term = term.strip()
    found = [ServiceRequest.tracking_code == normalise_tracking_code(term),
             func.upper(ServiceRequest.room) == term.upper()]
    if LAST_4.match(term):
        found.append(ServiceRequest.contact_phone.like(f"%{term}"))
    return or_(*found)


def queue_statement(scope: Scope, q: dict, now: datetime, actor: str | None = None) -> Select:
    """The queue's requests in `scope`, with the filters of a QueueQuery
    (newest first unless `sort`/`dir` say otherwise): the console's page
    and its download, and the staff API. `actor`: the signed-in member,
    for "waiting for me" and "handed to me"."""
    sort = q.get("sort", "received")
    direction = q.get("dir") or default_direction(sort)
    columns = [c.desc() if direction == "desc" else c.asc() for c in SORTS[sort]]
    stmt = (select(ServiceRequest).join(Building).where(scope.where())
            .order_by(*(c.nulls_last() for c in columns), ServiceRequest.created_at.desc(), ServiceRequest.id))
    if q.get("search"):
        stmt = stmt.where(search(q["search"]))
    if q.get("waiting"):
        stmt = stmt.where(waiting(now, actor))
    if q.get("mine"):
        stmt = stmt.where(ServiceRequest.handler == actor) if actor else stmt.where(false())
    if "status" in q:
        stmt = stmt.where(ServiceRequest.status == q["status"])
    if "category" in q:
        stmt = stmt.where(ServiceRequest.category == q["category"])
    if "grid" in q:
        stmt = stmt.where(Building.grid == q["grid"])
    if "building" in q:
        stmt = stmt.where(ServiceRequest.building_code == q["building"])
    if q.get("escalated"):
        stmt = stmt.where(ServiceRequest.status == "escalated")
    if q.get("overdue"):
        stmt = stmt.where(ServiceRequest.status.not_in(FINAL), or_(
            and_(ServiceRequest.taken_at.is_(None), ServiceRequest.take_by < now), ServiceRequest.due_at < now))
    if q.get("follow_up"):
        stmt = stmt.where(ServiceRequest.status.in_(("completed", "closed")), ~ServiceRequest.feedback.has(),
                          ServiceRequest.anonymised_at.is_(None))
    return stmt
