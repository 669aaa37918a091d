"""The console's call log (来电登记): record a call the office or a hallway
leader took, see the calls in one's scope (the caller's number masked), a
call's own page (the number in full), "enter as request" (intake's form,
filled in from the call, the new request linked back to it), and the log
as a CSV or Excel file.

The caller's number travels only in POST bodies and pages, never in a URL
or a log line. Looking the caller up in the register by number is not done
here yet (the community service's lookup API is being built)."""
from __future__ import annotations

import logging
from datetime import datetime

from flask import abort, g, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError
from sqlalchemy import select

from services.common import extensions as ext
from services.common import tables
from services.common.clock import SHANGHAI, utcnow

from .. import calls
from ..models import PhoneCall, StaffMember
from ..queries import sorted_buildings
from ..schemas import PhoneCallIn
from .blueprint import console, staff_required
from .proxy import caller_in_register, enter_for_resident, proxy_form
from .words import category_name, grid_name

log = logging.getLogger(__name__)

OUTCOME_LABELS = {"request": _l("Became a request"), "answered": _l("Answered on the spot"),
                  "referred": _l("Referred elsewhere")}
REFERRAL_LABELS = {"12345": _l("12345 hotline"), "property": _l("Property company (物业)"), "police": _l("Police"),
                   "other": _l("Elsewhere")}
OTHER_TOPIC_LABEL = _l("Something else")
LIST_LIMIT = 200


def topic_name(code: str) -> str:
    return str(OTHER_TOPIC_LABEL) if code == calls.OTHER_TOPIC else category_name(code)


def _month_arg() -> str | None:
    month = request.args.get("month", "")
    try:
        datetime.strptime(month, "%Y-%m")
    except ValueError:
        return None
    return month


def _scoped_calls(month: str | None, outcome: str | None):
    stmt = select(PhoneCall).where(calls.visible(g.scope, g.actor)).order_by(PhoneCall.called_at.desc())
    if outcome in calls.OUTCOMES:
        stmt = stmt.where(PhoneCall.outcome == outcome)
    rows = ext.db_session().scalars(stmt).all()
    return [c for c in rows if month is None or calls.month_of(c.called_at) == month]


def _takers(rows) -> dict[str, str]:
    ids = {int(c.taken_by.split(":", 1)[1]) for c in rows if c.taken_by.startswith("staff:")}
    if not ids:
        return {}
    members = ext.db_session().scalars(select(StaffMember).where(StaffMember.id.in_(ids)))
    return {m.actor: m.display_name for m in members}


def _page(values: dict, errors: dict, status: int = 200):
    month, outcome = _month_arg(), request.args.get("outcome")
    rows = _scoped_calls(month, outcome)
    return render_template("console_calls.html", calls=rows[:LIST_LIMIT], more=len(rows) > LIST_LIMIT,
                           takers=_takers(rows[:LIST_LIMIT]), values=values, errors=errors,
                           buildings=sorted_buildings(), topics=calls.TOPICS, topic_name=topic_name,
                           outcomes=OUTCOME_LABELS, referrals=REFERRAL_LABELS, month=month or "",
                           outcome=outcome if outcome in calls.OUTCOMES else "",
                           now_local=utcnow().astimezone(SHANGHAI).strftime("%Y-%m-%dT%H:%M")), status


EXPORT_HEADER = ["called_at", "caller_phone_masked", "caller_name", "building", "unit", "grid", "topic",
                 "topic_name", "note", "outcome", "outcome_name", "referred_to", "referred_to_name",
                 "request_public_id", "taken_by"]


def _export(rows, fmt: str):
    takers = _takers(rows)
    out = [[c.called_at.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M"), c.masked_phone, c.caller_name,
            c.building_code or "", c.unit or "", c.building.grid if c.building else "", c.topic, topic_name(c.topic),
            c.note, c.outcome, str(OUTCOME_LABELS[c.outcome]), c.referred_to or "",
            str(REFERRAL_LABELS[c.referred_to]) if c.referred_to else "",
            c.service_request.public_id if c.service_request else "", takers.get(c.taken_by, c.taken_by)]
           for c in rows]
    return tables.download(tables.table(EXPORT_HEADER, out, fmt), f"calls.{fmt}", fmt)


@console.get("/calls")
@staff_required
def calls_log():
    fmt = request.args.get("format")
    if fmt:
        if fmt not in tables.FORMATS:
            abort(404)
        return _export(_scoped_calls(_month_arg(), request.args.get("outcome")), fmt)
    return _page({}, {})


@console.post("/calls")
@staff_required
def call_record():
    values = {k: v for k, v in request.form.items() if k != "csrf_token"}
    try:
        data = PhoneCallIn().load(values)
    except ValidationError as exc:
        return _page(values, exc.messages, 422)
    call = PhoneCall(called_at=data["called_at"] or utcnow(), caller_phone=data["caller_phone"],
                     caller_name=data["caller_name"], building_code=data["building"], unit=data["unit"],
                     topic=data["topic"], note=data["note"], outcome=data["outcome"],
                     referred_to=data["referred_to"] if data["outcome"] == "referred" else None, taken_by=g.actor)
    ext.db_session().add(call)
    ext.db_session().commit()
    log.info("phone call recorded", extra={"phone_call_id": call.id, "actor": g.actor, "outcome": call.outcome})
    if call.outcome == "request":
        return redirect(url_for("console.call_request", call_id=call.id), 303)
    return redirect(url_for("console.call_detail", call_id=call.id, done="recorded"), 303)


def scoped_call(call_id: int) -> PhoneCall:
    """The call, if the signed-in member may see it: 404 if there is none,
    403 (and a warning, with ids only) if it is outside their scope."""
    call = ext.db_session().get(PhoneCall, call_id)
    if call is None:
        abort(404)
    if not calls.allows(g.scope, g.actor, call):
        log.warning("out-of-scope phone call refused", extra={"phone_call_id": call.id, "actor": g.actor})
        abort(403)
    return call


@console.get("/calls/<id:call_id>")
@staff_required
def call_detail(call_id: int):
    call = scoped_call(call_id)
    registered = caller_in_register(call.caller_phone) if call.caller_phone else []
    return render_template("console_call.html", call=call, registered=registered, takers=_takers([call]),
                           topic_name=topic_name,
                           outcomes=OUTCOME_LABELS, referrals=REFERRAL_LABELS,
                           done=request.args.get("done") in ("recorded", "linked"),
                           grid=grid_name(call.building.grid) if call.building else "")




@console.get("/calls/<id:call_id>/request")
@staff_required
def call_request(call_id: int):
    """Intake's form for the resident who called, filled in from the call."""
    call = scoped_call(call_id)
    if call.service_request_id:
        return redirect(url_for("console.detail", request_id=call.service_request_id), 303)
    values = {"mode": "home", "urgency": "normal", "contact_phone": call.caller_phone,
              "contact_name": call.caller_name, "building": call.building_code or "", "unit": call.unit or "",
              "category": call.topic if call.topic != calls.OTHER_TOPIC else "", "description": call.note,
              "consent_method": "phone"}
    return proxy_form(values, {}, form_action=url_for("console.call_request_post", call_id=call.id))


@console.post("/calls/<id:call_id>/request")
@staff_required
def call_request_post(call_id: int):
    call = scoped_call(call_id)
    if call.service_request_id:
        return redirect(url_for("console.detail", request_id=call.service_request_id), 303)
    values = {k: v for k, v in request.form.items() if k != "csrf_token"}
    req, refused = enter_for_resident(values, url_for("console.call_request_post", call_id=call.id))
    if refused is not None:
        return refused
    call.service_request_id, call.outcome, call.referred_to = req.id, "request", None
    ext.db_session().commit()
    log.info("request entered from a phone call", extra={"service_request_id": req.id, "phone_call_id": call.id,
                                                         "actor": g.actor})
    return redirect(url_for("console.call_detail", call_id=call.id, done="linked"), 303)
