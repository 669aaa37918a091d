"""The matching engine: pure (no I/O, no clock of its own), so that it can
be tested and benchmarked on its own.

Given a request and the volunteers, return the candidates best first, each
with the reasons for its score.

- Hard filters: has the skill (verified, where the category needs a
  credential), active, under capacity, available in the requested window
  (weekly windows, days off), not the requester.
- Soft score: nearness (same stairwell > same building > same grid >
  community), load, fairness (time since last task), reliability (accept
  rate), rating; weights in configuration.
- Ties are broken by volunteer id: the same input gives the same ranking.

Which volunteers it is given is the caller's choice: matching's dispatch
reads only those the database can tell might take the request, nearest
first (dispatch.Dispatcher.best_free).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Iterable

from services.common.clock import SHANGHAI


@dataclass(frozen=True)
class Place:
    building: str
    unit: str | None
    grid: str


@dataclass(frozen=True)
class Window:
    """A weekly availability window in local (Asia/Shanghai) time; weekday 0 is Monday."""

    weekday: int
    start: time
    end: time


@dataclass(frozen=True)
class RequestFacts:
    category: str
    place: Place
    window_start: datetime | None = None
    window_end: datetime | None = None
    urgent: bool = False
    vulnerable: bool = False  # over 80 or with a disability
    requester_digest: str | None = None
    credential_required: bool = False

    @property
    def priority(self) -> int:
        return int(self.urgent) + int(self.vulnerable)


@dataclass(frozen=True)
class VolunteerFacts:
    id: int
    skills: frozenset[str]
    active: bool
    capacity: int
    active_tasks: int
    place: Place
    verified: frozenset[str] = frozenset()
    windows: tuple[Window, ...] = ()  # none declared: any time
    days_off: frozenset[date] = frozenset()
    last_task_at: datetime | None = None
    offers: int = 0
    accepts: int = 0
    rating: float | None = None  # average of 1–5
    phone_digest: str | None = None


@dataclass(frozen=True)
class Weights:
    nearness: float = 100.0  # per step: stairwell 3, building 2, grid 1, community 0
    load: float = 20.0
    fairness: float = 10.0
    reliability: float = 10.0
    rating: float = 10.0
    fairness_days: float = 30.0  # a month without a task counts fully

    @property
    def nearness_decides(self) -> bool:
        """True when one step of nearness outweighs all else together, so
        that a nearer tier always ranks above a farther one."""
        return self.nearness > self.load + self.fairness + self.reliability + self.rating


@dataclass(frozen=True)
class Candidate:
    volunteer_id: int
    score: float
    reasons: tuple[str, ...]


NEARNESS_REASON = {3: "same_stairwell", 2: "same_building", 1: "same_grid", 0: "same_community"}


def nearness(a: Place, b: Place) -> int:
    if a.building == b.building:
        return 3 if a.unit and a.unit == b.unit else 2
    return 1 if a.grid == b.grid else 0


def available(vol: VolunteerFacts, start: datetime | None, end: datetime | None) -> bool:
    """Is some part of the requested window inside the volunteer's weekly
    windows, on a day that is not a day off? No window asked: yes."""
    if start is None and end is None:
        return True
    start = (start or end - timedelta(hours=1)).astimezone(SHANGHAI)
    end = (end or start + timedelta(hours=1)).astimezone(SHANGHAI)
    day = start.date()
    while day <= end.date():
        if day not in vol.days_off:
            if not vol.windows:
                return True
            for w in vol.windows:
                if w.weekday != day.weekday():
                    continue
                w_start = datetime.combine(day, w.start, SHANGHAI)
                w_end = datetime.combine(day, w.end, SHANGHAI)
                if w_start < end and start < w_end:
                    return True
        day += timedelta(days=1)
    return False


def qualified(req: RequestFacts, vol: VolunteerFacts) -> bool:
    """Could this volunteer ever take the request (ignoring how busy they are)?"""
    if not vol.active or req.category not in vol.skills:
        return False
    if req.credential_required and req.category not in vol.verified:
        return False
    if req.requester_digest and vol.phone_digest == req.requester_digest:
        return False
    return available(vol, req.window_start, req.window_end)


def eligible(req: RequestFacts, vol: VolunteerFacts, tasks: int | None = None) -> bool:
    """Qualified and with room for one more task now."""
    busy = vol.active_tasks if tasks is None else tasks
    return busy < vol.capacity and qualified(req, vol)


def _parts(req: RequestFacts, vol: VolunteerFacts, now: datetime, weights: Weights, busy: int):
    near = nearness(req.place, vol.place)
    free = 1.0 - busy / vol.capacity
    if vol.last_task_at is None:
        idle = 1.0
    else:
        idle = min(1.0, max(0.0, (now - vol.last_task_at).total_seconds() / 86400 / weights.fairness_days))
    reliability = (vol.accepts + 1) / (vol.offers + 2)  # Laplace: newcomers start at one half
    rating = ((vol.rating if vol.rating is not None else 4.0) - 1.0) / 4.0
    total = (weights.nearness * near + weights.load * free + weights.fairness * idle
             + weights.reliability * reliability + weights.rating * rating)
    return round(total, 6), near, free, idle, reliability, rating


def score(req: RequestFacts, vol: VolunteerFacts, now: datetime, weights: Weights,
          tasks: int | None = None) -> Candidate:
    """The score with its reasons (why this volunteer, in this place)."""
    total, near, free, idle, reliability, rating = _parts(
        req, vol, now, weights, vol.active_tasks if tasks is None else tasks)
    reasons = (NEARNESS_REASON[near], f"free:{free:.2f}", f"idle:{idle:.2f}", f"reliability:{reliability:.2f}",
               f"rating:{rating:.2f}")
    return Candidate(vol.id, total, reasons)


def _order(scored):
    return (-scored[0], scored[1])  # highest score first, ties to the lower id


def _best(req, scored: list[tuple[float, int, VolunteerFacts, int]], now, weights, limit) -> list[Candidate]:
    """The best `limit` (or all), with reasons only for those returned."""
    chosen = sorted(scored, key=_order) if limit is None else heapq.nsmallest(limit, scored, key=_order)
    return [score(req, v, now, weights, busy) for _, _, v, busy in chosen]


def rank(req: RequestFacts, volunteers: Iterable[VolunteerFacts], now: datetime, weights: Weights = Weights(),
         exclude: frozenset[int] = frozenset(), limit: int | None = None,
         tasks: dict[int, int] | None = None) -> list[Candidate]:
    """Rank every eligible volunteer given, best first (the best `limit`)."""
    scored = []
    for v in volunteers:
        busy = tasks.get(v.id, v.active_tasks) if tasks else v.active_tasks
        if v.id not in exclude and eligible(req, v, busy):
            scored.append((_parts(req, v, now, weights, busy)[0], v.id, v, busy))
    return _best(req, scored, now, weights, limit)
