"""Matching's consumers: requests submitted and cancelled, residents'
feedback and staff actions from the console (all from intake), and the periodic sweep and outbox relay sent by
beat."""
from __future__ import annotations

from celery import shared_task
from flask import current_app

from services.common import contract
from services.common import extensions as ext
from services.common.inbox import consume
from services.common.queueing import TASK_TIME_LIMIT, redis_client

from .dispatch import dispatcher
from .models import DeadMessage, ProcessedMessage, ServiceRequest


def _consume(task, message, handler):
    return consume(task, message, handler, db=ext.database(),
                   processed=ProcessedMessage, dead=DeadMessage)


@shared_task(name=contract.REQUEST_SUBMITTED, bind=True)
def request_submitted(self, message):
    return _consume(self, message, lambda session, data, env: dispatcher(session).receive(data))


@shared_task(name=contract.REQUEST_CANCELLED, bind=True)
def request_cancelled(self, message):
    return _consume(self, message, handle_cancelled)


def handle_cancelled(session, data, env) -> None:
    req = session.get(ServiceRequest, str(data["request_id"]))
    if req is None:
        raise LookupError("request not received yet")  # retried: the submission may still be on its way
    dispatcher(session).cancel(req, actor=data["actor"], reason=data["reason"])


@shared_task(name=contract.FEEDBACK_RECEIVED, bind=True)
def feedback_received(self, message):
    return _consume(self, message, lambda session, data, env: dispatcher(session).feedback(
        str(data["request_id"]), data["rating"], data["thanks"], data["comment"]))


@shared_task(name=contract.STAFF_ACTION, bind=True)
def staff_action(self, message):
    return _consume(self, message, lambda session, data, env: dispatcher(session).staff_action(data))


@shared_task(name=contract.DELIVERY_FAILED, bind=True)
def delivery_failed(self, message):
    return _consume(self, message, lambda session, data, env: dispatcher(session).delivery_failed(data))


@shared_task(name=contract.DAILY_DIGEST)
def daily_digest():
    db = ext.database()
    session = db.Session()
    try:
        sent = dispatcher(session).digest()
        session.commit()  # dedupe keys carry the date: a repeated run sends nothing twice
        return sent
    finally:
        db.Session.remove()


@shared_task(name=contract.SWEEP_DISPATCH)
def sweep():
    # One sweep at a time across all worker processes, or two could offer
    # the same waiting request to two volunteers.
    lock = redis_client(current_app.config["REDIS_URL"]).lock("linli:volunteers:sweep", timeout=TASK_TIME_LIMIT,
                                                              blocking=False)
    if not lock.acquire():
        return "busy"
    db = ext.database()
    session = db.Session()
    try:
        counts = dispatcher(session).sweep()
        session.commit()
        return counts
    finally:
        db.Session.remove()
        lock.release()


@shared_task(name=contract.RELAY_VOLUNTEERS_OUTBOX)
def relay_outbox():
    return ext.outbox().relay()
