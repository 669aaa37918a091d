"""The registry changes the staff console asks for: registering and
updating a volunteer (volunteers.staff_action's register and update) and a
roster's checked rows (volunteers.roster_import). Each is carried out once
per change id, whatever the number of times it arrives, and its outcome is
kept (StaffChange) for the console to read: done, or refused because the
phone number is registered already, the volunteer lives outside the grid
leader's grid, there is no such volunteer, they have more tasks in hand
than the new capacity, or the channels to remove changed meanwhile."""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from services.common import contract

from .models import Building, StaffChange, Volunteer

log = logging.getLogger(__name__)


def _in_grid(session, grid: str | None, building: str | None) -> bool:
    """A grid leader's changes stay in their grid (the office's, grid None, anywhere)."""
    if grid is None or building is None:
        return True
    found = session.get(Building, building)
    return found is not None and found.grid == grid


def _phone_taken(session, phone: str, but: int | None = None) -> bool:
    found = session.scalar(select(Volunteer.id).where(Volunteer.phone == phone))
    return found is not None and found != but


def _as_shown(vol: Volunteer, removals: list[dict]) -> bool:
    """The channels to remove are still where the console showed them."""
    return all(r["index"] < len(vol.channels) and contract.mask_url(vol.channels[r["index"]]) == r["masked"]
               for r in removals)


def record_change(session, data: dict, action: str, now: datetime, volunteer_id=None, reason=None,
                  report=None) -> StaffChange:
    """The outcome of a change the console asked for, under its change id."""
    change = StaffChange(id=str(data["change_id"]), action=action, actor=data["actor"], volunteer_id=volunteer_id,
                         outcome="refused" if reason else "done", reason=reason, report=report or {}, done_at=now)
    session.add(change)
    session.flush()  # a second copy racing this one fails on the primary key, and is retried
    log.info("registry change", extra={"change_id": change.id, "action": action, "outcome": change.outcome,
                                       "reason": reason, "volunteer_id": volunteer_id, "actor": data["actor"]})
    return change


def carried_out(session, data: dict) -> StaffChange | None:
    """The change already carried out under this message's change id, if any."""
    return session.get(StaffChange, str(data["change_id"])) if data.get("change_id") else None


def register(session, data: dict, phone_key: str, now: datetime) -> StaffChange:
    """A new volunteer, once per change id; a known phone is refused."""
    if (done := carried_out(session, data)) is not None:
        return done
    new = data["volunteer"]
    if not _in_grid(session, data.get("grid"), new["building"]):
        return record_change(session, data, "register", now, reason="out_of_scope")
    if _phone_taken(session, new["phone"]):
        return record_change(session, data, "register", now, reason="phone_taken")
    vol = Volunteer()
    vol.apply(new, phone_key, actor=data["actor"], at=now)
    session.add(vol)
    session.flush()
    return record_change(session, data, "register", now, volunteer_id=vol.id)


def update(session, data: dict, phone_key: str, now: datetime) -> StaffChange | None:
    """The office's changes to a volunteer. A change without a change id (as
    the console sent before it edited every field) is not recorded."""
    if (done := carried_out(session, data)) is not None:
        return done
    changes = data.get("changes") or {k: data[k] for k in ("capacity", "skills") if data.get(k) is not None}
    vol = session.get(Volunteer, data["volunteer_id"])
    reason = None
    if vol is None:
        if not data.get("change_id"):
            raise LookupError("no such volunteer")
        reason = "no_such_volunteer"
    elif not (_in_grid(session, data.get("grid"), vol.building)
              and _in_grid(session, data.get("grid"), changes.get("building"))):
        reason = "out_of_scope"
    elif "phone" in changes and _phone_taken(session, changes["phone"], but=vol.id):
        reason = "phone_taken"
    elif changes.get("capacity", vol.capacity) < vol.active_tasks:
        reason = "busy"  # fewer places than tasks in hand: the database would refuse it
    elif not _as_shown(vol, data.get("remove_channels") or []):
        reason = "channels_changed"
    else:
        gone = {r["index"] for r in data.get("remove_channels") or []}
        if gone:
            vol.channels = [c for i, c in enumerate(vol.channels) if i not in gone]
        vol.apply(changes, phone_key, actor=data["actor"], at=now)
    if not data.get("change_id"):
        return None
    return record_change(session, data, "update", now, volunteer_id=data["volunteer_id"], reason=reason)


def import_rows(session, data: dict, phone_key: str, now: datetime) -> StaffChange:
    """A roster's checked rows: each registers a volunteer or updates the one
    with its phone number; a row outside a grid leader's grid is refused."""
    if (done := carried_out(session, data)) is not None:
        return done
    grid, registered, updated, refused = data.get("grid"), 0, 0, []
    for number, row in zip(data["row_numbers"], data["rows"], strict=True):
        vol = session.scalar(select(Volunteer).where(Volunteer.phone == row["phone"]))
        if not (_in_grid(session, grid, row["building"]) and (vol is None or _in_grid(session, grid, vol.building))):
            refused.append({"row": number, "reason": "out_of_scope"})
            continue
        if vol is None:
            vol, registered = Volunteer(), registered + 1
            session.add(vol)
        else:
            updated += 1
        vol.apply(row, phone_key, actor=data["actor"], at=now)
        session.flush()  # the next row with this phone finds this volunteer
    return record_change(session, data, "import", now, report={"rows": len(data["rows"]), "registered": registered,
                                                        "updated": updated, "refused": refused})
