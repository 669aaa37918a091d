"""Dispatch: what matching does with a request — offer it to the best
candidate, take an acceptance or a decline, or escalate along the grid
chain. Every state change and the events it causes are staged in the
caller's transaction (outbox); the caller commits."""
from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from services.common import contract
from services.common.db import utcnow

from . import engine
from .models import Assignment, Building, Escalation, Leader, Offer, ServiceRequest, Volunteer, VolunteerSkill

log = logging.getLogger(__name__)


def place_of(building: Building, unit: str | None) -> engine.Place:
    return engine.Place(building.code, unit, building.grid)


def volunteer_facts(session, category: str) -> list[engine.VolunteerFacts]:
    """Only volunteers with the skill are loaded: the skill index does the
    first filter, the engine the rest."""
    vols = session.scalars(
        select(Volunteer).join(VolunteerSkill).where(VolunteerSkill.category == category, Volunteer.active.is_(True))
    ).unique().all()
    return [
        engine.VolunteerFacts(v.id, frozenset(v.skill_codes), v.active, v.capacity, v.active_tasks,
                              place_of(v.home, v.unit))
        for v in vols
    ]


def receive(session, outbox, data: dict, base_url: str) -> ServiceRequest | None:
    """request.submitted: remember the request, then offer or escalate."""
    request_id = str(data["request_id"])
    if session.get(ServiceRequest, request_id) is not None:
        return None  # already handled under another envelope
    if session.get(Building, data["building"]) is None:
        raise ValueError("unknown building")  # seeding lags behind intake: retried
    req = ServiceRequest(
        id=request_id, category=data["category"], summary=data["summary"], building=data["building"],
        unit=data["unit"], masked_phone=data["masked_phone"], mode=data["mode"],
        window_start=data["window_start"], window_end=data["window_end"], urgency=data["urgency"],
        status="matching",
    )
    session.add(req)
    session.flush()
    if contract.CATEGORY_BY_CODE[req.category].staff_only:
        escalate(session, outbox, req, "staff_only")
    else:
        offer_next(session, outbox, req, base_url)
    return req


def offer_next(session, outbox, req: ServiceRequest, base_url: str) -> Offer | None:
    """Sequential dispatch: offer to the best volunteer not yet asked; with
    nobody left, escalate."""
    asked = frozenset(o.volunteer_id for o in req.offers)
    facts = engine.RequestFacts(req.category, place_of(req.home, req.unit))
    candidates = engine.rank(facts, volunteer_facts(session, req.category), exclude=asked)
    if not candidates:
        escalate(session, outbox, req, "no_candidate")
        return None
    best = candidates[0]
    offer = Offer(request=req, volunteer_id=best.volunteer_id, reason=" ".join(best.reasons))
    session.add(offer)
    session.flush()
    vol = session.get(Volunteer, best.volunteer_id)
    req.status = "offered"
    _notify(outbox, session, key=f"offer:{offer.id}", recipient=f"volunteer:{vol.id}", channels=vol.channels,
            language=vol.language, template="offer", urgent=req.urgency == "urgent", context={
                # Before acceptance a volunteer learns the building only.
                "category": req.category,
                "building": req.home.name,
                "masked_phone": req.masked_phone,
                "summary": req.summary[:200],
                "window_start": req.window_start.isoformat() if req.window_start else "",
                "window_end": req.window_end.isoformat() if req.window_end else "",
                "offer_url": f"{base_url}/offers/{offer.token}",
            })
    _tell_intake(outbox, session, req, "offered", actor="matching")
    log.info("offer made", extra={"request_id": req.id, "offer_id": offer.id, "volunteer_id": vol.id})
    return offer


def escalation_target(session, req: ServiceRequest, reason: str) -> Leader | None:
    """Staff-only matters go to the grid leader; a request nobody can take
    goes to the hallway leader of the resident's stairwell first. The
    community office is the last resort."""
    grid = req.home.grid
    wanted = []
    if reason != "staff_only" and req.unit:
        wanted.append(select(Leader).where(Leader.role == "hallway", Leader.building == req.building,
                                           Leader.unit == req.unit))
    wanted.append(select(Leader).where(Leader.role == "grid", Leader.grid == grid))
    wanted.append(select(Leader).where(Leader.role == "office"))
    for query in wanted:
        leader = session.scalar(query.limit(1))
        if leader is not None:
            return leader
    return None


def escalate(session, outbox, req: ServiceRequest, reason: str) -> Escalation:
    leader = escalation_target(session, req, reason)
    esc = Escalation(request_id=req.id, leader_id=leader.id if leader else None, reason=reason)
    session.add(esc)
    session.flush()
    req.status = "escalated"
    if leader is not None:
        _notify(outbox, session, key=f"escalation:{esc.id}", recipient=f"leader:{leader.id}",
                channels=leader.channels, language="zh-CN", template="escalation", urgent=True, context={
                    "category": req.category,
                    "building": req.home.name,
                    "unit": req.unit or "",
                    "masked_phone": req.masked_phone,
                    "summary": req.summary[:200],
                    "reason": reason,
                    "leader_name": leader.name,
                })
    _tell_intake(outbox, session, req, "escalated", actor="matching", note=reason)
    log.info("request escalated", extra={"request_id": req.id, "reason": reason,
                                         "leader_id": leader.id if leader else None})
    return esc


def accept(session, outbox, offer: Offer) -> str:
    """Take an offer. Atomic under concurrent accepts: the capacity claim is
    a conditional UPDATE, the offer claim another, and the unique
    assignment per request settles the rest. Returns accepted, full,
    closed (the offer is no longer open) or taken (someone else won)."""
    claimed = session.execute(
        update(Offer).where(Offer.id == offer.id, Offer.status == "open")
        .values(status="accepted", responded_at=utcnow())
    ).rowcount
    if not claimed:
        session.rollback()
        return "closed"
    booked = session.execute(
        update(Volunteer)
        .where(Volunteer.id == offer.volunteer_id, Volunteer.active.is_(True),
               Volunteer.active_tasks < Volunteer.capacity)
        .values(active_tasks=Volunteer.active_tasks + 1)
    ).rowcount
    if not booked:
        session.rollback()
        return "full"
    try:
        with session.begin_nested():
            session.add(Assignment(request_id=offer.request_id, volunteer_id=offer.volunteer_id, offer_id=offer.id))
    except IntegrityError:
        session.rollback()
        return "taken"
    req = session.get(ServiceRequest, offer.request_id)
    req.status = "assigned"
    vol = session.get(Volunteer, offer.volunteer_id)
    _tell_intake(outbox, session, req, "assigned", actor=f"volunteer:{vol.id}", volunteer_name=vol.display_name)
    log.info("offer accepted", extra={"request_id": req.id, "offer_id": offer.id, "volunteer_id": vol.id})
    return "accepted"


def decline(session, outbox, offer: Offer, base_url: str) -> bool:
    claimed = session.execute(
        update(Offer).where(Offer.id == offer.id, Offer.status == "open")
        .values(status="declined", responded_at=utcnow())
    ).rowcount
    if not claimed:
        return False
    session.expire(offer)
    req = session.get(ServiceRequest, offer.request_id)
    session.refresh(req)
    still_open = any(o.status == "open" for o in req.offers)
    if req.status in ("matching", "offered") and not still_open:
        offer_next(session, outbox, req, base_url)
    return True


def _tell_intake(outbox, session, req, status, actor, note="", volunteer_name=None) -> None:
    outbox.emit(session, contract.STATUS_CHANGED, {
        "request_id": req.id, "status": status, "actor": actor, "note": note, "volunteer_name": volunteer_name,
    })


def _notify(outbox, session, *, key, recipient, channels, language, template, urgent, context) -> None:
    outbox.emit(session, contract.NOTIFY_SEND, {
        "dedupe_key": key, "recipient": recipient, "channels": list(channels or []), "language": language,
        "template": template, "context": context, "urgent": urgent,
    })
