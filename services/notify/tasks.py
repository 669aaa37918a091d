"""Notification's consumers: notification requests from the other
services; and from beat, the sweep that retries due deliveries (and
releases those that waited out quiet hours) and the outbox relay."""
from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from flask import current_app
from sqlalchemy import select, update

from services.common import contract
from services.common import extensions as ext
from services.common.inbox import consume

from . import delivery, gateways, messages, replies
from .models import DeadMessage, Delivery, Notification, ProcessedMessage, Recipient

log = logging.getLogger(__name__)


@shared_task(name=contract.NOTIFY_SEND, bind=True)
def send(self, message):
    db = ext.database()
    claimed: list[int] = []
    outcome = consume(self, message, lambda session, data, env: handle_send(session, data, env, claimed),
                      db=db, processed=ProcessedMessage, dead=DeadMessage)
    if outcome == "done" and claimed:
        # First try right away, on the claim taken with the notification;
        # failures wait for the sweep.
        delivery.attempt(db, ext.outbox(), current_app.config, claimed[0], claimed=True)
    return outcome


def handle_send(session, data, env, claimed: list | None = None) -> None:
    """Store the notification and its delivery. A delivery due now (no quiet
    hours) is created claimed, as delivery._claim would (status sending,
    leased), in the same transaction, and its id added to `claimed` for the
    first try right after the commit: one SELECT and one commit less than
    claiming it afterwards (py-spy, SQL count). Should the worker die before
    it sends, the sweep sends it when the lease runs out, as after any claim."""
    key = data["dedupe_key"]
    if session.scalar(select(Notification.id).where(Notification.dedupe_key == key)) is not None:
        return  # the same notification asked for again: a no-op
    recipient = (session.get(Recipient, data["recipient"])
                 or Recipient.new(data["recipient"], current_app.config["QUIET_HOURS"]))
    if data["channels"] is not None:
        recipient.channels = data["channels"]
    recipient.language = data["language"]
    session.add(recipient)
    session.flush()  # the recipient row first: notifications refer to it
    title, short, full = messages.render_for_inbox(data["template"], data["language"], data["context"])
    note = Notification(dedupe_key=key, recipient_key=recipient.key, template=data["template"],
                        language=data["language"], title=title, short_body=short, full_body=full,
                        urgent=data["urgent"], reply_to=data["reply_to"])
    session.add(note)
    outside = reachable_channels(recipient, data["template"])
    if outside:
        # Quiet hours hold SMS and calls as they hold every channel (urgent excepted).
        row = Delivery(notification=note, channels=outside,
                       next_attempt_at=delivery.first_attempt_at(recipient, data["urgent"], delivery.utcnow()))
        phones = [gateways.phone_of(url) for url in outside if gateways.is_gateway(url)]
        if phones:
            row.gateway_params = gateways.params_for(data["template"], data["language"], data["context"])
            row.phone_digest = replies.digest(current_app.config, phones[0])
        if messages.carries_key(data["template"]):
            # The text with its link, for the channel only, until the delivery is over.
            _, row.keyed_short, row.keyed_full = messages.render(data["template"], data["language"],
                                                                 data["context"])
        session.add(row)
        now = delivery.utcnow()
        if claimed is not None and row.next_attempt_at <= now:
            row.status = "sending"
            row.next_attempt_at = now + timedelta(seconds=current_app.config["DELIVERY_LEASE_SECONDS"])
            session.flush()
            claimed.append(row.id)


def reachable_channels(recipient: Recipient, template: str) -> list[str]:
    """The recipient's channels that carry this event: an SMS or a call only
    where the event has an approved template, and never to a recipient who
    opted out (退订); with none left, the inbox alone has the message."""
    return [url for url in recipient.channels
            if not gateways.is_gateway(url)
            or (not recipient.sms_opt_out and gateways.applies(current_app.config, url, template))]


@shared_task(name=contract.INBOX_READ, bind=True)
def inbox_read(self, message):
    return consume(self, message, handle_inbox_read, db=ext.database(),
                   processed=ProcessedMessage, dead=DeadMessage)


def handle_inbox_read(session, data, env) -> None:
    session.execute(update(Notification).where(
        Notification.recipient_key == data["recipient"], Notification.id <= data["up_to_id"],
        Notification.read_at.is_(None)).values(read_at=delivery.utcnow()))


@shared_task(name=contract.DELIVERY_RETRY, bind=True)
def retry_delivery(self, message):
    """The office asked, in the console, to try a dead delivery again."""
    db = ext.database()
    reopened = []

    def handle(session, data, env):
        row = session.get(Delivery, data["delivery_id"])
        if row is not None and delivery.reopen(row):
            reopened.append(row.id)
            log.info("delivery reopened by hand", extra={"delivery_id": row.id, "actor": data["actor"]})

    outcome = consume(self, message, handle, db=db, processed=ProcessedMessage, dead=DeadMessage)
    for delivery_id in reopened:
        delivery.attempt(db, ext.outbox(), current_app.config, delivery_id)
    return outcome


@shared_task(name=contract.RETRY_DELIVERIES)
def retry_deliveries():
    db, outbox = ext.database(), ext.outbox()
    return sum(1 for delivery_id in delivery.due(db) if delivery.attempt(db, outbox, current_app.config, delivery_id))


@shared_task(name=contract.RELAY_NOTIFY_OUTBOX)
def relay_outbox():
    return ext.outbox().relay()
