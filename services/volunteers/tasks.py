"""Matching's consumers: requests submitted and cancelled, residents'
feedback, staff actions and the office's changes to stations, sessions and
hours and time coins from the console (all from intake), delivery
failures (from notify), and the periodic jobs and outbox relay sent by
beat. Tasks are where matching's operations are committed: once per
message (the inbox's consume), once per digest, and a request at a time
for the sweep."""
from __future__ import annotations

from celery import shared_task
from flask import current_app

from services.common import contract
from services.common import extensions as ext
from services.common.inbox import consume
from services.common.queueing import redis_client

from . import jobs, registry, stations
from .dispatch import Dispatcher, dispatcher
from .models import DeadMessage, ProcessedMessage, ServiceRequest
from .timebank import TimeBank


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


@shared_task(name=contract.STATION_CHANGE, bind=True)
def station_change(self, message):
    return _consume(self, message, lambda session, data, env: stations.apply_change(session, data))


@shared_task(name=contract.HOURS_REVIEW, bind=True)
def hours_review(self, message):
    return _consume(self, message, lambda session, data, env: TimeBank(session).review(data))


@shared_task(name=contract.COINS_SPEND, bind=True)
def coins_spend(self, message):
    return _consume(self, message, lambda session, data, env: TimeBank(session, ext.clock().now()).spend(data))

@shared_task(name=contract.ROSTER_IMPORT, bind=True)
def roster_import(self, message):
    return _consume(self, message, lambda session, data, env: registry.import_rows(
        session, data, current_app.config["PHONE_DIGEST_KEY"], ext.clock().now()))


@shared_task(name=contract.DELIVERY_FAILED, bind=True)
def delivery_failed(self, message):
    return _consume(self, message, lambda session, data, env: dispatcher(session).delivery_failed(data))


@shared_task(name=contract.DAILY_DIGEST)
def daily_digest():
    db = ext.database()
    session = db.Session()
    try:
        sent = jobs.digest(dispatcher(session))
        session.commit()  # dedupe keys carry the date: a repeated run sends nothing twice
        return sent
    finally:
        db.Session.remove()


@shared_task(name=contract.SWEEP_DISPATCH)
def sweep():
    # One sweep at a time across all worker processes, or two could offer
    # the same waiting request to two volunteers.
    cfg = current_app.config
    lock = redis_client(cfg["REDIS_URL"]).lock("linli:volunteers:sweep", timeout=cfg["TASK_TIME_LIMIT"], blocking=False)
    if not lock.acquire():
        return "busy"
    db = ext.database()
    session = db.Session()
    try:
        return committed_sweep(dispatcher(session))
    finally:
        db.Session.remove()
        lock.release()


def committed_sweep(d: Dispatcher) -> dict:
    """The sweep, committed where it yields (a request at a time): how many
    of each step it did."""
    counts = dict.fromkeys(jobs.SWEEP_STEPS, 0)
    for step, done in jobs.sweep(d):
        d.session.commit()
        counts[step] += done
    return counts


@shared_task(name=contract.RELAY_VOLUNTEERS_OUTBOX)
def relay_outbox():
    return ext.outbox().relay()
