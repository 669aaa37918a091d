"""Matching's data: the community layout and its leaders, volunteers and
their skills, matching's own view of each service request, offers,
assignments, escalations, and the messaging tables."""
from __future__ import annotations

import hashlib
import secrets
from datetime import date, datetime, time
from decimal import Decimal

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    Time,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from services.common import contract
from services.common.clock import utcnow
from services.common.db import UTCDateTime
from services.common.inbox import DeadMessageMixin, ProcessedMessageMixin
from services.common.outbox import OutboxMixin


class Base(DeclarativeBase):
    pass


class Grid(Base):
    """A grid (网格) of the community, with its "1+3+N" team."""

    __tablename__ = "grid"
    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(32))


class Building(Base):
    __tablename__ = "building"
    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(32))
    grid: Mapped[str] = mapped_column(ForeignKey("grid.code"), index=True)
    units: Mapped[list] = mapped_column(JSON)


class Leader(Base):
    """Someone on the escalation chain: a hallway leader (楼道长) of one
    stairwell, a grid leader (网格长), or the community office."""

    __tablename__ = "leader"
    __table_args__ = (UniqueConstraint("role", "grid", "building", "unit"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    role: Mapped[str] = mapped_column(String(8))  # hallway, grid, office
    grid: Mapped[str | None] = mapped_column(String(16), nullable=True)
    building: Mapped[str | None] = mapped_column(String(16), nullable=True)
    unit: Mapped[str | None] = mapped_column(String(8), nullable=True)
    name: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(20))
    channels: Mapped[list] = mapped_column(JSON, default=list)


class Volunteer(Base):
    """A neighbour who offers a service (志愿者)."""

    __tablename__ = "volunteer"
    __table_args__ = (
        # The database itself refuses over-booking, whatever the code does.
        CheckConstraint("active_tasks >= 0 AND active_tasks <= capacity", name="within_capacity"),
        # Matching reads a request's stairwell first, then its building (dispatch.Dispatcher.best_free).
        Index("ix_volunteer_building_unit", "building", "unit"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(64))  # what residents see
    phone: Mapped[str] = mapped_column(String(20), unique=True)  # how a volunteer signs in
    building: Mapped[str] = mapped_column(ForeignKey("building.code"))
    unit: Mapped[str | None] = mapped_column(String(8), nullable=True)
    capacity: Mapped[int] = mapped_column(Integer, default=1)
    active_tasks: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    channels: Mapped[list] = mapped_column(JSON, default=list)  # Apprise URLs, preferred first
    language: Mapped[str] = mapped_column(String(8), default="zh-CN")
    teams: Mapped[list] = mapped_column(JSON, default=list)  # e.g. 翠邻里, 达式华医疗服务队, 夕阳红
    phone_digest: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # What the engine's soft score reads: fairness, reliability, rating.
    last_task_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    offers_count: Mapped[int] = mapped_column(Integer, default=0)
    accepts_count: Mapped[int] = mapped_column(Integer, default=0)
    rating_sum: Mapped[int] = mapped_column(Integer, default=0)
    rating_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Stored in each portal session at sign-in; bumping it (sign-out,
    # deactivation) ends every session, copied cookies included.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Made by the demo seed: `flask remove-demo` finds them by this.
    demo: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))

    skills: Mapped[list[VolunteerSkill]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    windows: Mapped[list[AvailabilityWindow]] = relationship(cascade="all, delete-orphan", lazy="selectin",
                                                             order_by="AvailabilityWindow.id")
    days_off: Mapped[list[DayOff]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    home: Mapped[Building] = relationship(lazy="joined")

    @property
    def skill_codes(self) -> list[str]:
        return sorted(s.category for s in self.skills)

    @property
    def verified_codes(self) -> list[str]:
        return sorted(s.category for s in self.skills if s.verified)

    @property
    def rating(self) -> float | None:
        return self.rating_sum / self.rating_count if self.rating_count else None

    def end_sessions(self) -> None:
        """Sign out of the portal everywhere: every session carries the
        epoch it began in, and an older epoch no longer counts."""
        self.session_epoch = (self.session_epoch or 0) + 1

    @property
    def credentials(self) -> list[VolunteerSkill]:
        """The verified skills, each with who verified it and when."""
        return sorted((s for s in self.skills if s.verified), key=lambda s: s.category)

    def apply(self, data: dict, digest_key: str, actor: str | None = None, at: datetime | None = None) -> None:
        """Set registry fields from validated input (API, roster import,
        the console's tasks); fields not given stay as they are. A skill
        newly verified records `actor` and `at` as its verifier."""
        if data.get("active") is False and self.active:
            self.end_sessions()
        for name in ("name", "phone", "building", "unit", "capacity", "channels", "language", "teams", "active"):
            if name in data:
                setattr(self, name, data[name])
        if data.get("display_name") or not self.display_name:
            self.display_name = data.get("display_name") or self.name
        if "phone" in data:
            self.phone_digest = contract.phone_digest(self.phone, digest_key)
        if "skills" in data or "verified" in data:
            skills = data.get("skills", self.skill_codes)
            verified = set(data.get("verified", self.verified_codes))
            held = {s.category: s for s in self.skills}
            kept = []
            for code in dict.fromkeys(skills):
                skill = held.get(code) or VolunteerSkill(category=code, verified=False)
                if code in verified and not skill.verified:
                    skill.verified_by, skill.verified_at = actor, at or utcnow()
                elif code not in verified:
                    skill.verified_by = skill.verified_at = None
                skill.verified = code in verified
                kept.append(skill)
            self.skills = kept
        if "windows" in data:
            self.windows = [AvailabilityWindow(weekday=w["weekday"], start_time=w["start"], end_time=w["end"])
                            for w in data["windows"]]
        if "days_off" in data:
            self.days_off = [DayOff(day=d) for d in sorted(set(data["days_off"]))]


class VolunteerSkill(Base):
    __tablename__ = "volunteer_skill"
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteer.id"), primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)
    # Health checks and prenatal guidance need a credential checked by staff:
    # who checked it (staff:<id>, or the admin token) and when.
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    verified_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class StaffChange(Base):
    """What became of a registry change the console asked for (a
    registration, an update, a roster import), under the console's change
    id: the console reads it to say when the change has taken effect, and a
    change sent twice is carried out once."""

    __tablename__ = "staff_change"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the console's change id
    action: Mapped[str] = mapped_column(String(16))  # register, update, import
    actor: Mapped[str] = mapped_column(String(64))
    volunteer_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))  # done, refused
    reason: Mapped[str | None] = mapped_column(String(32), nullable=True)  # contract.REGISTRY_REFUSALS
    report: Mapped[dict] = mapped_column(JSON, default=dict)  # an import's counts and refused rows
    done_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AvailabilityWindow(Base):
    """A weekly window (local time) when the volunteer can help, e.g. Sat 09:00–11:00."""

    __tablename__ = "availability_window"
    __table_args__ = (CheckConstraint("weekday BETWEEN 0 AND 6 AND start_time < end_time", name="valid_window"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteer.id"), index=True)
    weekday: Mapped[int] = mapped_column(Integer)  # 0 Monday … 6 Sunday
    start_time: Mapped[time] = mapped_column(Time)
    end_time: Mapped[time] = mapped_column(Time)


class DayOff(Base):
    __tablename__ = "day_off"
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteer.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)


class ServiceRequest(Base):
    """Matching's own copy of a request, built from volunteers.request_submitted:
    what a volunteer needs to decide, never the resident's name, phone or room."""

    __tablename__ = "service_request"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    category: Mapped[str] = mapped_column(String(32), index=True)
    summary: Mapped[str] = mapped_column(Text)
    building: Mapped[str] = mapped_column(ForeignKey("building.code"))
    unit: Mapped[str | None] = mapped_column(String(8), nullable=True)
    masked_phone: Mapped[str] = mapped_column(String(20))
    mode: Mapped[str] = mapped_column(String(8))
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    urgency: Mapped[str] = mapped_column(String(8))
    elderly: Mapped[bool] = mapped_column(Boolean, default=False)
    disability: Mapped[bool] = mapped_column(Boolean, default=False)
    requester_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # A community programme's visit (visit:12): the visitor records an outcome
    # on completion, which goes back to the community service.
    programme_ref: Mapped[str | None] = mapped_column(String(48), nullable=True)
    # matching (waiting for a free volunteer), offered, assigned, in_progress, completed, escalated, cancelled
    status: Mapped[str] = mapped_column(String(16), default="matching", index=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    accept_by: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # else escalate
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)  # 1 hallway, 2 grid, 3 office

    home: Mapped[Building] = relationship(lazy="joined")
    offers: Mapped[list[Offer]] = relationship(back_populates="request", order_by="Offer.id")


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_hash(token: str) -> str:
    """What is stored of a link token: a copy of the database (a backup, a
    support dump) must not be a set of working links."""
    return hashlib.sha256(token.encode()).hexdigest()


def _unknown_token_hash() -> str:
    # An offer made without a link (tests, tools) gets a hash of a token nobody holds.
    return token_hash(new_token())


class Offer(Base):
    """A request offered to one volunteer, answered through a link."""

    __tablename__ = "offer"
    __table_args__ = (UniqueConstraint("request_id", "volunteer_id"),
                      Index("ix_offer_status_volunteer", "status", "volunteer_id"))  # open offers per volunteer
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("service_request.id"), index=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteer.id"), index=True)
    # SHA-256 of the link's token; the token itself goes only into the offer message.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, default=_unknown_token_hash)
    status: Mapped[str] = mapped_column(String(12), default="open")  # open, accepted, declined, expired, withdrawn
    reason: Mapped[str] = mapped_column(String(200), default="")  # why this volunteer was chosen
    decline_reason: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    request: Mapped[ServiceRequest] = relationship(back_populates="offers", lazy="joined")
    volunteer: Mapped[Volunteer] = relationship(lazy="joined")

    @property
    def token(self) -> str:
        raise AttributeError("only a hash of an offer's token is stored")

    @token.setter
    def token(self, value: str) -> None:
        # Offer(token=…) (tools, tests) keeps working, and stores only the hash.
        self.token_hash = token_hash(value)


LIVE_ASSIGNMENT = text("status <> 'cancelled'")


class Assignment(Base):
    """The one volunteer who took a request. One live assignment per
    request: the partial unique index decides the race when two accept at
    once; a cancelled one leaves room for a reassignment."""

    __tablename__ = "assignment"
    __table_args__ = (Index("one_live_assignment", "request_id", unique=True,
                            sqlite_where=LIVE_ASSIGNMENT, postgresql_where=LIVE_ASSIGNMENT),)
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("service_request.id"), index=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteer.id"), index=True)
    offer_id: Mapped[int | None] = mapped_column(ForeignKey("offer.id"), nullable=True)  # none: staff or booking
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("booking.id"), nullable=True)
    # Station bookings use session slots, not the volunteer's at-home capacity.
    counts_capacity: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(12), default="active")  # active, started, completed, cancelled
    actor: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    complete_by: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)  # as the volunteer reported
    note: Mapped[str] = mapped_column(String(500), default="")

    request: Mapped[ServiceRequest] = relationship(lazy="joined")
    volunteer: Mapped[Volunteer] = relationship(lazy="joined")


class Escalation(Base):
    """A request handed up the grid chain, and to whom."""

    __tablename__ = "escalation"
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("service_request.id"), index=True)
    leader_id: Mapped[int | None] = mapped_column(ForeignKey("leader.id"), nullable=True)
    level: Mapped[int] = mapped_column(Integer, default=1)  # 1 hallway, 2 grid, 3 office
    reason: Mapped[str] = mapped_column(String(32))  # staff_only, no_candidate, all_declined, not_taken, overdue
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    # So that the unit of work writes a request just received before its escalation.
    request: Mapped[ServiceRequest] = relationship()


class Station(Base):
    """A service station (服务站), e.g. the 翠邻里 service hall: fixed place."""

    __tablename__ = "station"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    place: Mapped[str] = mapped_column(String(100))
    demo: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    lead_volunteer_id: Mapped[int | None] = mapped_column(ForeignKey("volunteer.id"), nullable=True)


class StationSession(Base):
    """Fixed time, fixed person: a weekly session of one service at a station."""

    __tablename__ = "station_session"
    __table_args__ = (CheckConstraint("weekday BETWEEN 0 AND 6 AND start_time < end_time AND slots > 0",
                                      name="valid_session"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    station_id: Mapped[int] = mapped_column(ForeignKey("station.id"), index=True)
    category: Mapped[str] = mapped_column(String(32), index=True)
    weekday: Mapped[int] = mapped_column(Integer)
    start_time: Mapped[time] = mapped_column(Time)
    end_time: Mapped[time] = mapped_column(Time)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteer.id"))
    slots: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    station: Mapped[Station] = relationship(lazy="joined")
    volunteer: Mapped[Volunteer] = relationship(lazy="joined")


LIVE_BOOKING = text("status = 'booked'")


class Booking(Base):
    """A resident's slot in one occurrence of a session. A slot number is
    held by one live booking per occurrence (partial unique index), so
    overbooking is impossible under races and a cancelled slot is free again."""

    __tablename__ = "booking"
    __table_args__ = (Index("one_booking_per_slot", "session_id", "day", "slot", unique=True,
                            sqlite_where=LIVE_BOOKING, postgresql_where=LIVE_BOOKING),)
    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("station_session.id"), index=True)
    day: Mapped[date] = mapped_column(Date)
    slot: Mapped[int] = mapped_column(Integer)
    request_id: Mapped[str] = mapped_column(ForeignKey("service_request.id"), unique=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(12), default="booked")  # booked, cancelled

    session: Mapped[StationSession] = relationship(lazy="joined")


class HoursEntry(Base):
    """Service hours (服务时长) for one completed task: counted from start to
    completion in 0.5 h steps, confirmed by whoever organised the service."""

    __tablename__ = "hours_entry"
    id: Mapped[int] = mapped_column(primary_key=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteer.id"), index=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignment.id"), unique=True)
    hours: Mapped[Decimal] = mapped_column(Numeric(5, 1))
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending, confirmed, correction
    confirmed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    correction_hours: Mapped[Decimal | None] = mapped_column(Numeric(5, 1), nullable=True)
    correction_reason: Mapped[str] = mapped_column(String(300), default="")
    # The office's correction (console): the hours before it and why; who is confirmed_by.
    corrected_from: Mapped[Decimal | None] = mapped_column(Numeric(5, 1), nullable=True)
    corrected_reason: Mapped[str] = mapped_column(String(300), default="", server_default="")
    completed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    volunteer: Mapped[Volunteer] = relationship(lazy="joined")
    assignment: Mapped[Assignment] = relationship(lazy="joined")


class CoinEntry(Base):
    """Time bank (时间银行): 1 confirmed hour = 1 time coin. Coins buy
    services or are donated; never cash. The balance is the sum."""

    __tablename__ = "coin_entry"
    id: Mapped[int] = mapped_column(primary_key=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteer.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(7, 1))  # + earned/received, − spent/donated
    kind: Mapped[str] = mapped_column(String(12))  # earned, spent, donated, received
    ref: Mapped[str] = mapped_column(String(100), default="")
    # One credit per hours entry, even if a confirmation is repeated.
    hours_entry_id: Mapped[int | None] = mapped_column(ForeignKey("hours_entry.id"), nullable=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoginLink(Base):
    """An expiring, single-use sign-in link for the volunteer portal; only
    its hash is stored."""

    __tablename__ = "login_link"
    id: Mapped[int] = mapped_column(primary_key=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteer.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class OutboxMessage(OutboxMixin, Base):
    __tablename__ = "outbox"


class ProcessedMessage(ProcessedMessageMixin, Base):
    __tablename__ = "processed_message"


class DeadMessage(DeadMessageMixin, Base):
    __tablename__ = "dead_message"
