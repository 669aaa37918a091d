"""Volunteer rosters as a community office keeps them: CSV or Excel
(XLSX), one volunteer a row. Every row is validated with the API's schema;
a file with bad rows imports nothing unless the good rows are asked for,
and the report says row by row what is wrong."""
from __future__ import annotations

import csv
import io
import re
from typing import Callable, Iterable

from marshmallow import ValidationError
from openpyxl import load_workbook

from services.common.tables import table

from .schemas import VolunteerIn, format_windows, parse_windows

COLUMNS = ("name", "display_name", "phone", "building", "unit", "skills", "verified", "teams", "capacity",
           "language", "windows", "days_off", "active", "channels")
# Channel URLs are secrets: never exported.
EXPORT_COLUMNS = tuple(c for c in COLUMNS if c != "channels")
LIST_SPLIT = re.compile(r"[,，、;；\s]+")
TRUE = {"1", "true", "yes", "y", "是", "在岗"}


def read_rows(filename: str, data: bytes) -> list[dict]:
    """Rows as {column: text}, from a CSV (UTF-8, with or without BOM) or
    the first sheet of an XLSX, both with a header row."""
    if filename.lower().endswith(".xlsx"):
        sheet = load_workbook(io.BytesIO(data), read_only=True, data_only=True).active
        values = list(sheet.iter_rows(values_only=True))
        header = [str(h or "").strip() for h in (values[0] if values else ())]
        rows = [dict(zip(header, ("" if v is None else str(v) for v in row), strict=False)) for row in values[1:]]
    else:
        text = data.decode("utf-8-sig")
        rows = list(csv.DictReader(io.StringIO(text)))
    return [r for r in rows if any((v or "").strip() for v in r.values())]


def to_input(row: dict) -> tuple[dict, dict]:
    """Roster text → the API's JSON shape (lists split on commas, 、 or
    spaces; windows like 'Sat 09:00-11:00; 周日 14:00-16:00'), and the
    errors found on the way."""
    def items(key):
        return [x for x in LIST_SPLIT.split((row.get(key) or "").strip()) if x]

    data = {k: (row.get(k) or "").strip() for k in ("name", "display_name", "phone", "building", "unit", "language")}
    data = {k: v for k, v in data.items() if v}
    data["skills"] = items("skills")
    data["verified"] = items("verified")
    data["teams"] = items("teams")
    data["channels"] = [c for c in re.split(r"\s+", (row.get("channels") or "").strip()) if c]
    capacity = (row.get("capacity") or "").strip()
    if capacity:
        data["capacity"] = int(capacity) if capacity.isdigit() else capacity
    errors = {}
    try:
        data["windows"] = parse_windows(row.get("windows") or "")
    except ValidationError as exc:
        errors["windows"] = exc.messages
    data["days_off"] = items("days_off")
    active = (row.get("active") or "").strip().lower()
    if active:
        data["active"] = active in TRUE
    return data, errors


def validate_rows(rows: Iterable[dict], progress: Callable[[int], None] | None = None):
    """→ (good [(row number, data)], errors [{row, errors}]); row 2 is the
    first after the header, as in the spreadsheet."""
    good, errors = [], []
    schema = VolunteerIn()
    for number, row in enumerate(rows, start=2):
        data, found = to_input(row)
        try:
            loaded = schema.load(data)
        except ValidationError as exc:
            found = {**exc.messages, **found}
        if found:
            errors.append({"row": number, "errors": found})
        else:
            good.append((number, loaded))
        if progress:
            progress(1)
    return good, errors


def export(volunteers, fmt: str) -> bytes:
    rows = [[
        v.name, v.display_name, v.phone, v.building, v.unit or "", " ".join(v.skill_codes),
        " ".join(v.verified_codes), " ".join(v.teams), v.capacity, v.language, format_windows(v.windows),
        " ".join(sorted(d.day.isoformat() for d in v.days_off)), "1" if v.active else "0",
    ] for v in volunteers]
    return table(EXPORT_COLUMNS, rows, fmt)
