"""An office file uploaded to the console (the volunteer roster, the
register): its mode, and its rows read whole within the configured bounds
(services.common.roster), or why it is refused — the same for every import."""
from __future__ import annotations

import logging

from flask import current_app, g, request
from flask_babel import lazy_gettext as _l

from services.common.roster import RosterTooLarge, limits, read_rows

log = logging.getLogger(__name__)

MODES = ("all", "valid")  # all or nothing; the valid rows only
TOO_LARGE = _l("The file is too large (at most %(rows)s rows, %(columns)s columns, %(mb)s MB); split it into "
               "smaller files.")


class FileRefused(Exception):
    def __init__(self, status: int, message):
        super().__init__(str(message))
        self.status, self.message = status, message


def upload_mode() -> str:
    return request.form.get("mode") if request.form.get("mode") in MODES else "all"


def read_upload(no_file, unreadable, max_rows: int | None = None) -> list[dict]:
    """The uploaded file's rows; FileRefused (422 or 413, with the message
    for the page) when there is none, it is too large or it is not a table."""
    upload = request.files.get("file")
    if upload is None or not upload.filename or not upload.filename.lower().endswith((".csv", ".xlsx")):
        raise FileRefused(422, no_file)
    cfg = current_app.config
    too_large = TOO_LARGE.format(rows=max_rows or cfg["ROSTER_MAX_ROWS"], columns=cfg["ROSTER_MAX_COLUMNS"],
                                 mb=cfg["ROSTER_MAX_BYTES"] // (1024 * 1024))
    data = upload.read(cfg["ROSTER_MAX_BYTES"] + 1)
    if len(data) > cfg["ROSTER_MAX_BYTES"]:
        raise FileRefused(413, too_large)
    try:
        return read_rows(upload.filename, data, **{**limits(cfg), **({"max_rows": max_rows} if max_rows else {})})
    except RosterTooLarge:
        raise FileRefused(413, too_large) from None
    except Exception as exc:  # not a CSV/XLSX at all
        log.info("uploaded file unreadable", extra={"error": type(exc).__name__, "actor": g.actor})
        raise FileRefused(422, unreadable) from None
