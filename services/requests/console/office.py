"""The office (办公): what the community office runs from the console —
staff accounts and Open311 keys (intake's own), stations and their weekly
sessions and volunteers' service hours (matching's, asked for by task).
This module holds the landing page and who may open which office page."""
from __future__ import annotations

from flask import abort, g, render_template

from .blueprint import console, staff_required


def office_only() -> None:
    """Staff accounts, keys and every change: the community admin only."""
    if not g.scope.admin:
        abort(403)


def office_readers() -> None:
    """Stations and hours: the office, and grid leaders reading their grid;
    hallway leaders see no office page."""
    if g.scope.role not in ("admin", "grid_leader"):
        abort(403)


@console.get("/office")
@staff_required
def office():
    office_readers()
    return render_template("console_office.html", admin=g.scope.admin)
