"""The hotline-grade loop (GB/T 33358-2016, 12345 rules): timers for taking
and completing a request, one extension with a reason the resident sees,
hand-backs of a mis-routed request, and the three rates the community office
watches (响应率 response, 解决率 resolution, 满意率 satisfaction).

Pure functions of rows and the clock, so the console, the beat jobs and the
tests compute the same thing."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from services.common import clock
from services.common.clock import SHANGHAI  # noqa: F401 (callers read hotline.SHANGHAI)
from services.common.contract import CATEGORIES
from services.common.workdays import calendar

# Working days follow the State Council's schedule with the office's
# corrections (services.common.workdays): holidays are not working days,
# the make-up Saturdays and Sundays (调休) are.
DAY_START, DAY_END = time(8, 0), time(20, 0)  # the "daytime" the 2-hour take timer counts in
MAX_EXTENSION_WORKING_DAYS = 10
HANDBACK_LIMIT = 3  # after three hand-backs the grid leader decides
SATISFACTION_ALERT = 0.85


@dataclass(frozen=True)
class Timer:
    take_hours: int  # counted in daytime hours
    complete_working_days: int | None = None
    complete_days: int | None = None  # calendar days (complex cases)
    max_days: int = 7  # an ordinary request never takes longer than this

    def complete_by(self, start: datetime) -> datetime:
        if self.complete_days is not None:
            return start + timedelta(days=self.complete_days)
        due = add_working_days(start, self.complete_working_days or 5)
        # The 7-day ceiling is a week with its weekend: a public holiday
        # (春节, 国庆) does not use it up.
        return min(due, calendar().add_days_outside_holidays(start, self.max_days))


def timers(overrides: dict) -> dict[str, Timer]:
    """Per-category timers: defaults from Chinese hotline practice (12345, GB/T 33358-2016), then the operator's
    LINLI_TIMERS (JSON: {"parking": {"complete_days": 20}, ...})."""
    default = {"take_hours": 2, "complete_working_days": 5}
    per_category = {
        "environment": {"take_hours": 24},  # utilities: taken within 24 h
        "lift_retrofit": {"complete_days": 15, "complete_working_days": None},
        "parking": {"complete_days": 15, "complete_working_days": None},
        # A visit is due on its day; what a visitor found is seen to within two.
        "visit": {"take_hours": 4, "complete_days": 1, "complete_working_days": None},
        "welfare": {"take_hours": 2, "complete_days": 2, "complete_working_days": None},
    }
    out = {}
    for cat in CATEGORIES:
        spec = {**default, **per_category.get(cat.code, {}), **overrides.get(cat.code, {})}
        out[cat.code] = Timer(**spec)
    return out


def add_working_days(start: datetime, days: int) -> datetime:
    """`days` working days after `start`, by the current app's calendar."""
    return calendar().add_working_days(start, days)


def add_daytime_hours(start: datetime, hours: int) -> datetime:
    """A take timer counts daytime hours (08:00–20:00 Hangzhou time): a
    request sent at 23:00 is due by 10:00 the next morning, not at 01:00."""
    return clock.add_outside(start, timedelta(hours=hours), DAY_END, DAY_START)


def deadlines(timer: Timer, created: datetime) -> tuple[datetime, datetime]:
    """(take_by, due_at) of a request created now."""
    return add_daytime_hours(created, timer.take_hours), timer.complete_by(created)


def handback_open_until(routed_at: datetime) -> datetime:
    """A mis-routed request may be handed back within one working day."""
    return add_working_days(routed_at, 1)


def overdue(req, now: datetime) -> bool:
    if req.status in ("completed", "closed", "cancelled"):
        return False
    if req.taken_at is None and req.take_by is not None and now > req.take_by:
        return True
    return req.due_at is not None and now > req.due_at


# "Due soon" on the console: the take-by time within the hour, or the
# completion deadline within a day.
SOON_TAKE = timedelta(hours=1)
SOON_DONE = timedelta(days=1)


def deadline_state(req, now: datetime) -> str | None:
    """"overdue", "due_soon" or None, for the console's labels."""
    if overdue(req, now):
        return "overdue"
    if req.status in ("completed", "closed", "cancelled"):
        return None
    if req.taken_at is None and req.take_by is not None and now > req.take_by - SOON_TAKE:
        return "due_soon"
    if req.due_at is not None and now > req.due_at - SOON_DONE:
        return "due_soon"
    return None


@dataclass
class Rates:
    requests: int = 0
    taken_in_time: int = 0
    resolved: int = 0
    rated: int = 0
    satisfied: int = 0

    @property
    def response(self) -> float | None:
        return self.taken_in_time / self.requests if self.requests else None

    @property
    def resolution(self) -> float | None:
        return self.resolved / self.requests if self.requests else None

    @property
    def satisfaction(self) -> float | None:
        return self.satisfied / self.rated if self.rated else None

    @property
    def alert(self) -> bool:
        return self.satisfaction is not None and self.satisfaction < SATISFACTION_ALERT


def rates(rows, key) -> dict:
    """The three rates per key (grid, category, ...), over requests that
    were not withdrawn. Response: taken before the take timer ran out.
    Resolution: completed or closed and not reopened by the resident.
    Satisfaction: follow-ups rated 4 or 5 and resolved, of all rated."""
    out: dict = defaultdict(Rates)
    for req in rows:
        if req.status == "cancelled":
            continue
        r = out[key(req)]
        r.requests += 1
        if req.taken_at is not None and (req.take_by is None or req.taken_at <= req.take_by):
            r.taken_in_time += 1
        if req.status in ("completed", "closed") and not req.reopened:
            r.resolved += 1
        if req.feedback is not None:
            r.rated += 1
            if req.feedback.rating >= 4 and req.feedback.resolved:
                r.satisfied += 1
    return dict(out)


def median(values: list[float]) -> float | None:
    values = sorted(values)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
