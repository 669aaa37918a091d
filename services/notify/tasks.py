"""Notification's consumers: notification requests from the other
services, and the periodic sweep that retries due deliveries."""
from __future__ import annotations

from celery import shared_task
from flask import current_app
from sqlalchemy import select

from services.common import contract
from services.common.inbox import consume

from . import delivery, messages
from .models import DeadMessage, Delivery, Notification, ProcessedMessage, Recipient


@shared_task(name=contract.NOTIFY_SEND, bind=True)
def send(self, message):
    db = current_app.extensions["db"]
    outcome = consume(self, message, handle_send, db=db, processed=ProcessedMessage, dead=DeadMessage)
    if outcome == "done":
        # First try right away; failures wait for the retry sweep.
        key = message["data"]["dedupe_key"]
        with db.Session() as session:
            delivery_id = session.scalar(
                select(Delivery.id).join(Notification).where(Notification.dedupe_key == key))
        db.Session.remove()
        if delivery_id is not None:
            delivery.attempt(db, delivery_id)
    return outcome


def handle_send(session, data, env) -> None:
    key = data["dedupe_key"]
    if session.scalar(select(Notification.id).where(Notification.dedupe_key == key)) is not None:
        return  # the same notification asked for again: a no-op
    recipient = session.get(Recipient, data["recipient"]) or Recipient(key=data["recipient"])
    if data["channels"] is not None:
        recipient.channels = data["channels"]
    recipient.language = data["language"]
    session.add(recipient)
    session.flush()  # the recipient row first: notifications refer to it
    title, short, full = messages.render(data["template"], data["language"], data["context"])
    note = Notification(dedupe_key=key, recipient_key=recipient.key, template=data["template"],
                        language=data["language"], title=title, short_body=short, full_body=full,
                        urgent=data["urgent"])
    session.add(note)
    if recipient.channels:
        session.add(Delivery(notification=note, channels=list(recipient.channels)))


@shared_task(name=contract.RETRY_DELIVERIES)
def retry_deliveries():
    db = current_app.extensions["db"]
    return sum(1 for delivery_id in delivery.due(db) if delivery.attempt(db, delivery_id))
