"""Idempotent consumers: the receiving side of the contract.

Every arriving message is validated against the contract; a malformed one
is recorded as dead and acknowledged (a poison message must not crash or
block the worker). A valid one is handled in one transaction together with a
`processed_message` row keyed by the envelope id, so the same message
handed out twice has one effect. Handler failures are retried with
exponential backoff and jitter, a bounded number of times, then recorded as
dead.
"""
from __future__ import annotations

import logging
import random
from datetime import datetime

import redis
from sqlalchemy import JSON, String, Text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from . import contract
from .clock import utcnow
from .db import UTCDateTime
from .queueing import redis_client

log = logging.getLogger(__name__)

MAX_RETRIES = 5
MAX_HANDOUTS = 5  # the same Celery message handed out this often: it is killing its worker


class Permanent(Exception):
    """A failure that retrying cannot fix (e.g. the message refers to
    something that does not exist): the message goes straight to dead."""


class ProcessedMessageMixin:
    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # envelope id: the dedupe key
    task_name: Mapped[str] = mapped_column(String(100))
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeadMessageMixin:
    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    task_name: Mapped[str] = mapped_column(String(100))
    error: Mapped[str] = mapped_column(Text)
    message: Mapped[dict | list | str | None] = mapped_column(JSON, nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def backoff(retries: int, base: float = 2.0, cap: float = 300.0) -> float:
    """Full jitter (AWS architecture blog): spreads retries of many failed
    messages instead of sending them back in lockstep."""
    return random.uniform(0, min(cap, base * 2**retries))


def consume(task, message, handler, *, db, processed, dead) -> str:
    """Run `handler(session, data, envelope)` once per envelope id.

    Returns "done", "duplicate" or "dead" (useful in tests and logs).
    """
    name = task.name
    try:
        env, data = contract.open_envelope(name, message)
    except contract.ContractError as exc:
        _bury(db, dead, name, message, f"contract: {exc.messages}")
        return "dead"
    if _handouts(task) > MAX_HANDOUTS:
        _bury(db, dead, name, message, f"handed to a worker more than {MAX_HANDOUTS} times without finishing")
        return "dead"
    message_id = str(env["id"])
    session = db.Session()
    try:
        session.add(processed(id=message_id, task_name=name))
        session.flush()
    except IntegrityError:
        session.rollback()
        log.info("duplicate message skipped", extra={"event_id": message_id, "task": name})
        return "duplicate"
    try:
        handler(session, data, env)
        session.commit()
    except IntegrityError as exc:
        # Another handout of the same message committed first, or a race
        # with a different message over the same row: look again later.
        session.rollback()
        if _seen(db, processed, message_id):
            return "duplicate"
        log.warning("handler conflict", extra={"event_id": message_id, "task": name, "error": type(exc.orig).__name__})
        return _retry_or_bury(task, db, dead, message, f"integrity error: {type(exc.orig).__name__}")
    except Permanent as exc:
        session.rollback()
        _bury(db, dead, name, message, f"permanent: {exc}")
        return "dead"
    except Exception as exc:
        session.rollback()
        log.exception("handler failed", extra={"event_id": message_id, "task": name})
        return _retry_or_bury(task, db, dead, message, f"{type(exc).__name__}: {exc}"[:1000])
    finally:
        db.Session.remove()
    return "done"


def _handouts(task) -> int:
    """How often this Celery message has been handed to a worker (its task
    id survives a handout again after a worker died; retries count
    separately); 1 when unknown. "Delivery" is notify's word for a
    notification on its way, so Celery's redeliveries are handouts here.

    Only handouts again are counted in Redis: kombu marks every message it
    puts back (a worker's child or main died, the visibility timeout
    passed, a worker gave it back at shutdown) as redelivered, so a first
    handout, nearly every task, is 1 without a round trip to Redis (an
    INCR and EXPIRE per task were 6-7% of each worker's CPU, py-spy)."""
    request = task.request
    task_id = getattr(request, "id", None)
    if not task_id or request.is_eager or not (getattr(request, "delivery_info", None) or {}).get("redelivered"):
        return 1
    try:
        key = f"linli:handouts:{task_id}:{request.retries}"
        count, _ = redis_client(task.app.conf.broker_url).pipeline(transaction=False) \
            .incr(key).expire(key, 86400).execute()
        return count + 1  # the first handout was not counted
    except redis.RedisError:
        return 1  # no count without Redis; the task came from Redis, so this is rare


def _seen(db, processed, message_id: str) -> bool:
    with db.Session() as s:
        return s.get(processed, message_id) is not None


def _retry_or_bury(task, db, dead, message, error: str) -> str:
    if task.request.retries >= MAX_RETRIES:
        _bury(db, dead, task.name, message, f"gave up after {MAX_RETRIES} retries: {error}")
        return "dead"
    # The retried message is logged by the worker like any other: by its
    # envelope id only, never its arguments (residents' words and rooms).
    message_id = message.get("id") if isinstance(message, dict) else None
    raise task.retry(countdown=backoff(task.request.retries), max_retries=MAX_RETRIES,
                     argsrepr=f"[{message_id}]", kwargsrepr="{}")


def _bury(db, dead, task_name: str, message, error: str) -> None:
    message_id = message.get("id") if isinstance(message, dict) else None
    log.error("message recorded as dead", extra={"event_id": message_id, "task": task_name, "error": error[:200]})
    session = db.Session()
    try:
        session.add(dead(message_id=str(message_id)[:64] if message_id else None, task_name=task_name,
                         error=error, message=message))
        session.commit()
    finally:
        db.Session.remove()
