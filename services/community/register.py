"""The register's rules (住户台账): whose households a staff member may see
(the console's scope), age bands, duplicates, the access log, and carrying
out the console's changes and imports — each once, by its change id, with
a refusal recorded per field when the register cannot take it."""
from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import and_, exists, false, func, or_, select, true
from sqlalchemy.orm import aliased, selectinload

from services.common import contract
from services.common.auth import StaffClaims

from .models import Household, HouseholdPhone, RegisterAccess, RegisterChange, Resident

log = logging.getLogger(__name__)

# Age bands the register shows (never the year of birth in a list).
BANDS = (("0-17", 0, 17), ("18-59", 18, 59), ("60-69", 60, 69), ("70-79", 70, 79), ("80+", 80, 200))
BAND_NAMES = tuple(b[0] for b in BANDS) + ("60+",)


def age_band(birth_year: int, year: int) -> str:
    age = year - birth_year
    return next((name for name, low, high in BANDS if low <= age <= high), "80+")


def born_in_band(band: str, year: int):
    """The SQL filter on Resident.birth_year for an age band this year."""
    if band == "60+":
        return Resident.birth_year <= year - 60
    low, high = next((lo, hi) for name, lo, hi in BANDS if name == band)
    return and_(Resident.birth_year <= year - low, Resident.birth_year >= year - high)


# --- scope: as the console's (services.common.auth.StaffClaims) ---


def in_scope(acting: StaffClaims, table=Household):
    """A SQL filter on households: all of them for the office, a grid
    leader's grid, a hallway leader's stairwells ("building:unit")."""
    if acting.admin:
        return true()
    if acting.role == "grid_leader":
        return table.grid == acting.grid if acting.grid else false()
    pairs = [s.split(":", 1) for s in acting.stairwells if ":" in s]
    return or_(*(and_(table.building == b, table.unit == u) for b, u in pairs)) if pairs else false()


def allows(acting: StaffClaims, household: Household) -> bool:
    return acting.allows_place(household.grid, household.building, household.unit)


def claims_of(data: dict) -> StaffClaims:
    """The scope a task carries (contract.StaffScope) as claims."""
    return StaffClaims(data["actor"], data["role"], data.get("grid"), tuple(data.get("stairwells") or ()))


# --- duplicates: the same room twice, the same phone in two households ---


def same_room():
    """Open households sharing their building, unit and room with another open one."""
    other = aliased(Household)
    return exists().where(other.id != Household.id, other.closed_at.is_(None), other.building == Household.building,
                          other.unit == Household.unit, other.room == Household.room)


def same_phone():
    """Open households with a phone that another open household has too."""
    mine, theirs, other = aliased(HouseholdPhone), aliased(HouseholdPhone), aliased(Household)
    return exists().where(mine.household_id == Household.id, theirs.phone_digest == mine.phone_digest,
                          theirs.household_id != Household.id, other.id == theirs.household_id,
                          other.closed_at.is_(None))


def duplicates(session, ids: list[int]) -> dict[int, list[str]]:
    """For the households on a page: which of them are flagged, and why."""
    if not ids:
        return {}
    flags: dict[int, list[str]] = {}
    for kind, test in (("room", same_room()), ("phone", same_phone())):
        for hid in session.scalars(select(Household.id).where(Household.id.in_(ids), test)):
            flags.setdefault(hid, []).append(kind)
    return flags


# --- the access log ---


def record(session, acting: StaffClaims, action: str, *, rows: int = 0, household_id=None, resident_id=None,
           sensitive: bool = False, at: datetime | None = None) -> None:
    """Who looked at (or changed) register data: one row per list, view,
    export, lookup, import or change, `sensitive` when sealed fields were shown."""
    session.add(RegisterAccess(actor=acting.actor, action=action, rows=rows, household_id=household_id,
                               resident_id=resident_id, sensitive=sensitive, **({"at": at} if at else {})))


# --- changes from the console ---

OUT_OF_SCOPE = "out_of_scope"
NO_SUCH = "not_found"
CLOSED = "closed"


class Refused(Exception):
    def __init__(self, reason: str, fields: dict | None = None):
        super().__init__(reason)
        self.reason, self.fields = reason, fields or {}


def _grid(building: str) -> str:
    return contract.grid_of(building) or ""


def _apply_household(session, household: Household, data: dict, phone_key: str) -> None:
    for key in ("building", "unit", "floor", "room", "floor_area", "tenure"):
        setattr(household, key, data[key])
    household.grid = _grid(data["building"])
    wanted = list(dict.fromkeys(data.get("phones") or []))
    kept = [p for p in household.phones if p.phone in wanted]
    for phone in household.phones:
        if phone not in kept:
            session.delete(phone)
    household.phones = kept + [HouseholdPhone(phone=p, phone_digest=contract.phone_digest(p, phone_key))
                               for p in wanted if p not in {k.phone for k in kept}]


RESIDENT_FIELDS = ("name", "sex", "birth_year", "relation", "phone", "lives_alone", "party_member", "care_need",
                   "disability", "reach_by", "emergency_name", "emergency_relation", "emergency_phone",
                   "consent_contact", "consent_on", "consent_how")


def _apply_resident(resident: Resident, data: dict, phone_key: str, keep_sealed: bool = False) -> None:
    for key in RESIDENT_FIELDS:
        if keep_sealed and key in ("care_need", "disability") and resident.id is not None:
            continue
        setattr(resident, key, data.get(key))
    if resident.care_need == "none":
        resident.care_need = None  # nothing to seal: "none" and never filled read the same
    resident.phone_digest = contract.phone_digest(resident.phone, phone_key) if resident.phone else None


def _household(session, acting, household_id: int, open_only=True) -> Household:
    household = session.get(Household, household_id)
    if household is None:
        raise Refused(NO_SUCH)
    if not allows(acting, household):
        raise Refused(OUT_OF_SCOPE)
    if open_only and household.closed_at is not None:
        raise Refused(CLOSED)
    return household


def _place_allowed(acting: StaffClaims, data: dict) -> None:
    if not acting.allows_place(_grid(data["building"]), data["building"], data["unit"]):
        raise Refused(OUT_OF_SCOPE, {"building": ["outside your area"]})


def apply_change(session, data: dict, phone_key: str, now: datetime) -> str:
    """Carry out one console change (contract.RegisterEdit) once: a change
    id seen before is a no-op. Returns the outcome (applied, refused, repeat)."""
    change_id = str(data["change_id"])
    if session.get(RegisterChange, change_id) is not None:
        return "repeat"
    acting = claims_of(data)
    change = RegisterChange(change_id=change_id, kind=data["action"], actor=acting.actor, at=now)
    action = data["action"]
    try:
        if action == "add_household":
            _place_allowed(acting, data["household"])
            household = Household(demo=False)
            _apply_household(session, household, data["household"], phone_key)
            session.add(household)
            session.flush()
            change.household_id = household.id
        elif action == "edit_household":
            household = _household(session, acting, data["household_id"])
            _place_allowed(acting, data["household"])
            _apply_household(session, household, data["household"], phone_key)
            change.household_id = household.id
        elif action == "close_household":
            household = _household(session, acting, data["household_id"])
            household.closed_at, household.closed_reason = now, data["reason"]
            for resident in household.residents:
                if resident.closed_at is None:
                    resident.closed_at, resident.closed_reason = now, data["reason"]
            change.household_id = household.id
        elif action == "add_resident":
            household = _household(session, acting, data["household_id"])
            resident = Resident(household=household)
            _apply_resident(resident, data["resident"], phone_key)
            session.add(resident)
            session.flush()
            change.household_id, change.resident_id = household.id, resident.id
        else:  # edit_resident, close_resident
            resident = session.get(Resident, data["resident_id"])
            if resident is None:
                raise Refused(NO_SUCH)
            _household(session, acting, resident.household_id, open_only=False)
            if resident.closed_at is not None:
                raise Refused(CLOSED)
            if action == "edit_resident":
                _apply_resident(resident, data["resident"], phone_key)
            else:
                resident.closed_at, resident.closed_reason = now, data["reason"]
            change.household_id, change.resident_id = resident.household_id, resident.id
        change.outcome = "applied"
        record(session, acting, "close" if action.startswith("close_") else "edit",
               household_id=change.household_id, resident_id=change.resident_id, at=now,
               sensitive=action in ("add_resident", "edit_resident"))
    except Refused as refused:
        # Every refusal comes before the first change: nothing to undo.
        change = RegisterChange(change_id=change_id, kind=action, actor=acting.actor, at=now, outcome="refused",
                                detail={"reason": refused.reason, "fields": refused.fields},
                                household_id=data.get("household_id"), resident_id=data.get("resident_id"))
        log.info("register change refused", extra={"change_id": change_id, "reason": refused.reason})
    session.add(change)
    return change.outcome


def import_rows(session, data: dict, phone_key: str, now: datetime) -> str:
    """A register file's checked rows (contract.RegisterImport), once:
    households found by building, unit and room (an open one) or added;
    residents found by name and year of birth in it, or added. Rows outside
    the asker's scope are refused, each with its row number."""
    change_id = str(data["change_id"])
    if session.get(RegisterChange, change_id) is not None:
        return "repeat"
    acting = claims_of(data)
    outside = [n for n, row in zip(data["row_numbers"], data["rows"], strict=True)
               if not acting.allows_place(_grid(row["household"]["building"]), row["household"]["building"],
                                          row["household"]["unit"])]
    if outside:
        session.add(RegisterChange(change_id=change_id, kind="import", actor=acting.actor, at=now,
                                   outcome="refused", detail={"reason": OUT_OF_SCOPE, "rows": outside[:100]}))
        return "refused"
    households: dict[tuple, Household] = {}
    everyone = select(Household).where(Household.closed_at.is_(None)).order_by(Household.id).options(
        selectinload(Household.residents), selectinload(Household.phones))
    for h in session.scalars(everyone):
        households.setdefault((h.building, h.unit, h.room), h)
    added = {"households": 0, "residents": 0, "updated": 0}
    for row in data["rows"]:
        place = (row["household"]["building"], row["household"]["unit"], row["household"]["room"])
        household = households.get(place)
        if household is None:
            household = households[place] = Household(demo=False)
            session.add(household)
            added["households"] += 1
        row_phones = row["household"].get("phones") or []
        merged = {**row["household"], "phones": list(dict.fromkeys([p.phone for p in household.phones] + row_phones))
                  [:3]}
        _apply_household(session, household, merged, phone_key)
        resident = next((r for r in household.residents if r.closed_at is None and r.name == row["resident"]["name"]
                         and r.birth_year == row["resident"]["birth_year"]), None)
        if resident is None:
            resident = Resident(household=household)
            session.add(resident)
            added["residents"] += 1
        else:
            added["updated"] += 1
        _apply_resident(resident, row["resident"], phone_key, keep_sealed=row.get("keep_sealed", False))
    session.flush()
    session.add(RegisterChange(change_id=change_id, kind="import", actor=acting.actor, at=now, outcome="applied",
                               detail=added))
    record(session, acting, "import", rows=len(data["rows"]), sensitive=True, at=now)
    log.info("register imported", extra={"change_id": change_id, **added})
    return "applied"


def open_residents(household: Household) -> list[Resident]:
    return [r for r in household.residents if r.closed_at is None]


def count_over(session, year: int, age: int = 60):
    return session.scalar(select(func.count()).select_from(Resident).where(
        Resident.closed_at.is_(None), Resident.birth_year <= year - age))
