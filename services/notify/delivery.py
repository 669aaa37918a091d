"""Getting a notification out: one attempt at a time, with bounded retries
(exponential backoff, full jitter) per channel, falling back to the
recipient's next channel, and `dead` when none is left — then the service
that asked is told. Non-urgent messages wait out the recipient's quiet
hours. The in-app inbox copy exists regardless."""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update

from services.common import clock, contract
from services.common.clock import utcnow
from services.common.inbox import backoff

from . import channels, gateways
from .models import Delivery, Recipient

log = logging.getLogger(__name__)

ATTEMPTS_PER_CHANNEL = 3
RETRY_BASE_SECONDS = 5.0
RETRY_CAP_SECONDS = 600.0
DUE_STATUSES = ("queued", "failed", "sending")


def first_attempt_at(recipient: Recipient, urgent: bool, moment: datetime) -> datetime:
    """Now, or for a non-urgent message the end of the recipient's quiet hours."""
    if urgent:
        return moment
    return clock.quiet_until(moment, recipient.quiet_start, recipient.quiet_end) or moment


def _claim(session, delivery_id: int, now: datetime, lease: timedelta) -> bool:
    """Conditional UPDATE: two workers (the first try and the retry sweep, or
    a task handed out again) never send the same delivery at the same time."""
    return bool(session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status.in_(DUE_STATUSES), Delivery.next_attempt_at <= now)
        .values(status="sending", next_attempt_at=now + lease)
    ).rowcount)


def attempt(db, outbox, config, delivery_id: int, claimed: bool = False) -> str | None:
    """Try a due delivery once; returns its new status (None if not due).
    `config` is notify's configuration (the channels' settings, the lease).
    `claimed`: the caller committed the claim already (tasks.handle_send)."""
    now = utcnow()
    session = db.Session.session_factory()  # the outbox's after-commit publish applies
    try:
        if not claimed:
            if not _claim(session, delivery_id, now, timedelta(seconds=config["DELIVERY_LEASE_SECONDS"])):
                session.rollback()
                return None
            session.commit()
        delivery = session.get(Delivery, delivery_id)
        note = delivery.notification
        url = delivery.channels[delivery.channel_index]
        if url.startswith(("mailto:", "mailtos:")):
            body = delivery.keyed_full or note.full_body
        else:
            body = delivery.keyed_short or note.short_body
        # 退订 after the message was queued (held by quiet hours, or waiting
        # for a retry): nothing more goes to the phone.
        opted_out = gateways.is_gateway(url) and session.get(Recipient, note.recipient_key).sms_opt_out
        if opted_out:
            error = gateways.Refusal("not sent: the recipient opted out of SMS and calls")
        elif gateways.is_gateway(url):
            error = gateways.send(config, url, note.template, delivery.gateway_params or [])
        else:
            error = channels.send(config, url, note.title, body, dedupe_key=note.dedupe_key)
        if not opted_out:
            delivery.attempts += 1
            delivery.channel_tries += 1
        if error is None:
            delivery.status, delivery.sent_at, delivery.last_error = "sent", utcnow(), None
        else:
            delivery.last_error = error
            tries_here = delivery.channel_tries
            # A gateway's refusal (rate limit, invalid or blacklisted number,
            # wrong key) is not mended by trying again: the next channel.
            if tries_here >= ATTEMPTS_PER_CHANNEL or getattr(error, "permanent", False):
                delivery.channel_index += 1
                delivery.channel_tries = 0
            if delivery.channel_index >= len(delivery.channels):
                delivery.status = "dead"
                if not opted_out:
                    _report_dead(session, outbox, note, url, error)
            else:
                delivery.status = "failed"
                retry_in = backoff(tries_here % ATTEMPTS_PER_CHANNEL, RETRY_BASE_SECONDS, RETRY_CAP_SECONDS)
                delivery.next_attempt_at = utcnow() + timedelta(seconds=retry_in)
        if delivery.status in ("sent", "dead"):
            # A link that is a key is kept no longer than it takes to send it
            # (a dead one, retried by hand, goes out without it).
            delivery.keyed_short = delivery.keyed_full = None
        session.commit()
        # A delivery sent is recorded in its row (sent_at); the line is for
        # debugging. One that failed or died stays in the log.
        log.log(logging.DEBUG if delivery.status == "sent" else logging.INFO, "delivery attempt",
                extra={"delivery_id": delivery.id, "status": delivery.status, "attempts": delivery.attempts,
                       "channel_index": delivery.channel_index, "error": error})
        return delivery.status
    finally:
        session.close()


def _report_dead(session, outbox, note, url: str, error: str) -> None:
    """Tell whoever must act: the service that asked (reply_to), and for a
    resident, intake — their grid leader sees that they could not be
    reached (the message stays in their inbox)."""
    if note.reply_to:
        outbox.emit(session, contract.DELIVERY_FAILED, {
            "dedupe_key": note.dedupe_key, "recipient": note.recipient_key, "template": note.template,
            "error": error})
    kind, _, request_id = note.recipient_key.partition(":")
    if kind == "resident":
        try:
            uuid.UUID(request_id)
        except ValueError:
            log.warning("dead delivery to a resident without a request id", extra={"recipient": note.recipient_key})
            return
        outbox.emit(session, contract.RESIDENT_UNREACHABLE, {
            "request_id": request_id, "template": note.template, "channel": url.partition("://")[0].lower(),
            "error": str(error)[:300]})


def due(db, limit: int = 50) -> list[int]:
    with db.Session.session_factory() as session:
        return list(session.scalars(
            select(Delivery.id)
            .where(Delivery.status.in_(DUE_STATUSES), Delivery.next_attempt_at <= utcnow())
            .order_by(Delivery.next_attempt_at).limit(limit)
        ))



def reopen(row: Delivery) -> bool:
    """A dead delivery tried again by hand, from the recipient's first
    channel (the caller commits, then attempts); False if it is not dead."""
    if row.status != "dead":
        return False
    row.status, row.channel_index, row.attempts, row.channel_tries = "queued", 0, 0, 0
    row.next_attempt_at = utcnow()
    return True
