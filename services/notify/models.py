"""Notification's data: recipients and their channels, notifications (each
also an in-app inbox message), deliveries to outside channels, and the
consumer's messaging tables."""
from __future__ import annotations

from datetime import datetime, time

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, Time, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from services.common.clock import utcnow
from services.common.db import UTCDateTime
from services.common.inbox import DeadMessageMixin, ProcessedMessageMixin
from services.common.outbox import OutboxMixin


class Base(DeclarativeBase):
    pass


class Recipient(Base):
    """Someone Linli tells things: `volunteer:12`, `leader:3`, `resident:<request id>`."""

    __tablename__ = "recipient"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    channels: Mapped[list] = mapped_column(JSON, default=list)  # Apprise URLs, preferred first; secrets
    language: Mapped[str] = mapped_column(String(8), default="zh-CN")
    # Non-urgent messages wait out these hours (Asia/Shanghai); see new().
    quiet_start: Mapped[time] = mapped_column(Time)
    quiet_end: Mapped[time] = mapped_column(Time)
    # 退订: no SMS and no calls, only the in-app inbox (gateways.SCHEMES).
    sms_opt_out: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @classmethod
    def new(cls, key: str, quiet_hours: tuple[time, time]) -> "Recipient":
        """A recipient heard of for the first time, with the community's quiet hours."""
        return cls(key=key, channels=[], quiet_start=quiet_hours[0], quiet_end=quiet_hours[1])


class Notification(Base):
    """One message to one recipient, rendered once; it is also the
    recipient's in-app inbox entry. The dedupe key makes a repeat a no-op."""

    __tablename__ = "notification"
    id: Mapped[int] = mapped_column(primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    recipient_key: Mapped[str] = mapped_column(ForeignKey("recipient.key"), index=True)
    template: Mapped[str] = mapped_column(String(32))
    language: Mapped[str] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(String(200))
    short_body: Mapped[str] = mapped_column(Text)  # SMS and IM
    full_body: Mapped[str] = mapped_column(Text)  # email
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    reply_to: Mapped[str | None] = mapped_column(String(16), nullable=True)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    deliveries: Mapped[list[Delivery]] = relationship(back_populates="notification")


class Delivery(Base):
    """Getting one notification out through the recipient's channels, in
    order: attempts, status and last error are kept for the delivery log."""

    __tablename__ = "delivery"
    id: Mapped[int] = mapped_column(primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notification.id"), unique=True)
    channels: Mapped[list] = mapped_column(JSON)  # frozen at creation: a later change does not re-route it
    channel_index: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(8), default="queued", index=True)  # queued, sending, failed, sent, dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(300), nullable=True)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A message whose link is a key (sign-in, offer): the text with the link,
    # for the channel, until the delivery is sent or dead; the notification
    # (the inbox copy) never holds it.
    keyed_short: Mapped[str | None] = mapped_column(Text, nullable=True)
    keyed_full: Mapped[str | None] = mapped_column(Text, nullable=True)
    # SMS and voice: the event's parameters ([[name, value], …], gateways.params_for),
    # each gateway's template code and limits applied when sending.
    gateway_params: Mapped[list | None] = mapped_column(JSON, nullable=True)
    # Tries on the current channel (3, or fewer when a gateway refuses for good).
    channel_tries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The keyed digest of the phone an SMS or call went to: a resident's reply
    # (上行) finds the message it answers by it (replies.py); no number is kept here.
    phone_digest: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)

    notification: Mapped[Notification] = relationship(back_populates="deliveries", lazy="joined")


class OutboxMessage(OutboxMixin, Base):
    __tablename__ = "outbox"


class ProcessedMessage(ProcessedMessageMixin, Base):
    __tablename__ = "processed_message"


class DeadMessage(DeadMessageMixin, Base):
    __tablename__ = "dead_message"
