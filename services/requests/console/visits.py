"""Visits (探访) in the console: the list a grid leader works through —
overdue first, with the phone to call — read from the community service in
the staff member's scope; a visit plan set for a resident; and a visit's
outcome recorded by a hallway leader who went. Changes go to the community
service by task (contract.VISIT_PLAN, contract.VISIT_OUTCOME)."""
from __future__ import annotations

import logging
import secrets
import uuid
from urllib.parse import urlencode

from flask import abort, current_app, g, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext as _l
from marshmallow import Schema, ValidationError, fields, validate

from services.common import contract
from services.common import extensions as ext
from services.common.i18n import N_
from services.common.web import read_all_pages, read_service

from .. import operations
from ..queries import sorted_buildings
from .blueprint import console, scoped_request, staff_required

log = logging.getLogger(__name__)

RHYTHM_LABELS = {"weekly": _l("Every week"), "twice_monthly": _l("Twice a month"), "monthly": _l("Every month")}
VISITOR_LABELS = {"hallway_leader": _l("The hallway leader"), "paired_volunteer": _l("A paired volunteer"),
                  "any_volunteer": _l("Any volunteer nearby")}
REASON_LABELS = {"scheduled": _l("Regular visit"), "missed_checkin": _l("No check-in today")}
SENT = "visit_changes"  # change ids sent, until the community service shows them applied


class OutcomeForm(Schema):
    outcome = fields.String(required=True, validate=validate.OneOf(contract.VISIT_OUTCOMES, error=N_(
        "Say what you found.")), error_messages={"required": N_("Say what you found.")})
    note = fields.String(load_default="", validate=validate.Length(0, 500, error=N_("Up to 500 characters.")))


def _outcome_labels() -> dict:
    return {code: _l(label) for code, label in contract.VISIT_OUTCOME_LABELS.items()}


@console.get("/visits")
@staff_required
def visits():
    overdue = request.args.get("overdue") == "1"
    grids = g.scope.grids(sorted({b.grid for b in sorted_buildings()}))
    grid = request.args.get("grid") if request.args.get("grid") in grids else None
    query = urlencode({**({"overdue": "true"} if overdue else {}), **({"grid": grid} if grid else {})})
    plans = read_all_pages("COMMUNITY_API_URL", "/api/v1/visit-plans" + (f"?{query}" if query else ""))
    return render_template("console_visits.html", plans=plans, overdue=overdue, grids=grids, grid=grid,
                           rhythms=RHYTHM_LABELS,
                           visitors=VISITOR_LABELS, outcomes=_outcome_labels(), reasons=REASON_LABELS,
                           recorded="recorded" in request.args, errors={})


def _record(visit_ref: str, back: str, visit_request=None):
    try:
        data = OutcomeForm().load({k: request.form.get(k, "").strip() for k in ("outcome", "note")
                                   if request.form.get(k, "").strip()})
    except ValidationError as exc:
        return render_template("console_visits.html", plans=None, overdue=False, grids=[], grid=None,
                               rhythms=RHYTHM_LABELS,
                               visitors=VISITOR_LABELS, outcomes=_outcome_labels(), reasons=REASON_LABELS,
                               recorded=False, errors=exc.messages), 422
    ext.outbox().emit(ext.db_session(), contract.VISIT_OUTCOME, {
        "visit_ref": visit_ref, "outcome": data["outcome"], "note": data["note"], "actor": g.actor})
    if visit_request is not None:
        # The visit was the request: recorded, it is done (what it found, if
        # anything, comes back as a new request from the community service).
        operations.close(ext.db_session(), ext.outbox(), visit_request, g.actor,
                         note=str(_l(contract.VISIT_OUTCOME_LABELS[data["outcome"]])))
    ext.db_session().commit()
    log.info("visit outcome sent", extra={"visit_ref": visit_ref, "outcome": data["outcome"], "actor": g.actor})
    return redirect(back, 303)


@console.post("/visits/<id:visit_id>/outcome")
@staff_required
def visit_outcome(visit_id: int):
    # The community service answers only for visits in the member's scope.
    if read_service("COMMUNITY_API_URL", f"/api/v1/visits/{visit_id}") is None:
        abort(404)
    return _record(f"visit:{visit_id}", url_for("console.visits", recorded=1))


@console.post("/requests/<uuid:request_id>/visit-outcome")
@staff_required
def request_visit_outcome(request_id):
    """A hallway leader who made the visit records it on the request's page."""
    req = scoped_request(request_id)
    if req.category != "visit" or not (req.programme_ref or "").startswith("visit:"):
        abort(404)
    return _record(req.programme_ref, url_for("console.detail", request_id=req.id, done="visit"), visit_request=req)


# --- a resident's visit plan ---


class PlanForm(Schema):
    """The plan as the office fills it in; the contract's rules, from the form's text."""

    rhythm = fields.String(required=True, error_messages={"required": N_("Choose how often.")})
    visitor = fields.String(required=True, error_messages={"required": N_("Choose who visits.")})
    volunteer_id = fields.Integer(load_default=None, error_messages={"invalid": N_("Choose the paired volunteer.")})
    preferred_times = fields.String(load_default=None)
    checkin_daily = fields.Boolean(load_default=False)
    new_link = fields.Boolean(load_default=False)
    active = fields.Boolean(load_default=True)


def _plan_page(resident_id: int, errors=None, values=None, link=None, status=200):
    found = read_service("COMMUNITY_API_URL", f"/api/v1/visit-plans?resident_id={resident_id}")
    plan = found[0] if found else None
    volunteers = read_all_pages("VOLUNTEERS_API_URL", "/api/v1/volunteers?skill=visit&active=true") or []
    sent = session.get(SENT, {}).get(str(resident_id))
    applied = None
    if sent:
        change = read_service("COMMUNITY_API_URL", f"/api/v1/register-changes/{sent}")
        applied = change["outcome"] if change else None
    return render_template("console_visit_plan.html", resident_id=resident_id, plan=plan, volunteers=volunteers,
                           rhythms=RHYTHM_LABELS, visitors=VISITOR_LABELS, errors=errors or {}, values=values or {},
                           link=link, sent=sent, applied=applied), status


@console.get("/visits/plan/<id:resident_id>")
@staff_required
def visit_plan(resident_id: int):
    return _plan_page(resident_id)


@console.post("/visits/plan/<id:resident_id>")
@staff_required
def visit_plan_save(resident_id: int):
    if not g.scope.admin and g.scope.role != "grid_leader":
        abort(403)  # the office and grid leaders set plans; hallway leaders make the visits
    form = {k: v.strip() for k, v in request.form.items() if k != "csrf_token" and v.strip()}
    form["active"] = "true" if "active" in request.form else "false"  # an unticked box sends nothing
    try:
        data = PlanForm().load(form)
        link_token = secrets.token_urlsafe(16) if data["checkin_daily"] and data.pop("new_link") else None
        change = contract.VisitPlanChange().load({
            **{k: v for k, v in data.items() if k != "new_link"}, "resident_id": resident_id,
            "change_id": str(uuid.uuid4()), "actor": g.actor, "role": g.scope.role, "grid": g.scope.grid,
            "stairwells": list(g.scope.stairwells),
            "checkin_token_digest": contract.link_digest(link_token) if link_token else None})
    except ValidationError as exc:
        return _plan_page(resident_id, errors=exc.messages, values=form, status=422)
    ext.outbox().emit(ext.db_session(), contract.VISIT_PLAN, change)
    ext.db_session().commit()
    log.info("visit plan sent", extra={"resident_id": resident_id, "actor": g.actor})
    session[SENT] = {**session.get(SENT, {}), str(resident_id): str(change["change_id"])}
    # The link is shown this once (only its digest is kept): printed or read to the resident.
    link = f"{current_app.config['COMMUNITY_URL']}/checkin/{link_token}" if link_token else None
    return _plan_page(resident_id, link=link)
