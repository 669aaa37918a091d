"""Getting a notification out: one attempt at a time through Apprise, with
bounded retries (exponential backoff, full jitter) per channel, falling back
to the recipient's next channel, and `dead` when none is left. The in-app
inbox copy exists regardless."""
from __future__ import annotations

import logging
from datetime import timedelta

import apprise
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from services.common.db import utcnow
from services.common.inbox import backoff

from .models import Delivery

log = logging.getLogger(__name__)
# Apprise logs target URLs at INFO and DEBUG; channel URLs are secrets.
logging.getLogger("apprise").setLevel(logging.WARNING)

ATTEMPTS_PER_CHANNEL = 3
LEASE = timedelta(seconds=90)  # a worker that died mid-send loses its claim after this
RETRY_BASE_SECONDS = 5.0
RETRY_CAP_SECONDS = 600.0
DUE_STATUSES = ("queued", "failed", "sending")


def send(url: str, title: str, body: str) -> str | None:
    """One try on one channel; returns the error, or None when it went out."""
    sender = apprise.Apprise()
    if not sender.add(url):
        return "channel URL not understood"
    if sender.notify(title=title, body=body):
        return None
    return "channel refused or unreachable"


def _claim(session: Session, delivery_id: int) -> bool:
    """Conditional UPDATE: two workers (the first try and the retry sweep, or
    a redelivered task) never send the same delivery at the same time."""
    now = utcnow()
    return bool(session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status.in_(DUE_STATUSES), Delivery.next_attempt_at <= now)
        .values(status="sending", next_attempt_at=now + LEASE)
    ).rowcount)


def attempt(db, delivery_id: int) -> str | None:
    """Try a due delivery once; returns its new status (None if not due)."""
    with Session(db.engine) as session:
        if not _claim(session, delivery_id):
            session.rollback()
            return None
        session.commit()
        delivery = session.get(Delivery, delivery_id)
        note = delivery.notification
        url = delivery.channels[delivery.channel_index]
        body = note.full_body if url.startswith(("mailto:", "mailtos:")) else note.short_body
        error = send(url, note.title, body)
        delivery.attempts += 1
        if error is None:
            delivery.status, delivery.sent_at, delivery.last_error = "sent", utcnow(), None
        else:
            delivery.last_error = error
            tries_here = delivery.attempts - delivery.channel_index * ATTEMPTS_PER_CHANNEL
            if tries_here >= ATTEMPTS_PER_CHANNEL:
                delivery.channel_index += 1
            if delivery.channel_index >= len(delivery.channels):
                delivery.status = "dead"
            else:
                delivery.status = "failed"
                retry_in = backoff(tries_here % ATTEMPTS_PER_CHANNEL, RETRY_BASE_SECONDS, RETRY_CAP_SECONDS)
                delivery.next_attempt_at = utcnow() + timedelta(seconds=retry_in)
        session.commit()
        log.info("delivery attempt", extra={"delivery_id": delivery.id, "status": delivery.status,
                                            "attempts": delivery.attempts, "channel_index": delivery.channel_index})
        return delivery.status


def due(db, limit: int = 50) -> list[int]:
    with Session(db.engine) as session:
        return list(session.scalars(
            select(Delivery.id)
            .where(Delivery.status.in_(DUE_STATUSES), Delivery.next_attempt_at <= utcnow())
            .order_by(Delivery.next_attempt_at).limit(limit)
        ))
