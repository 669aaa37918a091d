"""Who may see which part of the register: the acting staff member's claims
(services.common.auth) as a SQL filter on Household — the office all of it,
a grid leader their grid, a hallway leader their stairwells — and the
access log every read of register data writes."""
from __future__ import annotations

from flask import g
from sqlalchemy import and_, false, or_, true

from services.common import extensions as ext

from .models import Household, RegisterAccess


def in_scope():
    acting = g.acting
    if acting.admin:
        return true()
    if acting.role == "grid_leader":
        return Household.grid == acting.grid
    pairs = [s.split(":", 1) for s in acting.stairwells]
    return or_(*(and_(Household.building == b, Household.unit == u) for b, u in pairs)) if pairs else false()


def allows(home: Household) -> bool:
    return g.acting.allows_place(home.grid, home.building, home.unit)


def record_access(action: str, *, rows: int = 0, household_id: int | None = None, resident_id: int | None = None,
                  sensitive: bool = False) -> None:
    """One line of the access log, in the request's session (the view commits)."""
    ext.db_session().add(RegisterAccess(actor=g.acting.actor, action=action, rows=rows, household_id=household_id,
                                        resident_id=resident_id, sensitive=sensitive))
