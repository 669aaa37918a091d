"""The matching engine: pure (no I/O), so it can be tested on its own.

Given a request and the volunteers, return the candidates best first, each
with the reasons for its place. This is the simple rule of the foundation:
hard filters (skill, active, under capacity, not already asked), then
nearness (same stairwell > same building > same grid > community), then
load, then a stable tie-break on the volunteer id.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Place:
    building: str
    unit: str | None
    grid: str


@dataclass(frozen=True)
class RequestFacts:
    category: str
    place: Place


@dataclass(frozen=True)
class VolunteerFacts:
    id: int
    skills: frozenset[str]
    active: bool
    capacity: int
    active_tasks: int
    place: Place


@dataclass(frozen=True)
class Candidate:
    volunteer_id: int
    nearness: int
    load: float
    reasons: tuple[str, ...]


NEARNESS = ((3, "same_stairwell"), (2, "same_building"), (1, "same_grid"), (0, "same_community"))


def nearness(a: Place, b: Place) -> int:
    if a.building == b.building:
        return 3 if a.unit and a.unit == b.unit else 2
    return 1 if a.grid == b.grid else 0


def eligible(req: RequestFacts, vol: VolunteerFacts) -> bool:
    return vol.active and req.category in vol.skills and vol.active_tasks < vol.capacity


def rank(req: RequestFacts, volunteers: Iterable[VolunteerFacts],
         exclude: frozenset[int] = frozenset()) -> list[Candidate]:
    found = []
    for vol in volunteers:
        if vol.id in exclude or not eligible(req, vol):
            continue
        near = nearness(req.place, vol.place)
        load = vol.active_tasks / vol.capacity
        reasons = (dict(NEARNESS)[near], f"load_{vol.active_tasks}_of_{vol.capacity}")
        found.append(Candidate(vol.id, near, load, reasons))
    found.sort(key=lambda c: (-c.nearness, c.load, c.volunteer_id))
    return found
