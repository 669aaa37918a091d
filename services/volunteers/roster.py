"""Matching's side of volunteer rosters: importing the rows read and
checked by services.common.roster (the console's upload uses the same code)
into the registry, and the export."""
from __future__ import annotations

from sqlalchemy import select

from services.common.roster import COLUMNS, RosterTooLarge, limits, read_rows, validate_rows
from services.common.tables import table

from .models import Volunteer
from .schemas import format_windows

__all__ = ("RosterTooLarge", "limits", "read_rows", "validate_rows", "import_roster", "export")
# Channel URLs are secrets: never exported.
EXPORT_COLUMNS = tuple(c for c in COLUMNS if c != "channels")


def import_roster(session, rows: list[dict], phone_key: str, partial: bool, progress=None,
                  actor: str | None = None, at=None) -> dict:
    """Validate every row; create or update (by phone) the good ones when
    the file is clean or partial import was asked for. Staged in the
    caller's transaction: the caller commits."""
    good, errors = validate_rows(rows, progress)
    imported = 0
    if good and (partial or not errors):
        for _, data in good:
            vol = session.scalar(select(Volunteer).where(Volunteer.phone == data["phone"])) or Volunteer()
            vol.apply(data, phone_key, actor=actor, at=at)
            session.add(vol)
            imported += 1
        session.flush()
    return {"rows": len(rows), "imported": imported, "errors": errors}


def export(volunteers, fmt: str) -> bytes:
    rows = [[
        v.name, v.display_name, v.phone, v.building, v.unit or "", " ".join(v.skill_codes),
        " ".join(v.verified_codes), " ".join(v.teams), v.capacity, v.language, format_windows(v.windows),
        " ".join(sorted(d.day.isoformat() for d in v.days_off)), "1" if v.active else "0",
    ] for v in volunteers]
    return table(EXPORT_COLUMNS, rows, fmt)
