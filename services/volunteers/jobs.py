"""Matching's periodic jobs, sent by beat: the sweep (expire offers, offer
waiting requests onwards, escalate what missed its deadline, step up
unanswered escalations, remind volunteers of tasks due) and each grid
leader's morning digest.

Transactions: like every matching operation, the jobs stage their changes
in the caller's session and never commit. The sweep yields after each piece
of work that stands on its own, and its task commits at every yield: one
long transaction over a large backlog would hold the write lock (SQLite) or
row locks (PostgreSQL) for seconds while volunteers try to accept."""
from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Iterator

from sqlalchemy import func, select

from services.common import contract

from . import engine
from .dispatch import OPEN_REQUEST
from .escalation import escalate
from .models import Assignment, Escalation, Grid, Leader, Offer, ServiceRequest

if TYPE_CHECKING:
    from .dispatch import Dispatcher

SWEEP_STEPS = ("expired", "dispatched", "escalated", "overdue", "stepped_up", "reminded")


def sweep(d: Dispatcher) -> Iterator[tuple[str, int]]:
    """Expire unanswered offers and offer onwards; dispatch waiting
    requests, most urgent first; escalate what missed its deadline; move
    unanswered escalations up the chain; remind. Yields (step, how many)
    where the caller commits: after the expiries, after each request, and
    after the reminders."""
    expired = 0
    for offer in d.session.scalars(
        select(Offer).where(Offer.status == "open", Offer.expires_at <= d.now).order_by(Offer.id)
    ).all():
        offer.status, offer.responded_at = "expired", d.now
        expired += 1
    yield "expired", expired
    # Each step is one query for exactly the rows it acts on: the sweep
    # runs every few seconds over a community's whole backlog.
    late = d.session.scalars(select(ServiceRequest).where(
        ServiceRequest.status.in_(OPEN_REQUEST), ServiceRequest.accept_by <= d.now)).all()
    for req in late:
        escalate(d, req, "not_taken")
        yield "escalated", 1
    # NOT IN, not a correlated NOT EXISTS: SQLite (no statistics) ran the
    # EXISTS on the offers' status index, all open offers for each open
    # request, n² at every sweep (0.2 s of CPU at 1,200 open requests, py-spy).
    with_open_offer = select(Offer.request_id).where(Offer.status == "open")
    waiting = d.session.scalars(select(ServiceRequest).where(
        ServiceRequest.status.in_(OPEN_REQUEST), ServiceRequest.id.not_in(with_open_offer))).all()
    waiting.sort(key=lambda r: (-d.request_facts(r).priority, r.received_at, r.id))
    for req in waiting:
        yield "dispatched", 1 if d.dispatch(req) else 0
    for req in d.session.scalars(select(ServiceRequest).join(Assignment).where(
            Assignment.status.in_(("active", "started")), Assignment.complete_by <= d.now,
            ServiceRequest.escalation_level == 0)).all():
        escalate(d, req, "overdue")
        yield "overdue", 1
    step = timedelta(minutes=d.cfg["ESCALATION_STEP_MINUTES"])
    last = (select(Escalation.request_id, func.max(Escalation.created_at).label("at"))
            .group_by(Escalation.request_id).subquery())
    # The calendar step is the earliest a step can be due; an ordinary
    # request's clock also stands still in the quiet hours.
    for req, at in d.session.execute(select(ServiceRequest, last.c.at).join(
            last, last.c.request_id == ServiceRequest.id).where(
            ServiceRequest.status == "escalated", ServiceRequest.escalation_level < 3,
            last.c.at <= d.now - step)).all():
        if d.deadline(req, at, step) > d.now:
            continue
        escalate(d, req, "not_taken")
        yield "stepped_up", 1
    yield "reminded", remind(d)


def remind(d: Dispatcher) -> int:
    """A day before a task's completion deadline, remind its volunteer once."""
    sent = 0
    for task in d.session.scalars(select(Assignment).where(
            Assignment.status.in_(("active", "started")), Assignment.reminded_at.is_(None),
            Assignment.complete_by <= d.now + timedelta(hours=24))).all():
        vol, req = task.volunteer, task.request
        due = task.complete_by.astimezone(engine.SHANGHAI).strftime("%m-%d %H:%M")
        d.notify(f"reminder:{task.id}", f"volunteer:{vol.id}", vol.channels, vol.language, "reminder",
                 context={"category": req.category, "building": req.home.name, "due": due,
                          "portal_url": f"{d.base_url}/me"})
        task.reminded_at = d.now
        sent += 1
    return sent


def digest(d: Dispatcher) -> int:
    """Each grid leader's morning summary: open, overdue and escalated
    requests in their grid (sent even when all is quiet: no news is news).
    Dedupe keys carry the date: a repeated run sends nothing twice."""
    day = d.now.astimezone(engine.SHANGHAI).date().isoformat()
    live = d.session.scalars(select(ServiceRequest).where(
        ServiceRequest.status.in_(("matching", "offered", "assigned", "in_progress", "escalated")))).all()
    overdue_ids = set(d.session.scalars(select(Assignment.request_id).where(
        Assignment.status.in_(("active", "started")), Assignment.complete_by <= d.now)))
    sent = 0
    for grid in d.session.scalars(select(Grid).order_by(Grid.code)).all():
        leader = d.session.scalar(select(Leader).where(Leader.role == "grid", Leader.grid == grid.code))
        if leader is None:
            continue
        mine = [r for r in live if r.home.grid == grid.code]
        overdue = [r for r in mine if r.id in overdue_ids
                   or (r.status in OPEN_REQUEST and r.accept_by and r.accept_by <= d.now)]
        escalated = [r for r in mine if r.status == "escalated"]
        items = [f"{r.home.name} {contract.CATEGORY_BY_CODE[r.category].name('zh-CN')}（{r.status}）"
                 for r in (escalated + [o for o in overdue if o not in escalated])[:10]]
        d.notify(f"digest:{grid.code}:{day}", f"leader:{leader.id}", leader.channels, "zh-CN", "digest",
                 context={"leader_name": leader.name, "grid_name": grid.name, "open": len(mine),
                          "overdue": len(overdue), "escalated": len(escalated), "items": items})
        sent += 1
    return sent
