"""A volunteer roster (Excel or CSV) uploaded in the console: read and
checked here with the same code and bounds matching uses
(services.common.roster), the report shown row by row, and the good rows
handed to matching as one task (volunteers.roster_import) — all of them or
none when a row is bad, unless the office asks for the good rows only."""
from __future__ import annotations

import logging
import uuid

from flask import g, render_template, url_for
from flask_babel import lazy_gettext as _l

from services.common import contract
from services.common import extensions as ext
from services.common.roster import COLUMNS, validate_rows

from ..models import Building
from .blueprint import console, staff_required
from .uploads import FileRefused, read_upload, upload_mode
from .volunteers import OUTSIDE_GRID, flat, may_change

log = logging.getLogger(__name__)

NO_FILE = _l("Choose a .csv or .xlsx roster file.")
UNREADABLE = _l("This file cannot be read as a roster: save it as .xlsx or as UTF-8 .csv with a header row.")


def _page(status: int = 200, **context):
    return render_template("console_roster.html", columns=COLUMNS, mode=context.pop("mode", "all"),
                           **context), status


@console.get("/volunteers/import")
@staff_required
def roster_upload():
    may_change()
    return _page()


def _row_errors(messages: dict) -> list[tuple[str, list[str]]]:
    return [(field, flat(found)) for field, found in messages.items()]


@console.post("/volunteers/import")
@staff_required
def roster_import():
    """Check every row at once; send the good ones when the file is clean or
    the office asked for the valid rows only."""
    may_change()
    mode = upload_mode()
    try:
        rows = read_upload(NO_FILE, UNREADABLE)
    except FileRefused as exc:
        return _page(exc.status, mode=mode, file_error=exc.message)
    good, bad = validate_rows(rows)
    if g.scope.role == "grid_leader":
        grids = {b.code: b.grid for b in ext.db_session().query(Building)}
        outside = [(n, d) for n, d in good if grids.get(d["building"]) != g.scope.grid]
        good = [(n, d) for n, d in good if grids.get(d["building"]) == g.scope.grid]
        bad = sorted(bad + [{"row": n, "errors": {"building": [OUTSIDE_GRID]}} for n, _ in outside],
                     key=lambda e: e["row"])
    report = [{"row": e["row"], "errors": _row_errors(e["errors"])} for e in bad]
    send = bool(good) and (mode == "valid" or not bad)
    change_id = None
    if send:
        change_id = str(uuid.uuid4())
        ext.outbox().emit(ext.db_session(), contract.ROSTER_IMPORT, {
            "change_id": change_id, "actor": g.actor, "grid": g.scope.grid if g.scope.role == "grid_leader" else None,
            "row_numbers": [n for n, _ in good], "rows": [d for _, d in good]})
        ext.db_session().commit()
        log.info("roster import asked", extra={"change_id": change_id, "rows": len(good), "actor": g.actor})
    return _page(200 if send else 422, mode=mode, report=report, rows=len(rows), good=len(good), sent=send,
                 change_url=url_for("console.volunteer_change", change_id=change_id) if change_id else None)
