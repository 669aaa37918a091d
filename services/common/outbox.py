"""Transactional outbox (eShop's IntegrationEventLog, warehouse's
after-commit hook): an event is a row written in the same transaction as the
state change that causes it, and is sent to Redis only after that
transaction commits.

- A rollback produces no event (the row never existed).
- A failed publish (Redis down or frozen) leaves the row pending; the
  periodic relay sends it later. Nothing is lost; a message may go twice
  (crash between send and mark), which idempotent consumers absorb.
- Web processes publish from a thread of their own (BackgroundPublisher):
  the request returns right after its commit, and the "published" marks of
  a burst go to the database in one UPDATE. A process that dies with
  events still in that thread's queue loses nothing: they are rows, and
  the relay sends them after the grace period.
"""
from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
from datetime import datetime, timedelta

from sqlalchemy import JSON, Integer, String, delete, event, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from . import contract
from .clock import utcnow
from .db import UTCDateTime
from .queueing import publish

log = logging.getLogger(__name__)

# The after-commit publish normally gets there first; the relay leaves young
# rows alone so the two do not race to send the same message.
KEEP_PUBLISHED = timedelta(days=1)
RELAY_GRACE = timedelta(seconds=5)


class OutboxMixin:
    """Columns of a service's `outbox` table."""

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the envelope id
    task_name: Mapped[str] = mapped_column(String(100))
    envelope: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(200), nullable=True)


class BackgroundPublisher:
    """One thread per process that publishes committed events in order,
    up to BATCH at a time. Started on first use in each process (gunicorn
    forks its workers after loading the app, and threads do not survive a
    fork)."""

    BATCH = 200

    def __init__(self, outbox: "Outbox"):
        self.outbox = outbox
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.pid: int | None = None
        self.lock = threading.Lock()

    def submit(self, staged: list[tuple[str, dict]]) -> None:
        if self.pid != os.getpid():
            with self.lock:
                if self.pid != os.getpid():
                    self.queue = queue.SimpleQueue()  # a forked child starts empty
                    threading.Thread(target=self._run, name="outbox-publisher", daemon=True).start()
                    atexit.register(self.drain)
                    self.pid = os.getpid()
        self.queue.put(staged)

    def _take(self, first: list) -> list:
        batch = list(first)
        try:
            while len(batch) < self.BATCH:
                batch.extend(self.queue.get_nowait())
        except queue.Empty:
            pass
        return batch

    def _run(self) -> None:
        while True:
            batch = self._take(self.queue.get())
            try:
                self.outbox.publish_committed(batch)
            except Exception:  # the rows stay pending: the relay sends them
                log.exception("background publish failed", extra={"events": len(batch)})

    def drain(self) -> None:
        """At a graceful exit, send what is still queued (the relay would,
        a few seconds later)."""
        try:
            batch = self._take(self.queue.get_nowait())
        except queue.Empty:
            return
        try:
            self.outbox.publish_committed(batch)
        except Exception:
            log.warning("publish at exit failed; the relay sends the rest", extra={"events": len(batch)})


class Outbox:
    def __init__(self, model, database, celery_app, source: str, background: bool = False):
        self.model = model
        self.db = database
        self.celery = celery_app
        self.source = source
        self.publisher = BackgroundPublisher(self) if background else None
        event.listen(database.Session, "after_commit", self._after_commit)
        event.listen(database.Session, "after_rollback", self._after_rollback)

    def emit(self, session: Session, task_name: str, data: dict) -> str:
        """Stage an event in the caller's transaction; it goes out on commit."""
        env = contract.envelope(task_name, data, source=self.source)
        session.add(self.model(id=env["id"], task_name=task_name, envelope=env))
        session.info.setdefault("outbox_staged", []).append((task_name, env))
        return env["id"]

    def _after_commit(self, session: Session) -> None:
        staged = session.info.pop("outbox_staged", None)
        if staged and self.publisher is not None:
            self.publisher.submit(staged)
        elif staged:
            self.publish_committed(staged)

    def _after_rollback(self, session: Session) -> None:
        session.info.pop("outbox_staged", None)

    def publish_committed(self, staged: list[tuple[str, dict]]) -> int:
        """The hot path: the envelopes are at hand, so publish them without
        reading them back, then mark them sent in one UPDATE. Whatever fails
        stays pending for the relay."""
        sent, failed = [], None
        for task_name, env in staged:
            try:
                publish(self.celery, task_name, env)
            except Exception as exc:  # any broker failure: the relay sends it later
                log.warning("outbox publish failed", extra={"event_id": env["id"], "error": type(exc).__name__})
                failed = (env["id"], type(exc).__name__)
                break
            sent.append(env["id"])
        with self.db.engine.begin() as conn:
            if sent:
                conn.execute(update(self.model).where(self.model.id.in_(sent)).values(published_at=utcnow()))
            if failed:
                conn.execute(update(self.model).where(self.model.id == failed[0])
                             .values(attempts=self.model.attempts + 1, last_error=failed[1]))
        return len(sent)

    def relay(self, ids: list[str] | None = None, limit: int = 500, grace: timedelta = RELAY_GRACE) -> int:
        """Publish pending messages (the given ones, or all that are older
        than the grace period); stop at the first failure, since Redis is
        then most likely down for the rest too. Returns how many went out."""
        sent = 0
        with Session(self.db.engine) as session:
            query = select(self.model).where(self.model.published_at.is_(None))
            if ids is not None:
                query = query.where(self.model.id.in_(ids))
            else:
                query = query.where(self.model.created_at <= utcnow() - grace)
            query = query.order_by(self.model.created_at).limit(limit)
            if session.bind.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            for row in session.scalars(query).all():
                try:
                    publish(self.celery, row.task_name, row.envelope)
                except Exception as exc:  # any broker failure: keep the row, try later
                    row.attempts += 1
                    row.last_error = type(exc).__name__
                    log.warning("outbox publish failed", extra={"event_id": row.id, "error": type(exc).__name__})
                    break
                row.published_at = utcnow()
                sent += 1
            # A published event is of no more use to anyone, and it may carry
            # a resident's words or a link that is a key: kept a day, for
            # looking into a problem, then gone.
            session.execute(delete(self.model).where(self.model.published_at < utcnow() - KEEP_PUBLISHED))
            session.commit()
        return sent

    def pending(self) -> int:
        with Session(self.db.engine) as session:
            return session.scalar(
                select(func.count()).select_from(self.model).where(self.model.published_at.is_(None))
            )
