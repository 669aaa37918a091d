"""The community service's data: the register of households and residents
(住户台账), who viewed it, the visit plans for residents living alone or
needing care with their visits (探访), the daily check-in (报平安), and the
messaging tables.

Sensitive fields (care needs, disability) are `Sealed` (sealed.py). A
household or resident that moves out or dies is closed, never deleted:
visits and the access log keep referring to them."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from services.common.clock import utcnow
from services.common.db import UTCDateTime
from services.common.inbox import DeadMessageMixin, ProcessedMessageMixin
from services.common.outbox import OutboxMixin

from .sealed import Sealed


class Base(DeclarativeBase):
    pass


# --- the register ---

# The register's vocabulary is the wire contract's (the console's forms and
# files are checked with the same schemas).
from services.common.contract import CARE_NEEDS, CONSENT_HOW, REACH_BY, RELATIONS, SEXES, TENURES  # noqa: E402,F401

CLOSE_REASONS = {"household": ("moved_out",), "resident": ("moved_out", "deceased")}


class Household(Base):
    """One dwelling's household: where it is, how big (the lift vote counts
    floor area), owner or tenant, the household's phones."""

    __tablename__ = "household"
    __table_args__ = (Index("ix_household_place", "building", "unit", "room"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    # The grid is the building's (community file), kept here so that a grid
    # leader's scope is one indexed filter.
    grid: Mapped[str] = mapped_column(String(16), index=True)
    building: Mapped[str] = mapped_column(String(16))
    unit: Mapped[str] = mapped_column(String(8))
    floor: Mapped[int] = mapped_column(Integer)
    room: Mapped[str] = mapped_column(String(8))
    floor_area: Mapped[Decimal | None] = mapped_column(Numeric(7, 2), nullable=True)  # m²
    tenure: Mapped[str] = mapped_column(String(8), default="owner")  # TENURES
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    closed_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    demo: Mapped[bool] = mapped_column(Boolean, default=False)  # synthetic (make run's register)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    phones: Mapped[list[HouseholdPhone]] = relationship(
        back_populates="household", cascade="all, delete-orphan", order_by="HouseholdPhone.id")
    residents: Mapped[list[Resident]] = relationship(back_populates="household", order_by="Resident.id")


class HouseholdPhone(Base):
    """A household's phone; the keyed digest (the same key as intake's and
    matching's) finds it without the number in a URL or a log."""

    __tablename__ = "household_phone"
    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("household.id"), index=True)
    phone: Mapped[str] = mapped_column(String(20))
    phone_digest: Mapped[str] = mapped_column(String(64), index=True)

    household: Mapped[Household] = relationship(back_populates="phones")


class Resident(Base):
    """A person in a household. Age is kept as the birth year (the register
    shows an age band); care needs and disability are sealed."""

    __tablename__ = "resident"
    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("household.id"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    sex: Mapped[str] = mapped_column(String(8))  # SEXES
    birth_year: Mapped[int] = mapped_column(Integer, index=True)
    relation: Mapped[str] = mapped_column(String(16), default="head")  # RELATIONS, to the household's head
    phone: Mapped[str | None] = mapped_column(String(20), nullable=True)
    phone_digest: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    lives_alone: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    party_member: Mapped[bool] = mapped_column(Boolean, default=False)
    # Deferred: a list never opens them; a view that shows them asks (and is logged).
    care_need: Mapped[str | None] = mapped_column(Sealed, nullable=True, deferred=True)  # CARE_NEEDS, sealed
    disability: Mapped[str | None] = mapped_column(Sealed, nullable=True, deferred=True)  # free text, sealed
    reach_by: Mapped[str] = mapped_column(String(16), default="text")  # REACH_BY
    emergency_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    emergency_relation: Mapped[str | None] = mapped_column(String(16), nullable=True)
    emergency_phone: Mapped[str | None] = mapped_column(String(20), nullable=True)
    consent_contact: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    consent_how: Mapped[str | None] = mapped_column(String(16), nullable=True)  # CONSENT_HOW
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    closed_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    household: Mapped[Household] = relationship(back_populates="residents")


class RegisterAccess(Base):
    """Who looked at register data, when, and what: every list, export,
    import and edit, and each view of a sealed field. Kept by this service
    (intake's contact log is intake's)."""

    __tablename__ = "register_access"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64), index=True)  # staff:12, admin-token
    action: Mapped[str] = mapped_column(String(16))  # list, view, export, import, edit, close, lookup
    household_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    resident_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    sensitive: Mapped[bool] = mapped_column(Boolean, default=False)  # sealed fields were shown
    rows: Mapped[int] = mapped_column(Integer, default=0)  # how many a list or export showed


class RegisterChange(Base):
    """A change the console handed over as a task, by its id: a repeat is a
    no-op and the console asks here whether it has taken effect."""

    __tablename__ = "register_change"
    change_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(24))
    outcome: Mapped[str] = mapped_column(String(16))  # applied, refused
    detail: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # what was refused, per field
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Who asked (staff see their own changes' outcome, the office all) and
    # what the change made or touched, for the console's "taken effect" page.
    actor: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    household_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    resident_id: Mapped[int | None] = mapped_column(Integer, nullable=True)


# --- visits (探访) and the daily check-in (报平安) ---

RHYTHMS = {"weekly": 7, "twice_monthly": 14, "monthly": 30}  # days between visits
VISITORS = ("hallway_leader", "paired_volunteer", "any_volunteer")
OUTCOMES = ("done", "nobody_home", "needs_attention", "emergency")


class VisitPlan(Base):
    """How often someone living alone or needing care is visited, by whom,
    and when they like it. One active plan per resident."""

    __tablename__ = "visit_plan"
    id: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[int] = mapped_column(ForeignKey("resident.id"), unique=True)
    rhythm: Mapped[str] = mapped_column(String(16))  # RHYTHMS
    visitor: Mapped[str] = mapped_column(String(16))  # VISITORS
    volunteer_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # matching's id, when paired (结对)
    preferred_times: Mapped[str | None] = mapped_column(String(100), nullable=True)  # e.g. "周二 09:00-11:00"
    next_due: Mapped[date] = mapped_column(Date, index=True)  # the day the next visit is due (Asia/Shanghai)
    checkin_daily: Mapped[bool] = mapped_column(Boolean, default=False)  # 报平安 chosen
    # The resident's check-in link is /checkin/<token>; only its digest is kept.
    checkin_token_digest: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    # The last day (Asia/Shanghai) the morning check-in text was asked for.
    checkin_texted_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True, index=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    resident: Mapped[Resident] = relationship()
    visits: Mapped[list[Visit]] = relationship(back_populates="plan", order_by="Visit.id")


class Visit(Base):
    """One visit that came due (on the plan's rhythm, or because a check-in
    was missed), the help request that carries it to a visitor, and what the
    visitor found."""

    __tablename__ = "visit"
    __table_args__ = (UniqueConstraint("plan_id", "due_on", "reason"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("visit_plan.id"), index=True)
    reason: Mapped[str] = mapped_column(String(16), default="scheduled")  # scheduled, missed_checkin
    due_on: Mapped[date] = mapped_column(Date, index=True)
    # Intake's request id: the visit travels as a help request (programme channel).
    service_request_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)  # OUTCOMES
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    recorded_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    recorded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    plan: Mapped[VisitPlan] = relationship(back_populates="visits")


class CheckIn(Base):
    """A resident said "I'm fine today" (one row per day, Asia/Shanghai)."""

    __tablename__ = "check_in"
    __table_args__ = (UniqueConstraint("plan_id", "on"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("visit_plan.id"), index=True)
    on: Mapped[date] = mapped_column(Date)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# --- messaging ---


class OutboxMessage(OutboxMixin, Base):
    __tablename__ = "outbox"


class ProcessedMessage(ProcessedMessageMixin, Base):
    __tablename__ = "processed_message"


class DeadMessage(DeadMessageMixin, Base):
    __tablename__ = "dead_message"
