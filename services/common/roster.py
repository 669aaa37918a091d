"""Volunteer rosters as a community office keeps them: CSV or Excel (XLSX),
one volunteer a row, read within bounds and each row checked with the
contract's VolunteerIn. Matching's import and the staff console's upload
read and check a file with this same code, so the console's report is the
one matching would give."""
from __future__ import annotations

import csv
import io
import re
import zipfile
from typing import Callable, Iterable

from marshmallow import ValidationError
from openpyxl import load_workbook

from .contract import VolunteerIn
from .i18n import N_

COLUMNS = ("name", "display_name", "phone", "building", "unit", "skills", "verified", "teams", "capacity",
           "language", "windows", "days_off", "active", "channels")
LIST_SPLIT = re.compile(r"[,，、;；\s]+")
TRUE = {"1", "true", "yes", "y", "是", "在岗"}
WEEKDAYS = {
    **{name: i for i, name in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))},
    **{name: i for i, name in enumerate(("周一", "周二", "周三", "周四", "周五", "周六", "周日"))},
    "周天": 6,
}
WINDOW_TEXT = re.compile(r"^\s*(\S+)\s+(\d{1,2}:\d{2})\s*[-–~至]\s*(\d{1,2}:\d{2})\s*$")
NOT_A_WINDOW = N_("Not a weekly window: write e.g. 'Sat 09:00-11:00; 周日 14:00-16:00'.")


def parse_windows(text: str) -> list[dict]:
    """'Sat 09:00-11:00; 周日 14:00-16:00' (roster files) → window dicts."""
    windows = []
    for part in re.split(r"[;；\n]", text or ""):
        if not part.strip():
            continue
        match = WINDOW_TEXT.match(part)
        token = match.group(1) if match else ""
        day = WEEKDAYS.get(token.lower()[:3] if token.isascii() else token)
        if day is None:
            raise ValidationError(NOT_A_WINDOW)
        windows.append({"weekday": day, "start": match.group(2).zfill(5), "end": match.group(3).zfill(5)})
    return windows


class RosterTooLarge(ValueError):
    """The file is past a configured bound; nothing of it is imported."""


def roster_settings() -> dict:
    """The bounds on a roster file, from the environment; the same in matching
    and in the console that checks a file before handing its rows over."""
    from .settings import integer

    # Roster files are read whole before the first row is checked: a bound on
    # the upload, on what an XLSX (a zip) unpacks to, and on rows and columns
    # keeps a bad or hostile file from taking the process's memory.
    return {"ROSTER_MAX_BYTES": integer("LINLI_ROSTER_MAX_BYTES", 5 * 1024 * 1024),
            "ROSTER_MAX_UNPACKED_BYTES": integer("LINLI_ROSTER_MAX_UNPACKED_BYTES", 50 * 1024 * 1024),
            "ROSTER_MAX_ROWS": integer("LINLI_ROSTER_MAX_ROWS", 5000),
            "ROSTER_MAX_COLUMNS": integer("LINLI_ROSTER_MAX_COLUMNS", 50)}


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


