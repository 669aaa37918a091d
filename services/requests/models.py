"""Intake's data: service requests (服务请求), their status history, the
buildings residents live in, and the messaging tables (outbox, processed,
dead). A row's own rules (its lifecycle, anonymising it) are its methods;
what intake does with requests is in operations.py."""
from __future__ import annotations

import secrets
import uuid
from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, object_session, relationship

from services.common import contract
from services.common.clock import utcnow
from services.common.db import UTCDateTime
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

# Finished: entering one of these sets finished_at, which retention counts from.
FINAL = ("completed", "closed", "cancelled")

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
    __table_args__ = (Index("uq_service_request_programme_ref", "programme_ref", unique=True),)
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
    channel: Mapped[str] = mapped_column(String(16))  # RESIDENT_CHANNELS, or "programme"
    # A community programme's request (channel "programme"): its reference
    # (visit:12, welfare:12:emergency), one request per reference; who should
    # be offered it first, or the leader it goes to instead of volunteers.
    programme_ref: Mapped[str | None] = mapped_column(String(48), nullable=True)
    preferred_volunteer_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    first_to: Mapped[str | None] = mapped_column(String(8), nullable=True)
    # How the resident asked to hear back (their own opt-in: the privacy
    # consent is not consent to be messaged): none, text (SMS) or call; set
    # back to none when they stop messages (退订).
    messages: Mapped[str] = mapped_column(String(8), default="none")
    language: Mapped[str] = mapped_column(String(8), default="zh-CN")  # for messages to the resident
    status: Mapped[str] = mapped_column(String(16), default="submitted", index=True)
    volunteer_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # When the event behind the current status happened (its occurred_at):
    # an older event arriving late must not undo a newer one.
    status_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When volunteers.request_submitted was last sent again because matching never answered.
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
    # The named staff member it is handed to (经办人, staff:<id>): a grid or
    # hallway leader the office or a grid leader chose in the queue.
    handler: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
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
        self._add_to_history(StatusChange(status=status, actor=actor, note=note, at=now))
        return True

    def _add_to_history(self, change: StatusChange) -> None:
        """A timeline entry, without loading the timeline first (appending to
        an unloaded `history` selects every earlier entry: 12% of intake's
        worker's CPU on a status change, py-spy). Set through the backref,
        the entry shows in `history` when it is read in this session."""
        session = object_session(self)
        if session is None or "history" in self.__dict__:
            self.history.append(change)
        else:
            change.request = self
            session.add(change)

    def record(self, event: str, actor: str, note: str = "") -> None:
        """A timeline entry that is not a status change (taken, extended,
        handed back, an action matching refused)."""
        self._add_to_history(StatusChange(status=self.status, event=event, actor=actor, note=note, at=utcnow()))

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


class StaffAudit(Base):
    """What the office changed about staff accounts and Open311 keys, from
    the console: who, what, when (never a password nor a key)."""

    __tablename__ = "staff_audit"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))  # staff:<id>, or admin-token
    target: Mapped[str] = mapped_column(String(64))  # staff:<id>, open311_key:<id>
    action: Mapped[str] = mapped_column(String(32))  # created, password_reset, role_changed, deactivated, ...
    detail: Mapped[str] = mapped_column(String(300), default="")


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


class PhoneCall(Base):
    """A phone call the office or a hallway leader took (来电登记): who
    called, about what, and what came of it — a request (linked), an answer
    on the spot, or a referral elsewhere (12345, the property company, the
    police). Enquiries that never became a request count for the 街道."""

    __tablename__ = "phone_call"
    id: Mapped[int] = mapped_column(primary_key=True)
    called_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    # Shown masked in lists and downloads; in full only on the call's own page.
    caller_phone: Mapped[str] = mapped_column(String(20))
    caller_name: Mapped[str] = mapped_column(String(64), default="")
    # Where the caller lives, when they said: who may see the call (staff.Scope).
    building_code: Mapped[str | None] = mapped_column(ForeignKey("building.code"), nullable=True, index=True)
    unit: Mapped[str | None] = mapped_column(String(8), nullable=True)
    topic: Mapped[str] = mapped_column(String(32))  # a category code, or "other"
    note: Mapped[str] = mapped_column(String(200), default="")
    outcome: Mapped[str] = mapped_column(String(16), index=True)  # calls.OUTCOMES
    referred_to: Mapped[str | None] = mapped_column(String(16), nullable=True)  # calls.REFERRALS
    service_request_id: Mapped[str | None] = mapped_column(ForeignKey("service_request.id"), nullable=True,
                                                           index=True)
    taken_by: Mapped[str] = mapped_column(String(64), index=True)  # staff:<id>
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when retention blanks the caller's number and name.
    anonymised_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    building: Mapped[Building | None] = relationship()
    service_request: Mapped[ServiceRequest | None] = relationship()

    @property
    def masked_phone(self) -> str:
        return contract.mask_phone(self.caller_phone) if self.caller_phone else ""
