"""Escalation along the grid chain (网格): hallway leader (楼道长) → grid
leader → community office, when nobody can or does take a request in time;
staff-only matters start at the grid leader. Each step is recorded, and the
leader is told (and tells us, through notify, if they cannot be reached).

Transactions: like every matching operation, escalating stages its changes
in the caller's session and never commits; the task that calls it commits
once (the sweep: once per request)."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import select

from .models import Escalation, Leader, ServiceRequest

if TYPE_CHECKING:
    from .dispatch import Dispatcher

log = logging.getLogger(__name__)

LEVELS = {"hallway": 1, "grid": 2, "office": 3}


def leader_at(session, req: ServiceRequest, level: int) -> Leader | None:
    """The leader at `level` for the request's home, or the next one up
    when that post is empty (or a hallway without a unit)."""
    q = {
        1: select(Leader).where(Leader.role == "hallway", Leader.building == req.building, Leader.unit == req.unit),
        2: select(Leader).where(Leader.role == "grid", Leader.grid == req.home.grid),
        3: select(Leader).where(Leader.role == "office"),
    }
    for lvl in range(level, 4):
        if lvl == 1 and not req.unit:
            continue
        leader = session.scalar(q[lvl].limit(1))
        if leader is not None:
            return leader
    return None


def escalate(d: Dispatcher, req: ServiceRequest, reason: str, level: int | None = None) -> Escalation | None:
    """One step up the chain (or to `level`); open offers are withdrawn.
    Past the community office there is nowhere further: None."""
    level = level or max(1, req.escalation_level + 1)
    if level > 3:
        return None
    leader = leader_at(d.session, req, level)
    actual = LEVELS[leader.role] if leader else level
    esc = Escalation(request=req, leader_id=leader.id if leader else None, level=actual, reason=reason,
                     created_at=d.now)
    d.session.add(esc)
    d.session.flush()
    req.escalation_level = actual
    first = req.status != "escalated"
    req.status = "escalated"
    d.withdraw_offers(req, why="escalated")
    if leader is not None:
        d.notify(f"escalation:{esc.id}", f"leader:{leader.id}", leader.channels, "zh-CN", "escalation",
                 urgent=req.urgency == "urgent", reply=True, context={
                     "category": req.category, "building": req.home.name, "unit": req.unit or "",
                     "masked_phone": req.masked_phone, "summary": req.summary[:200], "reason": reason,
                     "leader_name": leader.name,
                 })
    if first:
        d.tell_intake(req, "escalated", actor="matching", note=reason)
    log.info("request escalated", extra={"service_request_id": req.id, "reason": reason, "level": actual,
                                         "leader_id": leader.id if leader else None})
    return esc
