"""Stations (服务站) and their weekly sessions — fixed place, fixed time,
fixed person — as the office manages them in the console. Matching owns
them: the page reads them from matching's API (grid leaders read too), and
a change, validated here with the contract's own schemas (StationIn,
StationSessionIn), goes to matching as a task (contract.STATION_CHANGE).
The page says the change was sent, and that it has arrived once matching's
API shows it."""
from __future__ import annotations

import logging

from flask import abort, g, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError

from services.common import contract
from services.common import extensions as ext
from services.common.web import read_all_pages

from .blueprint import console, staff_required
from .office import office_only, office_readers
from .words import WEEKDAY_LABELS

log = logging.getLogger(__name__)

SESSION_FIELDS = ("category", "weekday", "start", "end", "volunteer_id", "slots")
NOT_OFFERED = _l("This volunteer does not offer this service.")
PENDING = "office_pending"  # the last change sent, in the staff session: has matching got it yet?


def _stations() -> list[dict] | None:
    found = read_all_pages("VOLUNTEERS_API_URL", "/api/v1/stations")
    if found is None:
        return None
    for st in found:
        st["sessions"] = read_all_pages("VOLUNTEERS_API_URL", f"/api/v1/stations/{st['id']}/sessions") or []
    return found


def _volunteers() -> list[dict]:
    return read_all_pages("VOLUNTEERS_API_URL", "/api/v1/volunteers?active=true") or []


def _arrived(pending: dict, stations: list[dict]) -> bool:
    """Does matching's API show the change yet?"""
    if pending["what"] == "station":
        return any(st["code"] == pending["code"] for st in stations)
    sessions = [s for st in stations if st["id"] == pending["station_id"] for s in st["sessions"]]
    if pending["what"] == "session_removed":
        return not any(s["id"] == pending["session_id"] and s["active"] for s in sessions)
    return any(s["active"] and all(s[k] == v for k, v in pending["values"].items())
               and pending.get("session_id") in (None, s["id"]) for s in sessions)


def _sent(pending: dict, station_id: int | None = None):
    session[PENDING] = pending
    return redirect(url_for("console.stations", sent=1, _anchor=f"station-{station_id}" if station_id else None), 303)


@console.get("/office/stations")
@staff_required
def stations(values: dict | None = None, errors: dict | None = None, status: int = 200):
    office_readers()
    found = _stations()
    pending, arrived = session.get(PENDING), False
    if pending and found is not None and _arrived(pending, found):
        arrived = True
        session.pop(PENDING)
    vols = {v["id"]: v for v in _volunteers()}
    return render_template("console_stations.html", stations=found, vols=vols, weekdays=WEEKDAY_LABELS,
                           categories=contract.CATEGORY_BY_CODE, can_edit=g.scope.admin, values=values or {},
                           errors=errors or {}, waiting=bool(session.get(PENDING)), arrived=arrived,
                           sent="sent" in request.args), status


@console.post("/office/stations")
@staff_required
def station_add():
    office_only()
    values = {k: request.form.get(k, "").strip() for k in ("code", "name", "place")}
    lead = request.form.get("lead_volunteer_id", "").strip()
    if lead:
        values["lead_volunteer_id"] = int(lead) if lead.isdigit() else lead
    try:
        data = contract.StationIn().load(values)
    except ValidationError as exc:
        return stations(values, exc.messages, 422)
    ext.outbox().emit(ext.db_session(), contract.STATION_CHANGE,
                      {"action": "add_station", "actor": g.actor, "station": data})
    ext.db_session().commit()
    log.info("station change sent", extra={"action": "add_station", "actor": g.actor})
    return _sent({"what": "station", "code": data["code"]})


def _station(station_id: int) -> dict:
    found = _stations()
    if found is None:
        abort(503)
    for st in found:
        if st["id"] == station_id:
            return st
    abort(404)


def _typed(form) -> dict:
    """The form's text as the schema takes it: numbers as numbers, blanks left out."""
    values = {}
    for name in SESSION_FIELDS:
        value = form.get(name, "").strip()
        if value:
            values[name] = int(value) if name in ("weekday", "volunteer_id", "slots") and value.isdigit() else value
    return values


def _session_form(st: dict, sess: dict | None, values: dict, errors: dict, status: int = 200):
    vols = _volunteers()
    return render_template("console_session.html", station=st, sess=sess, values=values, errors=errors,
                           vols=vols, weekdays=WEEKDAY_LABELS,
                           skills=[c for c in contract.CATEGORIES if not c.staff_only]), status


def _save_session(st: dict, sess: dict | None):
    values = _typed(request.form)
    try:
        data = contract.StationSessionIn().load(values)
    except ValidationError as exc:
        return _session_form(st, sess, values, exc.messages, 422)
    vol = next((v for v in _volunteers() if v["id"] == data["volunteer_id"]), None)
    if vol is None or data["category"] not in vol["skills"]:
        return _session_form(st, sess, values, {"volunteer_id": [NOT_OFFERED]}, 422)
    if sess is None:
        change = {"action": "add_session", "station_id": st["id"]}
    else:
        change = {"action": "edit_session", "session_id": sess["id"]}
    ext.outbox().emit(ext.db_session(), contract.STATION_CHANGE, {**change, "actor": g.actor, "session": data})
    ext.db_session().commit()
    log.info("station change sent", extra={"action": change["action"], "actor": g.actor})
    wire = contract.StationSessionIn().dump(data)  # as matching's API shows it: HH:MM
    return _sent({"what": "session", "station_id": st["id"], "session_id": sess["id"] if sess else None,
                  "values": wire}, st["id"])


def _session_of(st: dict, session_id: int) -> dict:
    sess = next((s for s in st["sessions"] if s["id"] == session_id and s["active"]), None)
    if sess is None:
        abort(404)
    return sess


@console.get("/office/stations/<id:station_id>/sessions/new")
@staff_required
def session_new(station_id):
    office_only()
    return _session_form(_station(station_id), None, {"slots": 4}, {})


@console.post("/office/stations/<id:station_id>/sessions/new")
@staff_required
def session_add(station_id):
    office_only()
    return _save_session(_station(station_id), None)


@console.get("/office/stations/<id:station_id>/sessions/<id:session_id>")
@staff_required
def session_edit(station_id, session_id):
    office_only()
    st = _station(station_id)
    sess = _session_of(st, session_id)
    return _session_form(st, sess, {k: sess[k] for k in SESSION_FIELDS}, {})


@console.post("/office/stations/<id:station_id>/sessions/<id:session_id>")
@staff_required
def session_update(station_id, session_id):
    office_only()
    st = _station(station_id)
    return _save_session(st, _session_of(st, session_id))


@console.post("/office/stations/<id:station_id>/sessions/<id:session_id>/remove")
@staff_required
def session_remove(station_id, session_id):
    """No new bookings; residents already booked keep their slots."""
    office_only()
    st = _station(station_id)
    _session_of(st, session_id)
    ext.outbox().emit(ext.db_session(), contract.STATION_CHANGE,
                      {"action": "remove_session", "actor": g.actor, "session_id": session_id})
    ext.db_session().commit()
    log.info("station change sent", extra={"action": "remove_session", "actor": g.actor})
    return _sent({"what": "session_removed", "station_id": station_id, "session_id": session_id}, station_id)
