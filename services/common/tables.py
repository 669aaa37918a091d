"""Tables as files for the office: CSV (UTF-8 with BOM, so Excel reads the
Chinese) or XLSX, and the HTTP response that downloads one."""
from __future__ import annotations

import csv
import io

from flask import Response
from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

FORMATS = ("csv", "xlsx")
# A cell that starts with one of these is a formula to Excel and WPS, even in
# a CSV file: text residents or volunteers typed could run as one.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """Text that would start a formula gets a leading apostrophe, which the
    spreadsheet shows as text; numbers and dates stay as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def table(header, rows, fmt: str) -> bytes:
    header = [safe_cell(h) for h in header]
    rows = [[safe_cell(v) for v in row] for row in rows]
    if fmt == "xlsx":
        book = Workbook()
        sheet = book.active
        sheet.append(header)
        for row in rows:
            # Control characters XML cannot hold (a name may carry one) are left out of a worksheet.
            sheet.append([ILLEGAL_CHARACTERS_RE.sub("", v) if isinstance(v, str) else v for v in row])
        out = io.BytesIO()
        book.save(out)
        return out.getvalue()
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def download(data: bytes, filename: str, fmt: str) -> Response:
    mime = ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" if fmt == "xlsx"
            else "text/csv; charset=utf-8")
    return Response(data, mimetype=mime, headers={"Content-Disposition": f"attachment; filename={filename}",
                                                  "Cache-Control": "no-store"})
