"""Reads that the resident's pages, the staff console and the staff API
share: the community's buildings in the order residents count them, and
the staff queue within a staff member's scope."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, and_, or_, select

from services.common import extensions as ext

from .models import FINAL, Building, ServiceRequest
from .staff import Scope


def sorted_buildings() -> list[Building]:
    """The community's buildings in the order residents count them (2 before 10)."""
    return sorted(ext.db_session().scalars(select(Building)).all(), key=lambda b: (len(b.code), b.code))


def queue_statement(scope: Scope, q: dict, now: datetime) -> Select:
    """The queue's requests in `scope`, newest first, with the filters of a
    QueueQuery: the console's page and its download, and the staff API."""
    stmt = select(ServiceRequest).where(scope.where()).order_by(ServiceRequest.created_at.desc())
    if "status" in q:
        stmt = stmt.where(ServiceRequest.status == q["status"])
    if "category" in q:
        stmt = stmt.where(ServiceRequest.category == q["category"])
    if "grid" in q:
        stmt = stmt.where(ServiceRequest.building_code.in_(select(Building.code).where(Building.grid == q["grid"])))
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
