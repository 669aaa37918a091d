"""Volunteers in the staff member's scope, read from matching's API; the
changes (capacity, services, active) are asked of matching through the
outbox, as matching owns the registry."""
from __future__ import annotations

import logging

from flask import abort, g, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError

from services.common import contract, tables
from services.common import extensions as ext
from services.common.web import read_all_pages, read_service

from .. import operations
from ..schemas import VolunteerEditIn
from .blueprint import console, staff_required

log = logging.getLogger(__name__)


def _scoped_volunteers() -> list[dict]:
    # Matching answers within the staff member's scope: the console sends
    # their claims with every read (services.common.auth).
    return read_all_pages("VOLUNTEERS_API_URL", "/api/v1/volunteers") or []


VOLUNTEER_HEADER = ("id", "name", "building", "unit", "skills", "active", "capacity")


@console.get("/volunteers")
@staff_required
def volunteers():
    vols = _scoped_volunteers()
    rows = [[v["id"], v["display_name"], v["building"], v.get("unit") or "", " ".join(v["skills"]),
             "1" if v["active"] else "0", v["capacity"]] for v in vols]
    fmt = request.args.get("format")
    if fmt in tables.FORMATS:
        return tables.download(tables.table(VOLUNTEER_HEADER, rows, fmt), f"volunteers.{fmt}", fmt)
    return render_template("console_volunteers.html", vols=vols, can_edit=g.scope.role != "hallway_leader",
                           done=VOLUNTEER_DONE.get(request.args.get("done", "")))


VOLUNTEER_DONE = {
    "update": _l("Sent to the volunteers service; the list shows the change in a moment."),
    "activate": _l("Sent to the volunteers service; the list shows the change in a moment."),
    "deactivate": _l("Sent to the volunteers service; the list shows the change in a moment."),
}


def editable_volunteer(volunteer_id: int) -> dict:
    """A volunteer this staff member may change: admin, or their grid's."""
    found = read_service("VOLUNTEERS_API_URL", f"/api/v1/volunteers/{volunteer_id}")
    if g.scope.role == "hallway_leader" or found is None:
        abort(403)
    return found


def _volunteer_form(vol: dict, values: dict, errors: dict, status: int = 200):
    return render_template("console_volunteer.html", vol=vol, values=values, errors=errors,
                           skills=[c for c in contract.CATEGORIES if not c.staff_only]), status


@console.get("/volunteers/<id:volunteer_id>")
@staff_required
def volunteer_edit(volunteer_id):
    vol = editable_volunteer(volunteer_id)
    return _volunteer_form(vol, {"capacity": vol["capacity"], "skills": vol["skills"]}, {})


@console.post("/volunteers/<id:volunteer_id>")
@staff_required
def volunteer_update(volunteer_id):
    """Capacity and services, changed by matching (the registry's owner)."""
    vol = editable_volunteer(volunteer_id)
    values = {"capacity": request.form.get("capacity", ""), "skills": request.form.getlist("skills")}
    try:
        data = VolunteerEditIn().load({k: v for k, v in values.items() if v not in ("", [])})
    except ValidationError as exc:
        return _volunteer_form(vol, values, exc.messages, 422)
    operations.staff_action(ext.db_session(), ext.outbox(), None, "update", g.actor,
                            volunteer_id=volunteer_id, capacity=data["capacity"], skills=data["skills"])
    ext.db_session().commit()
    log.info("volunteer update asked", extra={"volunteer_id": volunteer_id, "actor": g.actor})
    return redirect(url_for("console.volunteers", done="update"), 303)


@console.post("/volunteers/<id:volunteer_id>/active")
@staff_required
def volunteer_active(volunteer_id):
    """Deactivate (no new offers) or activate again, through matching."""
    editable_volunteer(volunteer_id)
    action = "activate" if request.form.get("active") == "1" else "deactivate"
    operations.staff_action(ext.db_session(), ext.outbox(), None, action, g.actor,
                            volunteer_id=volunteer_id)
    ext.db_session().commit()
    log.info("volunteer status asked", extra={"volunteer_id": volunteer_id, "action": action, "actor": g.actor})
    return redirect(url_for("console.volunteers", done=action), 303)
