"""Tables as files for the office: CSV (UTF-8 with BOM, so Excel reads the
Chinese) or XLSX, and the HTTP response that downloads one."""
from __future__ import annotations

import csv
import io

from flask import Response
from openpyxl import Workbook

FORMATS = ("csv", "xlsx")


def table(header, rows, fmt: str) -> bytes:
    if fmt == "xlsx":
        book = Workbook()
        sheet = book.active
        sheet.append(list(header))
        for row in rows:
            sheet.append(list(row))
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
