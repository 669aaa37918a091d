"""The staff console (/staff): the request queue, a request's full story
and the actions on it, proxy intake, the dashboard, volunteers and the
contact access log.

Everything here is scoped (staff.Scope): a grid leader never sees, nor acts
on, a request outside their grid — a request by id outside the scope is a
403. What other services hold is read over their HTTP APIs with the service
token; what they must change is asked for through the outbox (tasks)."""
from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from urllib.parse import urlencode

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError
from sqlalchemy import select

from services.common import contract, tables
from services.common import extensions as ext
from services.common.clock import SHANGHAI
from services.common.db import utcnow
from services.common.web import local_time, read_all_pages, read_service

from . import hotline, operations, staff
from .labels import STATUS_LABELS
from .models import FINAL, Building, ContactAccess, ServiceRequest, StaffMember
from .queries import queue_statement, sorted_buildings
from .schemas import (
    CloseIn,
    EscalateIn,
    ExtendIn,
    FeedbackIn,
    ProxyRequestIn,
    QueueQuery,
    ReasonIn,
    ReassignIn,
    VolunteerEditIn,
)

log = logging.getLogger(__name__)
console = Blueprint("console", __name__, url_prefix="/staff")

EVENT_LABELS = {
    "taken": _l("Taken by staff"),
    "reassign_requested": _l("Reassignment asked"),
    "escalate_requested": _l("Escalation asked"),
    "extended": _l("Deadline extended"),
    "handed_back": _l("Handed back"),
    "assign_refused": _l("Reassignment refused"),
    "escalate_refused": _l("Escalation refused"),
    "close_refused": _l("Closing refused"),
}
REFUSALS = {"full": _l("the volunteer has no free capacity"), "inactive": _l("the volunteer is not active"),
            "closed": _l("the request is closed")}
ROLE_LABELS = {"admin": _l("Community admin"), "grid_leader": _l("Grid leader"),
               "hallway_leader": _l("Hallway leader")}
LEVELS = {1: _l("Hallway leader"), 2: _l("Grid leader"), 3: _l("Community office")}
DONE = {
    "created": _l("The request is entered. Tell the resident the tracking code."),
    "taken": _l("You have taken the request."),
    "extended": _l("The deadline is extended; the resident sees the reason."),
    "handed_back": _l("Handed back to the community office."),
    "reassign": _l("Reassignment sent to matching; the timeline shows the outcome."),
    "escalate": _l("Escalation sent; the timeline shows the outcome."),
    "closed": _l("The request is closed."),
    "cancelled": _l("The request is cancelled."),
    "follow_up": _l("The follow-up is recorded."),
}



@console.before_request
def _signed_in():
    if request.endpoint in ("console.login", "console.login_post"):
        return None
    if not staff.identify(ext.db_session()):
        return redirect(url_for("console.login", next=request.path))
    return None


@console.after_request
def _private(response):
    # Pages with residents' data are never cached, by the browser or a proxy.
    response.headers["Cache-Control"] = "no-store"
    return response


@console.app_context_processor
def _globals():
    return {"staff_member": g.get("staff"), "role_labels": ROLE_LABELS, "status_labels": STATUS_LABELS}


# --- sign-in ---

FAILED = _l("Sign-in failed: the username or password is not right.")
LOCKED = _l("Too many attempts. Wait 15 minutes and try again, or ask the community office.")


def _safe_next(target: str | None) -> str:
    return target if target and target.startswith("/staff") and "//" not in target else url_for("console.queue")


@console.get("/login")
def login():
    return render_template("staff_login.html", error=None, next=_safe_next(request.args.get("next")))


@console.post("/login")
def login_post():
    username = request.form.get("username", "")[:64]
    password = request.form.get("password", "")[:200]
    nxt = _safe_next(request.form.get("next"))
    # The same answer for a locked, unknown or existing account.
    if staff.locked_out(username):
        return render_template("staff_login.html", error=LOCKED, next=nxt), 429
    member = staff.authenticate(ext.db_session(), username, password) if username and password else None
    if member is None:
        staff.count_failure(username)
        log.info("staff sign-in failed")
        return render_template("staff_login.html", error=FAILED, next=nxt), 401
    staff.clear_failures(username)
    staff.start_session(member)
    ext.db_session().commit()
    log.info("staff signed in", extra={"staff_id": member.id})
    response = redirect(nxt, 303)
    staff.issue_device_cookie(response, member.username)
    return response


@console.post("/logout")
def logout():
    if g.staff is not None:
        staff.end_session(g.staff)
        ext.db_session().commit()
    return redirect(url_for("console.login"), 303)


# --- the queue ---


def _query_args() -> dict:
    try:
        return QueueQuery().load(request.args.to_dict())
    except ValidationError as exc:
        abort(400, description=str(exc.messages))


QUEUE_HEADER = ("tracking_code", "created_at", "category", "building", "unit", "grid", "status", "take_by",
                "due_at", "overdue", "handbacks", "masked_phone")


def _queue_row(req: ServiceRequest, now: datetime) -> list:
    return [req.tracking_code, local_time(req.created_at), req.category, req.building_code, req.unit or "",
            req.building.grid, req.status, local_time(req.take_by), local_time(req.due_at),
            "1" if hotline.overdue(req, now) else "0", req.handbacks, req.masked_phone]


@console.get("/")
def queue():
    q, now = _query_args(), utcnow()
    if "format" in q:
        rows = ext.db_session().scalars(queue_statement(g.scope, q, now).limit(10000)).all()
        return tables.download(tables.table(QUEUE_HEADER, [_queue_row(r, now) for r in rows], q["format"]),
                               f"requests.{q['format']}", q["format"])
    rows = ext.db_session().scalars(queue_statement(g.scope, q, now).limit(500)).all()
    grids = sorted({b.grid for b in ext.db_session().scalars(select(Building))})
    return render_template("console_queue.html", rows=rows, q=q, now=now, overdue=hotline.overdue,
                           categories=contract.CATEGORIES, statuses=contract.STATUSES,
                           grids=g.scope.grids(grids), export_args=urlencode(request.args.to_dict()))


# --- one request ---


def scoped_request(request_id) -> ServiceRequest:
    req = ext.db_session().get(ServiceRequest, str(request_id))
    if req is None:
        abort(404)
    if not g.scope.allows(req):
        log.warning("out-of-scope request refused", extra={"request_id": req.id, "actor": g.actor})
        abort(403)
    return req


def _matching(req: ServiceRequest) -> dict | None:
    return read_service("VOLUNTEERS_API_URL", f"/api/v1/requests/{req.id}")


def _deliveries(req: ServiceRequest, matching: dict | None) -> list[dict]:
    keys = [f"offer:{o['id']}" for o in (matching or {}).get("offers", [])]
    keys += [f"escalation:{e['id']}" for e in (matching or {}).get("escalations", [])]
    found = read_all_pages("NOTIFY_API_URL", f"/api/v1/deliveries?recipient=resident:{req.id}") or []
    for start in range(0, len(keys), 50):
        query = urlencode([("key", k) for k in keys[start:start + 50]])
        found += read_all_pages("NOTIFY_API_URL", f"/api/v1/deliveries?{query}") or []
    return sorted(found, key=lambda d: d["id"])


def _candidates(req: ServiceRequest) -> list[dict]:
    if contract.CATEGORY_BY_CODE[req.category].staff_only:
        return []
    return read_all_pages("VOLUNTEERS_API_URL", f"/api/v1/volunteers?skill={req.category}&active=true") or []


def _detail(req: ServiceRequest, errors: dict | None = None, form: str | None = None, status: int = 200,
            contact: bool = False):
    now = utcnow()
    matching = _matching(req)
    return render_template(
        "console_request.html", req=req, now=now, matching=matching, deliveries=_deliveries(req, matching),
        candidates=_candidates(req), errors=errors or {}, form=form, contact=contact,
        category=contract.CATEGORY_BY_CODE[req.category], event_labels=EVENT_LABELS, refusals=REFUSALS,
        levels=LEVELS, done=DONE.get(request.args.get("done", "")), overdue=hotline.overdue(req, now),
        handback_until=hotline.handback_open_until(req.routed_at) if req.routed_at else None,
        final=req.status in FINAL,
    ), status


@console.get("/requests/<uuid:request_id>")
def detail(request_id):
    return _detail(scoped_request(request_id))


@console.post("/requests/<uuid:request_id>/contact")
def show_contact(request_id):
    """Staff in scope may see the resident's contact; each look is logged."""
    req = scoped_request(request_id)
    if req.anonymised_at or not req.contact_phone:
        return _detail(req)
    ext.db_session().add(ContactAccess(request_id=req.id, actor=g.actor, purpose="console"))
    ext.db_session().commit()
    log.info("contact shown", extra={"request_id": req.id, "actor": g.actor})
    return _detail(req, contact=True)


def _act(request_id, schema, apply, form: str):
    """Validate the form, apply the action, commit with its events, redirect."""
    req = scoped_request(request_id)
    values = {k: v for k, v in request.form.items() if k != "csrf_token"}
    try:
        data = schema().load(values) if schema else {}
    except ValidationError as exc:
        return _detail(req, errors=exc.messages, form=form, status=422)
    outcome = apply(req, data)
    if isinstance(outcome, dict):  # refused, with a field-level reason
        ext.db_session().rollback()
        return _detail(scoped_request(request_id), errors=outcome, form=form, status=409)
    ext.db_session().commit()
    log.info("staff action", extra={"request_id": req.id, "action": form, "actor": g.actor})
    return redirect(url_for("console.detail", request_id=req.id, done=outcome), 303)


def _refused(text) -> dict:
    return {"_action": [text]}


NOT_NOW = _l("This cannot be done in the request's present state.")


@console.post("/requests/<uuid:request_id>/take")
def take(request_id):
    return _act(request_id, None, lambda req, d: "taken" if operations.take(req, g.actor) else _refused(NOT_NOW),
                "take")


@console.post("/requests/<uuid:request_id>/extend")
def extend(request_id):
    def apply(req, d):
        if operations.extend(req, g.actor, d["working_days"], d["note"]):
            return "extended"
        return _refused(_l("A request is extended once, and only while it is open."))
    return _act(request_id, ExtendIn, apply, "extend")


@console.post("/requests/<uuid:request_id>/hand-back")
def hand_back(request_id):
    why = {"late": _l("Hand-backs are possible within one working day of receiving the request."),
           "locked": _l("After three hand-backs the grid leader decides who handles it.")}

    def apply(req, d):
        refused = operations.hand_back(ext.db_session(), ext.outbox(), req, g.actor, d["note"], utcnow())
        return _refused(why[refused]) if refused else "handed_back"
    return _act(request_id, ReasonIn, apply, "hand_back")


@console.post("/requests/<uuid:request_id>/reassign")
def reassign(request_id):
    def apply(req, d):
        if req.status in FINAL:
            return _refused(NOT_NOW)
        if not any(c["id"] == d["volunteer_id"] for c in _candidates(req)):
            return {"volunteer_id": [_l("Choose an active volunteer who offers this service.")]}
        operations.staff_action(ext.db_session(), ext.outbox(), req, "assign", g.actor,
                            volunteer_id=d["volunteer_id"])
        req.record("reassign_requested", g.actor, note=f"volunteer:{d['volunteer_id']}")
        return "reassign"
    return _act(request_id, ReassignIn, apply, "reassign")


@console.post("/requests/<uuid:request_id>/escalate")
def escalate(request_id):
    def apply(req, d):
        if req.status in FINAL:
            return _refused(NOT_NOW)
        operations.staff_action(ext.db_session(), ext.outbox(), req, "escalate", g.actor,
                            note=d["note"], level=d["level"])
        req.record("escalate_requested", g.actor, note=d["note"])
        return "escalate"
    return _act(request_id, EscalateIn, apply, "escalate")


@console.post("/requests/<uuid:request_id>/close")
def close(request_id):
    def apply(req, d):
        ok = operations.close(ext.db_session(), ext.outbox(), req, g.actor, d["note"])
        return "closed" if ok else _refused(_l("Close it after the volunteer completes it, or cancel it."))
    return _act(request_id, CloseIn, apply, "close")


@console.post("/requests/<uuid:request_id>/cancel")
def cancel(request_id):
    def apply(req, d):
        ok = operations.cancel(ext.db_session(), ext.outbox(), req, g.actor, d["note"])
        return "cancelled" if ok else _refused(NOT_NOW)
    return _act(request_id, ReasonIn, apply, "cancel")


@console.post("/requests/<uuid:request_id>/follow-up")
def follow_up(request_id):
    """The follow-up call (回访), recorded by staff for the resident."""
    def apply(req, d):
        ok = operations.give_feedback(ext.db_session(), ext.outbox(), req, d, actor=g.actor)
        return "follow_up" if ok else _refused(_l("A follow-up is recorded once, after completion."))
    return _act(request_id, FeedbackIn, apply, "follow_up")


# --- proxy intake ---


def _proxy_form(values: dict, errors: dict, status: int = 200):
    buildings = [b for b in sorted_buildings() if any(g.scope.allows_place(b, u) for u in b.units)]
    return render_template("request_form.html", categories=contract.CATEGORIES, buildings=buildings,
                           max_units=max((len(b.units) for b in buildings), default=1), values=values,
                           errors=errors, proxy=True, form_action=url_for("console.proxy_post")), status


@console.get("/new")
def proxy():
    return _proxy_form({"mode": "home", "urgency": "normal"}, {})


@console.post("/new")
def proxy_post():
    values = {k: v for k, v in request.form.items() if k != "csrf_token"}
    try:
        data = ProxyRequestIn().load(values)
    except ValidationError as exc:
        return _proxy_form(values, exc.messages, 422)
    building = ext.db_session().get(Building, data["building"])
    if not g.scope.allows_place(building, data.get("unit")):
        return _proxy_form(values, {"unit": [_l("This stairwell is outside your area.")]}, 403)
    req = operations.submit(ext.db_session(), ext.outbox(), data, channel="staff",
                        language=data["language"], digest_key=current_app.config["PHONE_DIGEST_KEY"],
                        timer=operations.timer_for(data["category"]), entered_by=g.actor)
    ext.db_session().commit()
    log.info("request entered for a resident", extra={"request_id": req.id, "actor": g.actor,
                                                      "consent_method": data["consent_method"]})
    return redirect(url_for("console.detail", request_id=req.id, done="created"), 303)


# --- dashboard ---


def _week_start(dt: datetime) -> str:
    local = dt.astimezone(SHANGHAI)
    return (local - timedelta(days=local.weekday())).strftime("%Y-%m-%d")


def _hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600, 1)


def _months(now: datetime, count: int) -> list[str]:
    local = now.astimezone(SHANGHAI)
    year, month = local.year, local.month
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return out[::-1]


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.0f}%"


def dashboard_tables(now: datetime) -> dict[str, dict]:
    """Every table on the dashboard, as header + rows (the page draws
    charts from them; each one downloads as CSV or XLSX)."""
    since = now - timedelta(weeks=8)
    rows = ext.db_session().scalars(select(ServiceRequest).where(g.scope.where(),
                                                                ServiceRequest.created_at >= since)).all()
    open_rows = ext.db_session().scalars(select(ServiceRequest).where(g.scope.where(),
                                                                ServiceRequest.status.not_in(FINAL))).all()
    weeks = sorted({_week_start(r.created_at) for r in rows})
    per_week = Counter((_week_start(r.created_at), r.category) for r in rows)
    categories = sorted({r.category for r in rows})
    out = {"per_week": {"header": ["week", *categories, "total"], "rows": [
        [w, *(per_week[(w, c)] for c in categories), sum(per_week[(w, c)] for c in categories)] for w in weeks]}}

    accept, complete = defaultdict(list), defaultdict(list)
    for r in rows:
        if r.taken_at:
            accept[r.category].append(_hours(r.taken_at - r.created_at))
        if r.completed_at:
            complete[r.category].append(_hours(r.completed_at - r.created_at))
    out["medians"] = {"header": ["category", "median_hours_to_accept", "median_hours_to_complete"], "rows": [
        [c, hotline.median(accept[c]), hotline.median(complete[c])] for c in categories]}

    by_grid = defaultdict(lambda: [0, 0])
    for r in open_rows:
        by_grid[r.building.grid][0] += 1
        by_grid[r.building.grid][1] += hotline.overdue(r, now)
    out["open_by_grid"] = {"header": ["grid", "open", "overdue"],
                           "rows": [[grid, *by_grid[grid]] for grid in sorted(by_grid)]}

    for name, key in (("rates_by_grid", lambda r: r.building.grid), ("rates_by_category", lambda r: r.category)):
        rates = hotline.rates(rows, key)
        out[name] = {"header": [name.rsplit("_", 1)[1], "requests", "response_rate", "resolution_rate",
                                "satisfaction_rate", "rated", "alert"],
                     "rows": [[k, r.requests, _pct(r.response), _pct(r.resolution), _pct(r.satisfaction), r.rated,
                               "satisfaction < 85%" if r.alert else ""] for k, r in sorted(rates.items())]}

    hours, ranking = [], []
    for month in _months(now, 6):  # oldest first: the loop ends on this month's ranking
        ranking = read_service("VOLUNTEERS_API_URL", f"/api/v1/hours/ranking?month={month}") or []
        hours.append([month, sum(float(r["hours"]) for r in ranking), len(ranking)])
    out["hours_by_month"] = {"header": ["month", "confirmed_hours", "volunteers"], "rows": hours}
    out["ranking"] = {"header": ["rank", "name", "hours", "tasks"],
                      "rows": [[r["rank"], r["name"], r["hours"], r["tasks"]] for r in ranking[:20]]}
    return out


# Column labels on the page; the downloads keep the stable keys.
HEADER_LABELS = {
    "grid": _l("Grid"), "category": _l("Service"), "requests": _l("Requests"), "week": _l("Week"),
    "total": _l("Total"), "response_rate": _l("Response rate"), "resolution_rate": _l("Resolution rate"),
    "satisfaction_rate": _l("Satisfaction rate"), "rated": _l("Rated"), "alert": _l("Alert"),
    "median_hours_to_accept": _l("Median hours to accept"),
    "median_hours_to_complete": _l("Median hours to complete"), "open": _l("Open"), "overdue": _l("Overdue"),
    "month": _l("Month"), "confirmed_hours": _l("Confirmed hours"), "volunteers": _l("Volunteers"),
    "rank": _l("Rank"), "name": _l("Name"), "hours": _l("Hours"), "tasks": _l("Tasks"),
    "satisfaction < 85%": _l("⚠ satisfaction below 85%"),
}


@console.get("/dashboard")
def dashboard():
    now = utcnow()
    data = dashboard_tables(now)
    name, fmt = request.args.get("export"), request.args.get("format", "csv")
    if name:
        if name not in data or fmt not in tables.FORMATS:
            abort(404)
        return tables.download(tables.table(data[name]["header"], data[name]["rows"], fmt), f"{name}.{fmt}", fmt)
    alerts = [row for t in ("rates_by_grid", "rates_by_category") for row in data[t]["rows"] if row[-1]]
    return render_template("console_dashboard.html", data=data, alerts=alerts, labels=HEADER_LABELS,
                           categories=contract.CATEGORY_BY_CODE)


# --- volunteers ---


def _scoped_volunteers() -> list[dict]:
    scope = g.scope
    if scope.role == "grid_leader":
        return read_all_pages("VOLUNTEERS_API_URL", f"/api/v1/volunteers?grid={scope.grid}") or []
    if scope.role == "hallway_leader":
        if not scope.stairwells:
            return []
        query = urlencode([("stairwell", s) for s in scope.stairwells])
        return read_all_pages("VOLUNTEERS_API_URL", f"/api/v1/volunteers?{query}") or []
    return read_all_pages("VOLUNTEERS_API_URL", "/api/v1/volunteers") or []


VOLUNTEER_HEADER = ("id", "name", "building", "unit", "skills", "active", "capacity")


@console.get("/volunteers")
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
    found = next((v for v in _scoped_volunteers() if v["id"] == volunteer_id), None)
    if g.scope.role == "hallway_leader" or found is None:
        abort(403)
    return found


def _volunteer_form(vol: dict, values: dict, errors: dict, status: int = 200):
    return render_template("console_volunteer.html", vol=vol, values=values, errors=errors,
                           skills=[c for c in contract.CATEGORIES if not c.staff_only]), status


@console.get("/volunteers/<id:volunteer_id>")
def volunteer_edit(volunteer_id):
    vol = editable_volunteer(volunteer_id)
    return _volunteer_form(vol, {"capacity": vol["capacity"], "skills": vol["skills"]}, {})


@console.post("/volunteers/<id:volunteer_id>")
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
def volunteer_active(volunteer_id):
    """Deactivate (no new offers) or activate again, through matching."""
    editable_volunteer(volunteer_id)
    action = "activate" if request.form.get("active") == "1" else "deactivate"
    operations.staff_action(ext.db_session(), ext.outbox(), None, action, g.actor,
                        volunteer_id=volunteer_id)
    ext.db_session().commit()
    log.info("volunteer status asked", extra={"volunteer_id": volunteer_id, "action": action, "actor": g.actor})
    return redirect(url_for("console.volunteers", done=action), 303)


# --- access log ---


@console.get("/access-log")
def access_log():
    """Who saw which resident's contact, and when (scoped like the queue)."""
    rows = ext.db_session().execute(
        select(ContactAccess, ServiceRequest.tracking_code).join(ServiceRequest)
        .where(g.scope.where()).order_by(ContactAccess.id.desc()).limit(1000)).all()
    names = {f"staff:{s.id}": s.display_name for s in ext.db_session().scalars(select(StaffMember))}
    table = [[local_time(a.at), code, a.actor, names.get(a.actor, ""), a.purpose] for a, code in rows]
    fmt = request.args.get("format")
    if fmt in tables.FORMATS:
        return tables.download(tables.table(("at", "tracking_code", "actor", "name", "purpose"), table, fmt),
                               f"access-log.{fmt}", fmt)
    return render_template("console_access.html", rows=table)
