"""The community service's consumers: the office's register changes and
register files from the console (intake); visit plans set in the console
and visitors' outcomes (from the console through intake, from the volunteer
portal through matching); and from beat the visits' timer (visits coming
due, missed check-ins, overdue visits) and the outbox relay. Each change is
carried out once (the inbox's consume, and its change id); each task
commits once."""
from __future__ import annotations

from celery import shared_task
from flask import current_app

from services.common import contract
from services.common import extensions as ext
from services.common.inbox import consume

from . import register
from .models import DeadMessage, ProcessedMessage, RegisterChange
from .visits import Visits


def _consume(task, message, handler):
    return consume(task, message, handler, db=ext.database(), processed=ProcessedMessage, dead=DeadMessage)


def visits(session) -> Visits:
    return Visits(session, ext.outbox(), current_app.config)


@shared_task(name=contract.VISIT_OUTCOME, bind=True)
def visit_outcome(self, message):
    return _consume(self, message, lambda session, data, env: visits(session).record(
        int(data["visit_ref"].split(":", 1)[1]), data["outcome"], data["note"], data["actor"]))


@shared_task(name=contract.CHECKIN_REPLIED, bind=True)
def checkin_replied(self, message):
    """报平安 by SMS reply (notify read it)."""
    return _consume(self, message, lambda session, data, env: visits(session).check_in_by_reply(
        data["plan_id"], data["on"]))


@shared_task(name=contract.VISIT_PLAN, bind=True)
def visit_plan(self, message):
    return _consume(self, message, handle_visit_plan)


def handle_visit_plan(session, data, env) -> None:
    change_id = str(data["change_id"])
    if session.get(RegisterChange, change_id) is not None:
        return  # the same change handed over again
    _plan, errors = visits(session).set_plan(data, register.claims_of(data))
    session.add(RegisterChange(change_id=change_id, kind="visit_plan", outcome="refused" if errors else "applied",
                               detail=errors, actor=data["actor"], resident_id=data["resident_id"]))


@shared_task(name=contract.VISITS_DUE)
def visits_due():
    """One tick: the morning check-in texts, visits coming due, then missed
    check-ins, then overdue visits, each committed on its own so that one failing step does not
    hold back the others."""
    db = ext.database()
    counts = {}
    try:
        for step in ("morning_texts", "come_due", "missed_checkins", "escalate_overdue"):
            session = db.Session()
            counts[step] = getattr(visits(session), step)()
            session.commit()
    finally:
        db.Session.remove()
    return counts


@shared_task(name=contract.RELAY_COMMUNITY_OUTBOX)
def relay_outbox():
    return ext.outbox().relay()


@shared_task(name=contract.REGISTER_CHANGE, bind=True)
def register_change(self, message):
    return _consume(self, message, lambda session, data, env: register.apply_change(
        session, data, current_app.config["PHONE_DIGEST_KEY"], ext.clock().now()))


@shared_task(name=contract.REGISTER_IMPORT, bind=True)
def register_import(self, message):
    return _consume(self, message, lambda session, data, env: register.import_rows(
        session, data, current_app.config["PHONE_DIGEST_KEY"], ext.clock().now()))
