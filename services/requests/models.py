"""Intake's data: service requests (服务请求), their status history, the
buildings residents live in, and the messaging tables (outbox, processed,
dead)."""
from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, or_, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from services.common import contract
from services.common.db import UTCDateTime, utcnow
from services.common.inbox import DeadMessageMixin, ProcessedMessageMixin
from services.common.outbox import OutboxMixin


class Base(DeclarativeBase):
    pass


class Building(Base):
    """A building (幢) of the community, with its stairwells (单元)."""

    __tablename__ = "building"
    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(32))
    grid: Mapped[str] = mapped_column(String(16), index=True)
    units: Mapped[list] = mapped_column(JSON)


# Which status may follow which; anything else is refused.
TRANSITIONS = {
    "submitted": {"matching", "offered", "assigned", "escalated", "cancelled"},
    "matching": {"offered", "assigned", "escalated", "cancelled"},
    "offered": {"matching", "offered", "assigned", "escalated", "cancelled"},
    "assigned": {"in_progress", "completed", "offered", "matching", "escalated", "cancelled"},
    "in_progress": {"completed", "escalated", "cancelled"},
    "completed": {"closed", "matching"},
    "escalated": {"matching", "offered", "assigned", "closed", "cancelled"},
    "closed": set(),
    "cancelled": set(),
}

# No 0/O, 1/I/L: a resident may read the code aloud over the phone.
TRACKING_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
TRACKING_LENGTH = 12  # 31**12 ≈ 2**59: unguessable


def new_tracking_code() -> str:
    return "".join(secrets.choice(TRACKING_ALPHABET) for _ in range(TRACKING_LENGTH))


def normalise_tracking_code(code: str) -> str:
    return code.replace("-", "").replace(" ", "").upper()


class ServiceRequest(Base):
    """A resident's call for help (服务请求), from the form, the API or staff."""

    __tablename__ = "service_request"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    tracking_code: Mapped[str] = mapped_column(String(16), unique=True, default=new_tracking_code)
    category: Mapped[str] = mapped_column(String(32), index=True)
    description: Mapped[str] = mapped_column(Text)
    building_code: Mapped[str] = mapped_column(ForeignKey("building.code"), index=True)
    unit: Mapped[str | None] = mapped_column(String(8), nullable=True)
    room: Mapped[str] = mapped_column(String(8))
    contact_name: Mapped[str] = mapped_column(String(64))
    contact_phone: Mapped[str] = mapped_column(String(20))
    mode: Mapped[str] = mapped_column(String(8), default="home")
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    urgency: Mapped[str] = mapped_column(String(8), default="normal")
    elderly: Mapped[bool] = mapped_column(Boolean, default=False)  # over 80: dispatched first when scarce
    disability: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_at: Mapped[datetime] = mapped_column(UTCDateTime)
    channel: Mapped[str] = mapped_column(String(8))  # web, api, open311
    language: Mapped[str] = mapped_column(String(8), default="zh-CN")  # for messages to the resident
    status: Mapped[str] = mapped_column(String(16), default="submitted", index=True)
    volunteer_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # When the event behind the current status happened (its occurred_at):
    # an older event arriving late must not undo a newer one.
    status_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When request.submitted was last sent again because matching never answered.
    resent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A station booking: when and where to come.
    appointment_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    place: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    building: Mapped[Building] = relationship()
    feedback: Mapped[Feedback | None] = relationship(back_populates="request", uselist=False)
    history: Mapped[list[StatusChange]] = relationship(
        back_populates="request", order_by="StatusChange.id", cascade="all, delete-orphan"
    )

    @property
    def masked_phone(self) -> str:
        return contract.mask_phone(self.contact_phone)

    def tracking_url(self, base_url: str) -> str:
        return f"{base_url}/track/{self.tracking_code}"

    def move_to(self, status: str, actor: str, note: str = "", event_at: datetime | None = None) -> bool:
        """Record a transition; refuse (and return False) one that the
        lifecycle does not allow from the current status, or one reported
        by an event older than the one behind the current status (events
        can arrive out of order when several workers consume)."""
        if status not in TRANSITIONS[self.status]:
            return False
        if event_at and self.status_event_at and event_at < self.status_event_at:
            return False
        self.status = status
        self.status_event_at = event_at or self.status_event_at
        self.history.append(StatusChange(status=status, actor=actor, note=note, at=utcnow()))
        return True


class StatusChange(Base):
    """One line of a request's timeline: when, what, who, why."""

    __tablename__ = "status_change"
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("service_request.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(String(500), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    request: Mapped[ServiceRequest] = relationship(back_populates="history")


class Feedback(Base):
    """The resident's word after completion (回访): thanks, a rating, a comment."""

    __tablename__ = "feedback"
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("service_request.id"), unique=True)
    rating: Mapped[int] = mapped_column(Integer)
    thanks: Mapped[bool] = mapped_column(Boolean, default=False)
    comment: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    request: Mapped[ServiceRequest] = relationship(back_populates="feedback")


class Open311Key(Base):
    """An API key for posting through Open311, issued by staff; only its hash is kept."""

    __tablename__ = "open311_key"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class OutboxMessage(OutboxMixin, Base):
    __tablename__ = "outbox"


class ProcessedMessage(ProcessedMessageMixin, Base):
    __tablename__ = "processed_message"


class DeadMessage(DeadMessageMixin, Base):
    __tablename__ = "dead_message"


def submit(session, outbox, data: dict, channel: str, language: str, digest_key: str) -> ServiceRequest:
    """The one intake path (web form, JSON API): store the request, its
    first timeline entry and the `request.submitted` event together."""
    req = ServiceRequest(
        category=data["category"],
        description=data["description"],
        building_code=data["building"],
        unit=data.get("unit"),
        room=data["room"],
        contact_name=data["contact_name"],
        contact_phone=data["contact_phone"],
        mode=data["mode"],
        window_start=data.get("window_start"),
        window_end=data.get("window_end"),
        urgency=data["urgency"],
        elderly=data["elderly"],
        disability=data["disability"],
        consent_at=utcnow(),
        channel=channel,
        language=language,
        status="submitted",
    )
    session.add(req)
    req.history.append(StatusChange(status="submitted", actor=channel, note="", at=utcnow()))
    session.flush()
    emit_submitted(session, outbox, req, digest_key)
    return req


def emit_submitted(session, outbox, req: ServiceRequest, digest_key: str) -> None:
    outbox.emit(session, contract.REQUEST_SUBMITTED, {
        "request_id": req.id,
        "category": req.category,
        "summary": req.description,
        "building": req.building_code,
        "unit": req.unit,
        "masked_phone": req.masked_phone,
        "mode": req.mode,
        "window_start": req.window_start,
        "window_end": req.window_end,
        "urgency": req.urgency,
        "elderly": req.elderly,
        "disability": req.disability,
        "requester_digest": contract.phone_digest(req.contact_phone, digest_key),
    })


def resend_unanswered(session, outbox, digest_key: str, after: timedelta) -> int:
    """A broker can lose a message it had already accepted (Redis hands it to
    a worker that is killed before the delivery is recorded; a restart at the
    wrong moment). Matching answers every request with a status change, so a
    request still `submitted` after a while is sent again — under a new
    envelope; matching receives a request once by its id."""
    cutoff = utcnow() - after
    stale = session.scalars(select(ServiceRequest).where(
        ServiceRequest.status == "submitted", ServiceRequest.created_at <= cutoff,
        or_(ServiceRequest.resent_at.is_(None), ServiceRequest.resent_at <= cutoff)).limit(200)).all()
    for req in stale:
        emit_submitted(session, outbox, req, digest_key)
        req.resent_at = utcnow()
    return len(stale)


FINAL = ("completed", "closed", "cancelled")


def cancel(session, outbox, req: ServiceRequest, actor: str, reason: str) -> bool:
    """Withdrawn by the resident (tracking code) or staff: matching then
    withdraws offers and frees the volunteer."""
    if req.status in FINAL or not req.move_to("cancelled", actor=actor, note=reason):
        return False
    outbox.emit(session, contract.REQUEST_CANCELLED, {"request_id": req.id, "actor": actor, "reason": reason})
    return True


def give_feedback(session, outbox, req: ServiceRequest, data: dict) -> bool:
    """Once, after completion; it reaches the volunteer and feeds their rating."""
    if req.status not in ("completed", "closed") or req.feedback is not None:
        return False
    session.add(Feedback(request=req, rating=data["rating"], thanks=data["thanks"], comment=data["comment"]))
    outbox.emit(session, contract.FEEDBACK_RECEIVED, {"request_id": req.id, **data})
    return True
