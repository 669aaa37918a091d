"""Intake's consumers: status changes reported by the matching service,
and the periodic outbox relay sent by beat."""
from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app

from services.common import contract
from services.common.inbox import Permanent, consume

from .models import DeadMessage, ProcessedMessage, ServiceRequest

log = logging.getLogger(__name__)


@shared_task(name=contract.STATUS_CHANGED, bind=True)
def status_changed(self, message):
    return consume(self, message, apply_status_change, db=current_app.extensions["db"],
                   processed=ProcessedMessage, dead=DeadMessage)


def apply_status_change(session, data, env) -> None:
    req = session.get(ServiceRequest, str(data["request_id"]))
    if req is None:
        raise Permanent("no such request")
    if not req.move_to(data["status"], actor=data["actor"], note=data["note"], event_at=env["occurred_at"]):
        log.info("stale status change ignored",
                 extra={"event_id": str(env["id"]), "from": req.status, "to": data["status"]})
        return
    if data["volunteer_name"]:
        req.volunteer_name = data["volunteer_name"]
    if data["status"] == "assigned":
        # The resident hears who is coming; the tracking page shows it too.
        current_app.extensions["outbox"].emit(session, contract.NOTIFY_SEND, {
            "dedupe_key": f"assigned:{req.id}:{env['id']}",
            "recipient": f"resident:{req.id}",
            "language": req.language,
            "template": "assigned",
            "context": {
                "tracking_code": req.tracking_code,
                "category": req.category,
                "volunteer_name": req.volunteer_name or "",
                "tracking_url": req.tracking_url(current_app.config["REQUESTS_URL"]),
            },
        })


@shared_task(name=contract.RELAY_REQUESTS_OUTBOX)
def relay_outbox():
    return current_app.extensions["outbox"].relay()
