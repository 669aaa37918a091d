"""Intake's consumers: status changes and refused staff actions reported by
the matching service, and the community service's programme requests
(visits); beat's timers: the outbox relay, the follow-up (回访) the day
after completion, and the retention job."""
from __future__ import annotations

import logging
from datetime import timedelta
from itertools import takewhile

from babel.dates import format_datetime
from celery import shared_task
from flask import current_app
from sqlalchemy import select

from services.common import contract, workdays
from services.common import extensions as ext
from services.common.clock import SHANGHAI, utcnow
from services.common.inbox import Permanent, consume

from . import calls, operations
from .models import RESIDENT_CHANNELS, DeadMessage, ProcessedMessage, ServiceRequest
from .operations import anonymise_expired, resend_unanswered

log = logging.getLogger(__name__)

# Told to the resident after these changes (the tracking page shows all).
RESIDENT_TEMPLATES = {"assigned": "assigned", "completed": "completed"}


@shared_task(name=contract.STATUS_CHANGED, bind=True)
def status_changed(self, message):
    return consume(self, message, apply_status_change, db=ext.database(),
                   processed=ProcessedMessage, dead=DeadMessage)


def appointment_text(req: ServiceRequest) -> str:
    if req.appointment_at is None:
        return ""
    pattern, locale = ("EEE d MMM HH:mm", "en") if req.language == "en" else ("M月d日 EEE HH:mm", "zh_CN")
    return format_datetime(req.appointment_at, pattern, tzinfo=SHANGHAI, locale=locale)


def apply_status_change(session, data, env) -> None:
    req = session.get(ServiceRequest, str(data["request_id"]))
    if req is None:
        raise Permanent("no such request")
    if data["status"] == req.status and not data["volunteer_name"] and not data["appointment_at"]:
        return  # matching retelling what we know (intake asked again): nothing new for the timeline
    if not req.move_to(data["status"], actor=data["actor"], note=data["note"], event_at=env["occurred_at"]):
        log.info("stale status change ignored",
                 extra={"event_id": str(env["id"]), "from": req.status, "to": data["status"]})
        return
    if data["volunteer_name"]:
        req.volunteer_name = data["volunteer_name"]
    if data["appointment_at"]:
        req.appointment_at, req.place = data["appointment_at"], data["place"]
    template = RESIDENT_TEMPLATES.get(data["status"])
    if template and req.channel in RESIDENT_CHANNELS:
        operations.tell_resident(session, ext.outbox(), req, template, f"{template}:{req.id}:{env['id']}",
                                 volunteer_name=req.volunteer_name or "", appointment=appointment_text(req),
                                 place=req.place or "")


@shared_task(name=contract.PROGRAMME_REQUEST, bind=True)
def programme_request(self, message):
    return consume(self, message, lambda session, data, env: operations.submit_programme(
        session, ext.outbox(), data, current_app.config["PHONE_DIGEST_KEY"]),
        db=ext.database(), processed=ProcessedMessage, dead=DeadMessage)


@shared_task(name=contract.RELAY_REQUESTS_OUTBOX)
def relay_outbox():
    """Relay what is pending, and send again what matching never answered."""
    outbox = ext.outbox()
    sent = outbox.relay()
    resent = _periodic(lambda session: resend_unanswered(
        session, outbox, current_app.config["PHONE_DIGEST_KEY"],
        timedelta(seconds=current_app.config["RESEND_AFTER_SECONDS"])))
    return {"relayed": sent, "resent": resent}


@shared_task(name=contract.STAFF_ACTION_REFUSED, bind=True)
def staff_action_refused(self, message):
    return consume(self, message, record_refusal, db=ext.database(),
                   processed=ProcessedMessage, dead=DeadMessage)


def record_refusal(session, data, env) -> None:
    """The console asked, matching could not (the volunteer is full or
    inactive, the request closed): the timeline says so to the staff."""
    req = session.get(ServiceRequest, str(data["request_id"]))
    if req is None:
        raise Permanent("no such request")
    req.record(f"{data['action']}_refused", data["actor"], note=data["reason"])


@shared_task(name=contract.RESIDENT_UNREACHABLE, bind=True)
def resident_unreachable(self, message):
    return consume(self, message, record_unreachable, db=ext.database(),
                   processed=ProcessedMessage, dead=DeadMessage)


def record_unreachable(session, data, env) -> None:
    """Notify could not reach the resident (a dead SMS or call; the message
    is in their inbox on the tracking page): the timeline says so, and the
    console's request page shows it to the grid leader, who may phone."""
    req = session.get(ServiceRequest, str(data["request_id"]))
    if req is None:
        raise Permanent("no such request")
    req.record("resident_unreachable", "notify", note=f"{data['template']} ({data['channel']}): {data['error']}"[:500])


def _periodic(job):
    db = ext.database()
    session = db.Session()
    try:
        done = job(session)
        session.commit()
        return done
    finally:
        db.Session.remove()


@shared_task(name=contract.FOLLOW_UP)
def follow_up():
    """The day after completion the resident is asked to confirm and rate
    (回访); the console lists the same requests for a phone call. A
    follow-up that would fall on a holiday or a weekend waits for the next
    working day (services.common.workdays)."""
    def job(session):
        now, after = utcnow(), timedelta(hours=current_app.config["FOLLOW_UP_AFTER_HOURS"])
        cal = workdays.calendar()
        candidates = session.scalars(select(ServiceRequest).where(
            ServiceRequest.status.in_(("completed", "closed")), ServiceRequest.completed_at <= now - after,
            ServiceRequest.follow_up_sent_at.is_(None), ServiceRequest.anonymised_at.is_(None),
            # A programme's visit is followed up by the programme, not by asking the resident to rate it.
            ServiceRequest.channel.in_(RESIDENT_CHANNELS)).order_by(ServiceRequest.completed_at).limit(200)).all()
        # Due times grow with completion times, so the due ones come first.
        due = list(takewhile(lambda req: cal.on_working_day(req.completed_at + after) <= now, candidates))
        for req in due:
            req.follow_up_sent_at = utcnow()
            if req.feedback is not None:
                continue  # the resident rated already
            operations.tell_resident(session, ext.outbox(), req, "follow_up", f"follow_up:{req.id}")
        return len(due)
    return {"follow_ups": _periodic(job)}


@shared_task(name=contract.RETENTION)
def retention():
    """Anonymise residents' data of requests finished RETENTION_DAYS ago,
    and callers' numbers and names in the call log as old."""
    days = current_app.config["RETENTION_DAYS"]
    count = _periodic(lambda session: anonymise_expired(session, days, utcnow()))
    call_count = _periodic(lambda session: calls.anonymise_expired(session, days, utcnow()))
    log.info("retention run", extra={"anonymised": count, "calls_anonymised": call_count, "days": days})
    return {"anonymised": count}


@shared_task(name=contract.RESIDENT_REPLIED, bind=True)
def resident_replied(self, message):
    return consume(self, message, apply_reply, db=ext.database(), processed=ProcessedMessage, dead=DeadMessage)


# A reply to the 回访 text is the follow-up itself: "1" is 满意 (the top of
# the office's three-level scale, 5/5), "2" is not solved (reopens, as on the
# tracking page; 3/5, since it says nothing against the volunteer).
REPLY_FEEDBACK = {"satisfied": {"rating": 5, "resolved": True}, "not_solved": {"rating": 3, "resolved": False}}


def apply_reply(session, data, env) -> None:
    """What the resident answered by SMS (notify read it; the text itself
    never travels): the follow-up, or 退订."""
    req = session.get(ServiceRequest, str(data["request_id"]))
    if req is None:
        raise Permanent("no such request")
    if data["answer"] == "stop":
        operations.stop_messages(req)
        return
    if operations.give_feedback(session, ext.outbox(), req, {**REPLY_FEEDBACK[data["answer"]], "thanks": False,
                                                             "comment": ""}):
        req.record(f"sms_reply_{data['answer']}", "resident")
