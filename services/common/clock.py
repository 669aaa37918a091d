"""Clocks that stop at night. Times are stored in UTC; the daily windows are
Hangzhou time (Asia/Shanghai).

- Notify holds a non-urgent message through its recipient's quiet hours.
- Matching counts a non-urgent request's deadlines (an offer's answer, the
  acceptance, the escalation steps) outside the community's quiet hours, so
  that an offer does not expire before its message arrives and nobody is
  woken up about a haircut.
- Intake's take timer counts daytime hours (08:00–20:00).

And the one clock all three services read the time from (`utcnow`).
"""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from flask import current_app, has_app_context

SHANGHAI = ZoneInfo("Asia/Shanghai")


class Clock:
    """The time now, aware and in UTC. Each service's app has one
    (services.common.factory); every part of every service reads the time
    through `utcnow()`, so a test sets the app's clock instead of patching
    modules, and pure functions take `now` as an argument."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class SetClock(Clock):
    """A clock that stands where it is put: tests move it on by hand."""

    def __init__(self, at: datetime):
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta) -> datetime:
        self.at += delta
        return self.at


SYSTEM = Clock()


def utcnow() -> datetime:
    """Now, by the current app's clock (the system's outside an app)."""
    if has_app_context():
        return current_app.extensions.get("clock", SYSTEM).now()
    return SYSTEM.now()


def quiet_hours(value: str) -> tuple[time, time]:
    """'21:00-07:00' → (start, end); equal ends: none (LINLI_QUIET_HOURS, services.common.settings)."""
    try:
        start, end = (time.fromisoformat(part.strip()) for part in value.split("-"))
    except ValueError:
        raise ValueError(f"LINLI_QUIET_HOURS must look like 21:00-07:00, not {value!r}") from None
    return start, end


def quiet_until(moment: datetime, start: time, end: time) -> datetime | None:
    """The end of the quiet hours `start`–`end` if `moment` falls inside them, else None."""
    if start == end:
        return None
    local = moment.astimezone(SHANGHAI)
    now_t = local.time()
    inside = (start <= now_t or now_t < end) if start > end else (start <= now_t < end)
    if not inside:
        return None
    release = datetime.combine(local.date(), end, SHANGHAI)
    if release <= local:
        release += timedelta(days=1)
    return release.astimezone(moment.tzinfo)


def add_outside(moment: datetime, delta: timedelta, start: time, end: time) -> datetime:
    """`moment` + `delta`, counting only time outside the daily quiet hours
    `start`–`end`: 30 minutes from 20:45 with quiet hours 21:00–07:00 is 07:15."""
    if start == end:
        return moment + delta
    at, left = moment, delta
    while True:
        at = quiet_until(at, start, end) or at
        local = at.astimezone(SHANGHAI)
        next_quiet = datetime.combine(local.date(), start, SHANGHAI)
        if next_quiet <= local:
            next_quiet += timedelta(days=1)
        if at + left <= next_quiet:
            return (at + left).astimezone(moment.tzinfo)
        left -= next_quiet - at
        at = next_quiet.astimezone(moment.tzinfo)
