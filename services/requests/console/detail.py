"""One request's full story (its timeline, matching's offers and
escalations, notify's deliveries) and what staff do to it: take, extend,
hand back, reassign, escalate, close, cancel, record the follow-up, look
at the resident's contact (logged)."""
from __future__ import annotations

import logging
from urllib.parse import urlencode

from flask import abort, g, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError

from services.common import contract
from services.common import extensions as ext
from services.common.clock import utcnow
from services.common.web import read_all_pages, read_service

from .. import hotline, operations
from ..models import FINAL, TRANSITIONS, ContactAccess, ServiceRequest
from ..schemas import CloseIn, EscalateIn, ExtendIn, FeedbackIn, ReasonIn, ReassignIn
from .blueprint import console, scoped_request, staff_required

log = logging.getLogger(__name__)

EVENT_LABELS = {
    "taken": _l("Taken by staff"),
    "reassign_requested": _l("Reassignment asked"),
    "escalate_requested": _l("Escalation asked"),
    "extended": _l("Deadline extended"),
    "handed_back": _l("Handed back"),
    "handed_over": _l("Handed to a named leader"),
    "assign_refused": _l("Reassignment refused"),
    "escalate_refused": _l("Escalation refused"),
    "close_refused": _l("Closing refused"),
    "resident_unreachable": _l("The resident could not be reached by SMS or call"),
    "messages_stopped": _l("The resident stopped messages"),
    "sms_reply_satisfied": _l("The resident replied to the follow-up by SMS: satisfied"),
    "sms_reply_not_solved": _l("The resident replied to the follow-up by SMS: not solved"),
}
REFUSALS = {"full": _l("the volunteer has no free capacity"), "inactive": _l("the volunteer is not active"),
            "closed": _l("the request is closed")}
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
    "visit": _l("The visit is recorded and sent to the community service."),
    "retry": _l("The message will be tried again; its state below changes when it has gone."),
}


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
    return read_all_pages("VOLUNTEERS_API_URL", f"/api/v1/requests/{req.id}/candidates") or []


def actions(req: ServiceRequest, now) -> tuple[list[str], list[str]]:
    """What the request's state allows: what to do next (shown first on
    its page), then the rest (escalate, hand back, cancel)."""
    open_ = req.status not in FINAL
    first = []
    if open_ and req.taken_at is None:
        first.append("take")
    if open_ and not contract.CATEGORY_BY_CODE[req.category].staff_only:
        first.append("assign")
    if open_ and not req.extension_days and req.due_at is not None:
        first.append("extend")
    if "closed" in TRANSITIONS[req.status] and req.status not in ("assigned", "in_progress"):
        first.append("close")
    if req.status in ("completed", "closed") and req.feedback is None:
        first.append("follow_up")
    more = ["escalate"] if open_ else []
    if (open_ and req.routed_at and not req.grid_decides
            and now <= hotline.handback_open_until(req.routed_at)):
        more.append("hand_back")
    if open_:
        more.append("cancel")
    return first, more


def _detail(req: ServiceRequest, errors: dict | None = None, form: str | None = None, status: int = 200,
            contact: bool = False):
    now = utcnow()
    matching = _matching(req)
    first, more = actions(req, now)
    return render_template(
        "console_request.html", req=req, now=now, matching=matching, deliveries=_deliveries(req, matching),
        candidates=_candidates(req) if "assign" in first else [], errors=errors or {}, form=form,
        contact=contact, category=contract.CATEGORY_BY_CODE[req.category], event_labels=EVENT_LABELS,
        refusals=REFUSALS, levels=LEVELS, done=DONE.get(request.args.get("done", "")),
        deadline=hotline.deadline_state(req, now), next_actions=first, more_actions=more,
        handback_until=hotline.handback_open_until(req.routed_at) if req.routed_at else None,
        # A programme's visit: whoever went (a hallway leader) says what they found.
        visit_outcomes={code: _l(label) for code, label in contract.VISIT_OUTCOME_LABELS.items()}
        if req.category == "visit" and req.programme_ref and req.status not in FINAL else None,
    ), status


@console.get("/requests/<uuid:request_id>")
@staff_required
def detail(request_id):
    return _detail(scoped_request(request_id))


@console.post("/requests/<uuid:request_id>/contact")
@staff_required
def show_contact(request_id):
    """Staff in scope may see the resident's contact; each look is logged."""
    req = scoped_request(request_id)
    if req.anonymised_at or not req.contact_phone:
        return _detail(req)
    ext.db_session().add(ContactAccess(request_id=req.id, actor=g.actor, purpose="console"))
    ext.db_session().commit()
    log.info("contact shown", extra={"service_request_id": req.id, "actor": g.actor})
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
    log.info("staff action", extra={"service_request_id": req.id, "action": form, "actor": g.actor})
    return redirect(url_for("console.detail", request_id=req.id, done=outcome), 303)


def _refused(text) -> dict:
    return {"_action": [text]}


NOT_NOW = _l("This cannot be done in the request's present state.")


@console.post("/requests/<uuid:request_id>/take")
@staff_required
def take(request_id):
    return _act(request_id, None, lambda req, d: "taken" if operations.take(req, g.actor) else _refused(NOT_NOW),
                "take")


@console.post("/requests/<uuid:request_id>/extend")
@staff_required
def extend(request_id):
    def apply(req, d):
        if operations.extend(ext.db_session(), ext.outbox(), req, g.actor, d["working_days"], d["note"]):
            return "extended"
        return _refused(_l("A request is extended once, and only while it is open."))
    return _act(request_id, ExtendIn, apply, "extend")


@console.post("/requests/<uuid:request_id>/hand-back")
@staff_required
def hand_back(request_id):
    why = {"late": _l("Hand-backs are possible within one working day of receiving the request."),
           "locked": _l("After three hand-backs the grid leader decides who handles it.")}

    def apply(req, d):
        refused = operations.hand_back(ext.db_session(), ext.outbox(), req, g.actor, d["note"], utcnow())
        return _refused(why[refused]) if refused else "handed_back"
    return _act(request_id, ReasonIn, apply, "hand_back")


@console.post("/requests/<uuid:request_id>/reassign")
@staff_required
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
@staff_required
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
@staff_required
def close(request_id):
    def apply(req, d):
        ok = operations.close(ext.db_session(), ext.outbox(), req, g.actor, d["note"])
        return "closed" if ok else _refused(_l("Close it after the volunteer completes it, or cancel it."))
    return _act(request_id, CloseIn, apply, "close")


@console.post("/requests/<uuid:request_id>/cancel")
@staff_required
def cancel(request_id):
    def apply(req, d):
        ok = operations.cancel(ext.db_session(), ext.outbox(), req, g.actor, d["note"])
        return "cancelled" if ok else _refused(NOT_NOW)
    return _act(request_id, ReasonIn, apply, "cancel")


@console.post("/requests/<uuid:request_id>/follow-up")
@staff_required
def follow_up(request_id):
    """The follow-up call (回访), recorded by staff for the resident."""
    def apply(req, d):
        ok = operations.give_feedback(ext.db_session(), ext.outbox(), req, d, actor=g.actor)
        return "follow_up" if ok else _refused(_l("A follow-up is recorded once, after completion."))
    return _act(request_id, FeedbackIn, apply, "follow_up")


@console.post("/requests/<uuid:request_id>/deliveries/<id:delivery_id>/retry")
@staff_required
def retry_delivery(request_id, delivery_id):
    """A message that could not be delivered (every channel failed), tried
    again by the office: only one of this request's, asked of notify by task."""
    req = scoped_request(request_id)
    mine = {d["id"]: d for d in _deliveries(req, _matching(req))}
    if delivery_id not in mine:
        abort(404)
    if mine[delivery_id]["status"] != "dead":
        return redirect(url_for("console.detail", request_id=req.id), 303)
    ext.outbox().emit(ext.db_session(), contract.DELIVERY_RETRY, {"delivery_id": delivery_id, "actor": g.actor})
    ext.db_session().commit()
    log.info("delivery retry sent", extra={"service_request_id": req.id, "delivery_id": delivery_id,
                                           "actor": g.actor})
    return redirect(url_for("console.detail", request_id=req.id, done="retry"), 303)
