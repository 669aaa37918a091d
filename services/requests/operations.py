"""Intake's operations (受理 to 回访): what happens to a service request —
submitted on any channel, sent again when matching never answered,
withdrawn, rated, acted on by staff in the console, anonymised when its
retention ends. Each writes its rows and the events they cause into the
caller's session and outbox; the caller commits both together."""
from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, or_, select

from services.common import contract
from services.common.clock import SHANGHAI, utcnow
from services.common.i18n import N_, translate

from . import hotline
from .models import FINAL, RESIDENT_CHANNELS, Feedback, ServiceRequest, StatusChange, new_public_id


def timer_for(category: str) -> hotline.Timer:
    """The category's timers, as the factory read them from the settings."""
    return current_app.extensions["timers"][category]


def submit(session, outbox, data: dict, channel: str, language: str, digest_key: str, timer: hotline.Timer,
           entered_by: str | None = None, before_emit=None) -> ServiceRequest:
    """The one intake path (web form, JSON API, Open311, staff entering it
    for a resident): store the request, its first timeline entry and the
    `volunteers.request_submitted` event together."""
    now = utcnow()
    take_by, due_at = hotline.deadlines(timer, now)
    req = ServiceRequest(
        public_id=new_public_id(),
        category=data["category"],
        description=data["description"],
        building_code=data["building"],
        unit=data.get("unit"),
        room=data["room"],
        contact_name=data["contact_name"],
        contact_phone=data["contact_phone"],
        mode=data["mode"],
        window_start=data.get("window_start"),
        window_end=data.get("window_end"),
        urgency=data["urgency"],
        elderly=data["elderly"],
        disability=data["disability"],
        consent_at=now,
        consent_method=data.get("consent_method"),
        messages=data.get("messages", "none"),
        entered_by=entered_by,
        channel=channel,
        language=language,
        status="submitted",
        take_by=take_by,
        due_at=due_at,
    )
    session.add(req)
    req.history.append(StatusChange(status="submitted", actor=entered_by or channel, note="", at=now))
    if before_emit is not None:
        before_emit(req)
    session.flush()
    emit_submitted(session, outbox, req, digest_key)
    return req


# What a programme's request says to its visitor, by reason (no typed text travels).
PROGRAMME_TEXTS = {
    "scheduled": N_("Regular visit to a resident who lives alone or needs care: see that they are well "
                    "and ask whether they need anything."),
    "missed_checkin": N_("The resident has not made their daily check-in today: visit today and see that they "
                         "are well."),
    "needs_attention": N_("A visitor found that this resident needs attention: please follow up."),
    "emergency": N_("A visitor reported an emergency with this resident: act now."),
    "nobody_home_twice": N_("Nobody was home at the last two visits: find out whether this resident is well."),
    "overdue": N_("A visit to this resident was not done by its due date: please arrange it."),
}


def submit_programme(session, outbox, data: dict, digest_key: str) -> ServiceRequest | None:
    """requests.programme_request: the community service's request for a
    resident in its register. One request per reference; never public."""
    if session.scalar(select(ServiceRequest.id).where(ServiceRequest.programme_ref == data["ref"])) is not None:
        return None
    form = {**data, "description": translate(PROGRAMME_TEXTS[data["reason"]], "zh-CN"), "mode": "home",
            "consent_method": "register"}
    req = submit(session, outbox, form, "programme", "zh-CN", digest_key, timer_for(data["category"]),
                 entered_by="community", before_emit=lambda r: _programme_fields(r, data))
    return req


def _programme_fields(req: ServiceRequest, data: dict) -> None:
    req.programme_ref = data["ref"]
    req.preferred_volunteer_id = data["preferred_volunteer_id"]
    req.first_to = data["first_to"]


def emit_submitted(session, outbox, req: ServiceRequest, digest_key: str) -> None:
    outbox.emit(session, contract.REQUEST_SUBMITTED, {
        "request_id": req.id,
        "category": req.category,
        "summary": req.description,
        "building": req.building_code,
        "unit": req.unit,
        "masked_phone": req.masked_phone,
        "mode": req.mode,
        "window_start": req.window_start,
        "window_end": req.window_end,
        "urgency": req.urgency,
        "elderly": req.elderly,
        "disability": req.disability,
        "requester_digest": contract.phone_digest(req.contact_phone, digest_key),
        # The visitor's outcome goes back to the visit (welfare requests have none to record).
        "programme_ref": req.programme_ref if req.category == "visit" else None,
        "preferred_volunteer_id": req.preferred_volunteer_id,
        "first_to": req.first_to,
    })


# Open statuses whose answer matching may have given and the broker lost.
LIVE = ("matching", "offered", "assigned", "in_progress", "escalated")


def resend_unanswered(session, outbox, digest_key: str, after: timedelta, still_after: timedelta | None = None) -> int:
    """A broker can lose a message it had already accepted (Redis hands it to
    a worker that is killed before the delivery is recorded). Matching
    answers every volunteers.request_submitted with the request's current status, so
    intake sends again: a request still `submitted` after `after`, and an
    open request whose status has not moved for `still_after` (5 × after by
    default) — a lost "assigned" or "completed" would otherwise leave it
    stale for good. Each under a new envelope; matching keeps one request
    per id and only retells."""
    now = utcnow()
    cutoff, still_cutoff = now - after, now - (still_after if still_after is not None else after * 5)
    stale = session.scalars(select(ServiceRequest).where(
        or_(and_(ServiceRequest.status == "submitted", ServiceRequest.created_at <= cutoff),
            and_(ServiceRequest.status.in_(LIVE), ServiceRequest.updated_at <= still_cutoff)),
        or_(ServiceRequest.resent_at.is_(None), ServiceRequest.resent_at <= cutoff)).limit(200)).all()
    for req in stale:
        emit_submitted(session, outbox, req, digest_key)
        req.resent_at = now
    return len(stale)


def cancel(session, outbox, req: ServiceRequest, actor: str, reason: str) -> bool:
    """Withdrawn by the resident (tracking code) or staff: matching then
    withdraws offers and frees the volunteer."""
    if req.status in FINAL or not req.move_to("cancelled", actor=actor, note=reason):
        return False
    if actor == "resident":
        req.purge_contact()
    outbox.emit(session, contract.REQUEST_CANCELLED, {"request_id": req.id, "actor": actor, "reason": reason})
    return True


def unhappy(data: dict) -> bool:
    return not data.get("resolved", True) or data["rating"] <= 2


def give_feedback(session, outbox, req: ServiceRequest, data: dict, actor: str = "resident") -> bool:
    """The follow-up (回访), once, after completion, from the resident's
    tracking page or a staff member's call: it reaches the volunteer and
    feeds their rating; an unhappy resident reopens the request."""
    if req.status not in ("completed", "closed") or req.feedback is not None:
        return False
    session.add(Feedback(request=req, rating=data["rating"], thanks=data["thanks"], comment=data["comment"],
                         resolved=data.get("resolved", True)))
    outbox.emit(session, contract.FEEDBACK_RECEIVED, {
        "request_id": req.id, **{k: data[k] for k in ("rating", "thanks", "comment")}})
    if unhappy(data):
        req.reopened = True
        req.move_to("escalated", actor=actor, note="reopened: the resident is not satisfied")
        staff_action(session, outbox, req, "escalate", actor, reason="reopened",
                     note="the resident is not satisfied", level=2)
    return True


# --- what staff do in the console (actor: staff:<id>) ---


def staff_action(session, outbox, req: ServiceRequest | None, action: str, actor: str, note: str = "",
                 volunteer_id: int | None = None, level: int | None = None, reason: str = "staff",
                 **changes) -> None:
    """Matching owns offers, assignments and the registry: the console
    asks, matching does. An escalation says why in `reason`, one of
    contract.STAFF_ESCALATION_REASONS."""
    outbox.emit(session, contract.STAFF_ACTION, {
        "action": action, "request_id": req.id if req else None, "volunteer_id": volunteer_id,
        "level": level, "actor": actor, "note": note[:500], **({"reason": reason} if action == "escalate" else {}),
        **changes})


def take(req: ServiceRequest, actor: str) -> bool:
    """受理: a staff member takes the request (the response timer stops)."""
    if req.status in FINAL or req.taken_at is not None:
        return False
    req.taken_at = utcnow()
    req.record("taken", actor)
    return True


def extend(session, outbox, req: ServiceRequest, actor: str, working_days: int, reason: str) -> bool:
    """One extension of at most ten working days; the resident sees the
    reason, and is told (inbox, and SMS or call if they opted in)."""
    if req.status in FINAL or req.extension_days or req.due_at is None:
        return False
    req.due_at = hotline.add_working_days(req.due_at, working_days)
    req.extension_days, req.extension_reason = working_days, reason
    req.record("extended", actor, note=reason)
    if req.channel in RESIDENT_CHANNELS:
        tell_resident(session, outbox, req, "extended", f"extended:{req.id}", days=working_days, why=reason,
                      due=req.due_at.astimezone(SHANGHAI).strftime("%Y-%m-%d"))
    return True


def hand_back(session, outbox, req: ServiceRequest, actor: str, reason: str, now: datetime) -> str | None:
    """A mis-routed request goes back to the community office within one
    working day of reaching its handler; the third hand-back sends it to
    the grid leader, who decides. Returns why it was refused, or None."""
    if req.status in FINAL or req.grid_decides:
        return "locked"
    if req.routed_at is None or now > hotline.handback_open_until(req.routed_at):
        return "late"
    req.handbacks += 1
    req.routed_at = now
    req.grid_decides = req.handbacks >= hotline.HANDBACK_LIMIT
    req.record("handed_back", actor, note=reason)
    staff_action(session, outbox, req, "escalate", actor, reason="handed_back", note=reason,
                 level=2 if req.grid_decides else 3)
    return None


def close(session, outbox, req: ServiceRequest, actor: str, note: str) -> bool:
    """Closed with a note by staff (done by phone, a duplicate, resolved
    by the office). Not while a volunteer is on it: reassign or cancel."""
    if req.status in ("assigned", "in_progress") or not req.move_to("closed", actor=actor, note=note):
        return False
    staff_action(session, outbox, req, "close", actor, note=note)
    if req.channel in RESIDENT_CHANNELS:
        tell_resident(session, outbox, req, "closed", f"closed:{req.id}")
    return True


def anonymise_expired(session, days: int, now: datetime, batch: int = 500) -> int:
    """Retention: residents' data of requests finished more than `days`
    ago is removed; the rows stay for statistics."""
    cutoff = now - timedelta(days=days)
    rows = session.scalars(select(ServiceRequest).where(
        ServiceRequest.finished_at <= cutoff, ServiceRequest.anonymised_at.is_(None)).limit(batch)).all()
    for req in rows:
        req.anonymise()
    return len(rows)


def resident_channels(req: ServiceRequest) -> list[str]:
    """Where the resident asked to hear back: SMS to a mobile, a voice call
    (then SMS for what a call does not carry), or nowhere but the tracking
    page's inbox. Nothing once they stopped messages or their data is gone."""
    digits = "".join(ch for ch in req.contact_phone or "" if ch.isdigit())
    if req.anonymised_at or not digits or req.messages == "none":
        return []
    mobile = len(digits) == 11 and digits.startswith("1")
    sms = [f"sms://{digits}"] if mobile else []
    return [f"voice://{digits}", *sms] if req.messages == "call" else sms


def tell_resident(session, outbox, req: ServiceRequest, template: str, dedupe_key: str, **context) -> None:
    """A message to the resident: always in their in-app inbox (the tracking
    page), and by SMS or call when they opted in (notify picks the template
    each gateway has approved)."""
    outbox.emit(session, contract.NOTIFY_SEND, {
        "dedupe_key": dedupe_key, "recipient": f"resident:{req.id}", "language": req.language,
        "template": template, "channels": resident_channels(req),
        "context": {"tracking_code": req.tracking_code, "category": req.category,
                    "tracking_url": req.tracking_url(current_app.config["REQUESTS_URL"]), **context}})


def stop_messages(req: ServiceRequest) -> bool:
    """退订: the resident stops messages (the inbox stays)."""
    if req.messages == "none":
        return False
    req.messages = "none"
    req.record("messages_stopped", "resident")
    return True
