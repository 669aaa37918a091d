"""Volunteer rosters as a community office keeps them: CSV or Excel
(XLSX), one volunteer a row. Every row is validated with the API's schema;
a file with bad rows imports nothing unless the good rows are asked for,
and the report says row by row what is wrong."""
from __future__ import annotations

import csv
import io
import re
import zipfile
from typing import Callable, Iterable

from marshmallow import ValidationError
from openpyxl import load_workbook
from sqlalchemy import select

from services.common.tables import table

from .models import Volunteer
from .schemas import VolunteerIn, format_windows, parse_windows

COLUMNS = ("name", "display_name", "phone", "building", "unit", "skills", "verified", "teams", "capacity",
           "language", "windows", "days_off", "active", "channels")
# Channel URLs are secrets: never exported.
EXPORT_COLUMNS = tuple(c for c in COLUMNS if c != "channels")
LIST_SPLIT = re.compile(r"[,，、;；\s]+")
TRUE = {"1", "true", "yes", "y", "是", "在岗"}


class RosterTooLarge(ValueError):
    """The file is past a configured bound; nothing of it is imported."""


def limits(cfg) -> dict:
    """read_rows' bounds from the service configuration."""
    return {"max_rows": cfg["ROSTER_MAX_ROWS"], "max_columns": cfg["ROSTER_MAX_COLUMNS"],
            "max_unpacked": cfg["ROSTER_MAX_UNPACKED_BYTES"]}


def read_rows(filename: str, data: bytes, max_rows: int = 5000, max_columns: int = 50,
              max_unpacked: int = 50 * 1024 * 1024) -> list[dict]:
    """Rows as {column: text}, from a CSV (UTF-8, with or without BOM) or
    the first sheet of an XLSX, both with a header row. Reading stops with
    RosterTooLarge past `max_rows` data rows or `max_columns` columns, and
    an XLSX that would unpack to more than `max_unpacked` bytes is not
    opened at all (a small zip can hold gigabytes of repeated cells)."""
    if filename.lower().endswith(".xlsx"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            # The sizes the archive declares bound what zipfile will unpack.
            if sum(info.file_size for info in archive.infolist()) > max_unpacked:
                raise RosterTooLarge(f"The workbook unpacks to more than {max_unpacked} bytes.")
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            values = book.active.iter_rows(values_only=True)
            header = [str(h or "").strip() for h in next(values, ())]
            _bounded({}, _width(header), 0, max_rows, max_columns)
            rows = []
            for row in values:
                rows.append(_bounded(dict(zip(header, ("" if v is None else str(v) for v in row), strict=False)),
                                     _width(row), len(rows), max_rows, max_columns))
        finally:
            book.close()  # read-only workbooks keep the archive open until closed
    else:
        reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
        if len(reader.fieldnames or ()) > max_columns:
            raise RosterTooLarge(f"The roster has more than {max_columns} columns.")
        rows = []
        for row in reader:
            width = len(reader.fieldnames) + len(row.pop(None, None) or ())  # cells past the header's
            rows.append(_bounded(row, width, len(rows), max_rows, max_columns))
    return [r for r in rows if any((v or "").strip() for v in r.values())]


def _width(cells) -> int:
    """Up to the last filled cell: a read-only sheet pads rows to the width
    its dimension claims."""
    return max((i + 1 for i, v in enumerate(cells) if v not in (None, "")), default=0)


def _bounded(row: dict, width: int, count: int, max_rows: int, max_columns: int) -> dict:
    if count >= max_rows:
        raise RosterTooLarge(f"The roster has more than {max_rows} rows; split it into smaller files.")
    if width > max_columns:
        raise RosterTooLarge(f"The roster has more than {max_columns} columns.")
    return row


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


def import_roster(session, rows: list[dict], phone_key: str, partial: bool, progress=None) -> dict:
    """Validate every row; create or update (by phone) the good ones when
    the file is clean or partial import was asked for. Staged in the
    caller's transaction: the caller commits."""
    good, errors = validate_rows(rows, progress)
    imported = 0
    if good and (partial or not errors):
        for _, data in good:
            vol = session.scalar(select(Volunteer).where(Volunteer.phone == data["phone"])) or Volunteer()
            vol.apply(data, phone_key)
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
