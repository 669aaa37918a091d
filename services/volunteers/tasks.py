"""Matching's consumers: requests submitted by intake, and the periodic
outbox relay sent by beat."""
from __future__ import annotations

from celery import shared_task
from flask import current_app

from services.common import contract
from services.common.inbox import consume

from . import dispatch
from .models import DeadMessage, ProcessedMessage


@shared_task(name=contract.REQUEST_SUBMITTED, bind=True)
def request_submitted(self, message):
    return consume(self, message, handle_submitted, db=current_app.extensions["db"],
                   processed=ProcessedMessage, dead=DeadMessage)


def handle_submitted(session, data, env) -> None:
    dispatch.receive(session, current_app.extensions["outbox"], data, current_app.config["VOLUNTEERS_URL"])


@shared_task(name=contract.RELAY_VOLUNTEERS_OUTBOX)
def relay_outbox():
    return current_app.extensions["outbox"].relay()
