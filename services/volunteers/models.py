"""Matching's data: the community layout and its leaders, volunteers and
their skills, matching's own view of each service request, offers,
assignments, escalations, and the messaging tables."""
from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from services.common.db import UTCDateTime, utcnow
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
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(64))  # what residents see
    phone: Mapped[str] = mapped_column(String(20))
    building: Mapped[str] = mapped_column(ForeignKey("building.code"), index=True)
    unit: Mapped[str | None] = mapped_column(String(8), nullable=True)
    capacity: Mapped[int] = mapped_column(Integer, default=1)
    active_tasks: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    channels: Mapped[list] = mapped_column(JSON, default=list)  # Apprise URLs, preferred first
    language: Mapped[str] = mapped_column(String(8), default="zh-CN")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    skills: Mapped[list[VolunteerSkill]] = relationship(cascade="all, delete-orphan", lazy="selectin")
    home: Mapped[Building] = relationship(lazy="joined")

    @property
    def skill_codes(self) -> list[str]:
        return sorted(s.category for s in self.skills)


class VolunteerSkill(Base):
    __tablename__ = "volunteer_skill"
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteer.id"), primary_key=True)
    category: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)


class ServiceRequest(Base):
    """Matching's own copy of a request, built from request.submitted:
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
    status: Mapped[str] = mapped_column(String(16), default="matching")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    home: Mapped[Building] = relationship(lazy="joined")
    offers: Mapped[list[Offer]] = relationship(back_populates="request", order_by="Offer.id")


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Offer(Base):
    """A request offered to one volunteer, answered through a link."""

    __tablename__ = "offer"
    __table_args__ = (UniqueConstraint("request_id", "volunteer_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("service_request.id"), index=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteer.id"), index=True)
    token: Mapped[str] = mapped_column(String(64), unique=True, default=new_token)
    status: Mapped[str] = mapped_column(String(12), default="open")  # open, accepted, declined, expired, withdrawn
    reason: Mapped[str] = mapped_column(String(200), default="")  # why this volunteer was chosen
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    request: Mapped[ServiceRequest] = relationship(back_populates="offers", lazy="joined")
    volunteer: Mapped[Volunteer] = relationship(lazy="joined")


class Assignment(Base):
    """The one volunteer who took a request. One per request: the unique
    constraint decides the race when two accept at once."""

    __tablename__ = "assignment"
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("service_request.id"), unique=True)
    volunteer_id: Mapped[int] = mapped_column(ForeignKey("volunteer.id"), index=True)
    offer_id: Mapped[int] = mapped_column(ForeignKey("offer.id"))
    status: Mapped[str] = mapped_column(String(12), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Escalation(Base):
    """A request handed up the grid chain, and to whom."""

    __tablename__ = "escalation"
    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("service_request.id"), index=True)
    leader_id: Mapped[int | None] = mapped_column(ForeignKey("leader.id"), nullable=True)
    reason: Mapped[str] = mapped_column(String(32))  # staff_only, no_candidate
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxMessage(OutboxMixin, Base):
    __tablename__ = "outbox"


class ProcessedMessage(ProcessedMessageMixin, Base):
    __tablename__ = "processed_message"


class DeadMessage(DeadMessageMixin, Base):
    __tablename__ = "dead_message"
