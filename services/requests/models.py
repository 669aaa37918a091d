"""Intake's data: service requests (服务请求), their status history, the
buildings residents live in, and the messaging tables (outbox, processed,
dead)."""
from __future__ import annotations

import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, and_, or_, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from services.common import contract
from services.common.db import UTCDateTime, utcnow
from services.common.inbox import DeadMessageMixin, ProcessedMessageMixin
from services.common.outbox import OutboxMixin

from . import hotline


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
    "submitted": {"matching", "offered", "assigned", "escalated", "cancelled", "closed"},
    "matching": {"offered", "assigned", "escalated", "cancelled", "closed"},
    "offered": {"matching", "offered", "assigned", "escalated", "cancelled", "closed"},
    "assigned": {"in_progress", "completed", "offered", "matching", "escalated", "cancelled"},
    "in_progress": {"completed", "escalated", "cancelled"},
    "completed": {"closed", "matching", "escalated"},  # escalated: the resident was not satisfied
    "escalated": {"matching", "offered", "assigned", "closed", "cancelled"},
    "closed": {"escalated"},  # only when the resident's follow-up reopens it
    "cancelled": set(),
}

# No 0/O, 1/I/L: a resident may read the code aloud over the phone.
TRACKING_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
TRACKING_LENGTH = 12  # 31**12 ≈ 2**59: unguessable


def new_tracking_code() -> str:
    return "".join(secrets.choice(TRACKING_ALPHABET) for _ in range(TRACKING_LENGTH))


def normalise_tracking_code(code: str) -> str:
    return code.replace("-", "").replace(" ", "").upper()


# The id Open311 partners and the public feed see: random, so that it tells
# nothing about the internal UUID, the tracking code or how many requests a
# building made; lower-case with a prefix, so that nobody mistakes it for a
# tracking code. 32**10 = 2**50: collisions are negligible for a district.
PUBLIC_ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, lower case
PUBLIC_ID_LENGTH = 10


def new_public_id() -> str:
    return "LL-" + "".join(secrets.choice(PUBLIC_ID_ALPHABET) for _ in range(PUBLIC_ID_LENGTH))


# Channels on which a resident (or staff or a partner for them) asks for
# help. Anything else (a programme's own visits, say) is not a resident's
# request and stays out of public feeds; see open311._publicly_listed.
RESIDENT_CHANNELS = ("web", "api", "open311", "staff")


# Timeline entries other than status changes (event None) that the resident
# sees; the rest are the office's internal steps.
PUBLIC_EVENTS = ("extended",)


class ServiceRequest(Base):
    """A resident's call for help (服务请求), from the form, the API or staff."""

    __tablename__ = "service_request"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    tracking_code: Mapped[str] = mapped_column(String(16), unique=True, default=new_tracking_code)
    public_id: Mapped[str] = mapped_column(String(16), unique=True, index=True, default=new_public_id)
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
    channel: Mapped[str] = mapped_column(String(8))  # web, api, open311, staff (RESIDENT_CHANNELS)
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
    # The hotline loop (hotline.py): when it must be taken and done, when it was.
    take_by: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    extension_days: Mapped[int] = mapped_column(Integer, default=0)
    extension_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)  # shown to the resident
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Entered a final status: retention counts from here.
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    follow_up_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reopened: Mapped[bool] = mapped_column(Boolean, default=False)
    # Hand-backs of a mis-routed request; after three the grid leader decides.
    routed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    handbacks: Mapped[int] = mapped_column(Integer, default=0)
    grid_decides: Mapped[bool] = mapped_column(Boolean, default=False)
    # Proxy intake: who entered it for the resident, and how the resident consented.
    entered_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    consent_method: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Retention: the resident's personal data was removed; statistics remain.
    anonymised_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
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

    @property
    def public_history(self) -> list[StatusChange]:
        """What the resident sees: status changes and extensions, not the
        office's internal steps (hand-backs, refused actions)."""
        return [h for h in self.history if h.event is None or h.event in PUBLIC_EVENTS]

    @property
    def overdue(self) -> bool:
        return hotline.overdue(self, utcnow())

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
        now = utcnow()
        self.status = status
        self.status_event_at = event_at or self.status_event_at
        if status in ("assigned", "in_progress") and self.taken_at is None:
            self.taken_at = now
        if status == "completed":
            self.completed_at = now
        self.finished_at = now if status in FINAL else None
        if status in ("escalated", "assigned"):
            self.routed_at = now  # a new handler has it: their hand-back day starts
        self.history.append(StatusChange(status=status, actor=actor, note=note, at=now))
        return True

    def record(self, event: str, actor: str, note: str = "") -> None:
        """A timeline entry that is not a status change (taken, extended,
        handed back, an action matching refused)."""
        self.history.append(StatusChange(status=self.status, event=event, actor=actor, note=note, at=utcnow()))

    def purge_contact(self) -> None:
        """A resident who withdraws takes their contact with them."""
        self.contact_name, self.contact_phone, self.room = "", "", ""

    def anonymise(self) -> None:
        """Remove what identifies the resident; keep what statistics need
        (category, building, stairwell, times, status, rating)."""
        self.purge_contact()
        self.description = ""
        if self.feedback is not None:
            self.feedback.comment = ""
        for change in self.history:
            change.note = ""
        self.anonymised_at = utcnow()


class StatusChange(Base):
    """One line of a request's timeline: when, what, who, why."""

    __tablename__ = "status_change"
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("service_request.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    event: Mapped[str | None] = mapped_column(String(24), nullable=True)  # None: a status change
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
    resolved: Mapped[bool] = mapped_column(Boolean, default=True)  # the resident confirms it is done
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


class StaffMember(Base):
    """Someone who runs the community: admin (everything), grid leader
    (their grid), hallway leader (their stairwells, "building:unit")."""

    __tablename__ = "staff_member"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(200))  # argon2id
    role: Mapped[str] = mapped_column(String(16))
    grid: Mapped[str | None] = mapped_column(String(16), nullable=True)
    stairwells: Mapped[list] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Bumped by sign-out and password changes: every older session cookie stops working.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # An account seeded for the demo (make run), so that it can be told apart and removed.
    demo: Mapped[bool] = mapped_column(Boolean, default=False)

    @property
    def actor(self) -> str:
        return f"staff:{self.id}"


class ContactAccess(Base):
    """Who saw a resident's phone and room, when, and why (PIPL access log)."""

    __tablename__ = "contact_access"
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("service_request.id"), index=True)
    actor: Mapped[str] = mapped_column(String(64))  # staff:3, volunteer:12
    purpose: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class OutboxMessage(OutboxMixin, Base):
    __tablename__ = "outbox"


class ProcessedMessage(ProcessedMessageMixin, Base):
    __tablename__ = "processed_message"


class DeadMessage(DeadMessageMixin, Base):
    __tablename__ = "dead_message"


def submit(session, outbox, data: dict, channel: str, language: str, digest_key: str, timer: hotline.Timer,
           entered_by: str | None = None) -> ServiceRequest:
    """The one intake path (web form, JSON API, Open311, staff entering it
    for a resident): store the request, its first timeline entry and the
    `request.submitted` event together."""
    now = utcnow()
    take_by, due_at = hotline.deadlines(timer, now)
    req = ServiceRequest(
        public_id=new_public_id(),
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
        consent_at=now,
        consent_method=data.get("consent_method"),
        entered_by=entered_by,
        channel=channel,
        language=language,
        status="submitted",
        take_by=take_by,
        due_at=due_at,
    )
    session.add(req)
    req.history.append(StatusChange(status="submitted", actor=entered_by or channel, note="", at=now))
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


# Open statuses whose answer matching may have given and the broker lost.
LIVE = ("matching", "offered", "assigned", "in_progress", "escalated")


def resend_unanswered(session, outbox, digest_key: str, after: timedelta, still_after: timedelta | None = None) -> int:
    """A broker can lose a message it had already accepted (Redis hands it to
    a worker that is killed before the delivery is recorded). Matching
    answers every request.submitted with the request's current status, so
    intake sends again: a request still `submitted` after `after`, and an
    open request whose status has not moved for `still_after` (5 × after by
    default) — a lost "assigned" or "completed" would otherwise leave it
    stale for good. Each under a new envelope; matching keeps one request
    per id and only retells."""
    now = utcnow()
    cutoff, still_cutoff = now - after, now - (still_after if still_after is not None else after * 5)
    stale = session.scalars(select(ServiceRequest).where(
        or_(and_(ServiceRequest.status == "submitted", ServiceRequest.created_at <= cutoff),
            and_(ServiceRequest.status.in_(LIVE), ServiceRequest.updated_at <= still_cutoff)),
        or_(ServiceRequest.resent_at.is_(None), ServiceRequest.resent_at <= cutoff)).limit(200)).all()
    for req in stale:
        emit_submitted(session, outbox, req, digest_key)
        req.resent_at = now
    return len(stale)


FINAL = ("completed", "closed", "cancelled")


def cancel(session, outbox, req: ServiceRequest, actor: str, reason: str) -> bool:
    """Withdrawn by the resident (tracking code) or staff: matching then
    withdraws offers and frees the volunteer."""
    if req.status in FINAL or not req.move_to("cancelled", actor=actor, note=reason):
        return False
    if actor == "resident":
        req.purge_contact()
    outbox.emit(session, contract.REQUEST_CANCELLED, {"request_id": req.id, "actor": actor, "reason": reason})
    return True


def unhappy(data: dict) -> bool:
    return not data.get("resolved", True) or data["rating"] <= 2


def give_feedback(session, outbox, req: ServiceRequest, data: dict, actor: str = "resident") -> bool:
    """The follow-up (回访), once, after completion, from the resident's
    tracking page or a staff member's call: it reaches the volunteer and
    feeds their rating; an unhappy resident reopens the request."""
    if req.status not in ("completed", "closed") or req.feedback is not None:
        return False
    session.add(Feedback(request=req, rating=data["rating"], thanks=data["thanks"], comment=data["comment"],
                         resolved=data.get("resolved", True)))
    outbox.emit(session, contract.FEEDBACK_RECEIVED, {
        "request_id": req.id, **{k: data[k] for k in ("rating", "thanks", "comment")}})
    if unhappy(data):
        req.reopened = True
        req.move_to("escalated", actor=actor, note="reopened: the resident is not satisfied")
        staff_action(session, outbox, req, "escalate", actor, reason="reopened",
                     note="the resident is not satisfied", level=2)
    return True


# --- what staff do in the console (actor: staff:<id>) ---


def staff_action(session, outbox, req: ServiceRequest | None, action: str, actor: str, note: str = "",
                 volunteer_id: int | None = None, level: int | None = None, reason: str = "staff",
                 **changes) -> None:
    """Matching owns offers, assignments and the registry: the console
    asks, matching does. An escalation says why in `reason`, one of
    contract.STAFF_ESCALATION_REASONS."""
    outbox.emit(session, contract.STAFF_ACTION, {
        "action": action, "request_id": req.id if req else None, "volunteer_id": volunteer_id,
        "level": level, "actor": actor, "note": note[:500], **({"reason": reason} if action == "escalate" else {}),
        **changes})


def take(req: ServiceRequest, actor: str) -> bool:
    """受理: a staff member takes the request (the response timer stops)."""
    if req.status in FINAL or req.taken_at is not None:
        return False
    req.taken_at = utcnow()
    req.record("taken", actor)
    return True


def extend(req: ServiceRequest, actor: str, working_days: int, reason: str) -> bool:
    """One extension of at most ten working days; the resident sees the reason."""
    if req.status in FINAL or req.extension_days or req.due_at is None:
        return False
    req.due_at = hotline.add_working_days(req.due_at, working_days)
    req.extension_days, req.extension_reason = working_days, reason
    req.record("extended", actor, note=reason)
    return True


def hand_back(session, outbox, req: ServiceRequest, actor: str, reason: str, now: datetime) -> str | None:
    """A mis-routed request goes back to the community office within one
    working day of reaching its handler; the third hand-back sends it to
    the grid leader, who decides. Returns why it was refused, or None."""
    if req.status in FINAL or req.grid_decides:
        return "locked"
    if req.routed_at is None or now > hotline.handback_open_until(req.routed_at):
        return "late"
    req.handbacks += 1
    req.routed_at = now
    req.grid_decides = req.handbacks >= hotline.HANDBACK_LIMIT
    req.record("handed_back", actor, note=reason)
    staff_action(session, outbox, req, "escalate", actor, reason="handed_back", note=reason,
                 level=2 if req.grid_decides else 3)
    return None


def close(session, outbox, req: ServiceRequest, actor: str, note: str) -> bool:
    """Closed with a note by staff (done by phone, a duplicate, resolved
    by the office). Not while a volunteer is on it: reassign or cancel."""
    if req.status in ("assigned", "in_progress") or not req.move_to("closed", actor=actor, note=note):
        return False
    staff_action(session, outbox, req, "close", actor, note=note)
    return True


def anonymise_expired(session, days: int, now: datetime, batch: int = 500) -> int:
    """Retention: residents' data of requests finished more than `days`
    ago is removed; the rows stay for statistics."""
    cutoff = now - timedelta(days=days)
    rows = session.scalars(select(ServiceRequest).where(
        ServiceRequest.finished_at <= cutoff, ServiceRequest.anonymised_at.is_(None)).limit(batch)).all()
    for req in rows:
        req.anonymise()
    return len(rows)
