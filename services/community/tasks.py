"""The community service's consumers: the office's register changes and
register files from the console (intake), and from beat the outbox relay.
Each change is carried out once (the inbox's consume, and its change id)."""
from __future__ import annotations

from celery import shared_task
from flask import current_app

from services.common import contract
from services.common import extensions as ext
from services.common.inbox import consume

from . import register
from .models import DeadMessage, ProcessedMessage


def _consume(task, message, handler):
    return consume(task, message, handler, db=ext.database(), processed=ProcessedMessage, dead=DeadMessage)


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
