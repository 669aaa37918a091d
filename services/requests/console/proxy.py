"""Proxy intake: staff enter a request for a resident who phoned or
walked in (现场), within their own scope."""
from __future__ import annotations

import logging
from urllib.parse import urlencode

from flask import current_app, g, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError

from services.common import contract
from services.common import extensions as ext
from services.common.web import read_service

from .. import operations
from ..models import Building
from ..queries import sorted_buildings
from ..schemas import ProxyRequestIn
from .blueprint import console, staff_required

log = logging.getLogger(__name__)


def proxy_form(values: dict, errors: dict, status: int = 200, lookup: dict | None = None,
               form_action: str | None = None):
    """The resident form as staff fill it in for a resident (here, or from a phone call)."""
    buildings = [b for b in sorted_buildings() if any(g.scope.allows_place(b, u) for u in b.units)]
    return render_template("request_form.html", categories=contract.RESIDENT_CATEGORIES, buildings=buildings,
                           max_units=max((len(b.units) for b in buildings), default=1), values=values,
                           errors=errors, proxy=True, form_action=form_action or url_for("console.proxy_post"),
                           lookup=lookup or {}), status


def enter_for_resident(values: dict, form_action: str):
    """Check the form and submit the request within the member's scope:
    (request, None), or (None, the form again with what is wrong). The caller commits."""
    try:
        data = ProxyRequestIn().load(values)
    except ValidationError as exc:
        return None, proxy_form(values, exc.messages, 422, form_action=form_action)
    building = ext.db_session().get(Building, data["building"])
    if not g.scope.allows_place(building, data.get("unit")):
        return None, proxy_form(values, {"unit": [_l("This stairwell is outside your area.")]}, 403,
                                form_action=form_action)
    req = operations.submit(ext.db_session(), ext.outbox(), data, channel="staff",
                            language=data["language"], digest_key=current_app.config["PHONE_DIGEST_KEY"],
                            timer=operations.timer_for(data["category"]), entered_by=g.actor)
    return req, None


# --- looking the resident up in the register (the community service's) ---

NOT_IN_REGISTER = _l("Nobody in your area's register lives there or has that phone: enter the details.")
REGISTER_DOWN = _l("The register cannot be read just now: enter the details.")
LOOKUP_HOW = _l("Give the building, unit and room, or the phone number.")


def register_lookup(query: dict) -> list | None:
    """Residents the register knows (building, unit and room, or phone_digest),
    in the member's area and logged by the community service; None when it
    cannot answer."""
    return read_service("COMMUNITY_API_URL", f"/api/v1/residents/lookup?{urlencode(query)}")


def caller_in_register(phone: str) -> list | None:
    """Who a phone number belongs to in the register: only its keyed digest travels."""
    digits = "".join(ch for ch in phone if ch.isdigit())
    return register_lookup({"phone_digest": contract.phone_digest(digits, current_app.config["PHONE_DIGEST_KEY"])})


def _lookup(args) -> dict:
    """Residents the register knows by room or by phone, within the member's
    area. The phone goes to the community service only as its keyed digest."""
    building, unit, room = (args.get(f"lk_{k}", "").strip() for k in ("building", "unit", "room"))
    phone = "".join(ch for ch in args.get("lk_phone", "") if ch.isdigit())
    query = {}
    if phone:
        query["phone_digest"] = contract.phone_digest(phone, current_app.config["PHONE_DIGEST_KEY"])
    if building and unit and room:
        query.update(building=building, unit=unit, room=room)
    found = {"asked": {"building": building, "unit": unit, "room": room}}
    if not query:
        return found | {"message": LOOKUP_HOW}
    answer = register_lookup(query)
    if answer is None:
        return found | {"message": REGISTER_DOWN}
    return found | {"matches": answer, "message": None if answer else NOT_IN_REGISTER}


# The register's "prefers to be reached by" is the resident's own answer, so it
# pre-fills "Hearing back"; the desk checks it with them, as the notice asks.
# A resident reached through their hallway leader gets no messages of ours.
MESSAGES_BY_REACH = {"text": "text", "call": "call", "hallway_leader": "none"}


def _filled(match: dict, values: dict) -> dict:
    return values | {"contact_name": match["name"], "contact_phone": match.get("phone") or "",
                     "building": match["building"], "unit": match["unit"], "room": match["room"],
                     "messages": MESSAGES_BY_REACH.get(match.get("reach_by"), "none")}


@console.get("/new")
@staff_required
def proxy():
    values = {"mode": "home", "urgency": "normal"}
    if request.args.get("resident", "").isdigit():
        # One resident chosen from the lookup: read (and logged) by id, so no phone travels in a URL.
        found = read_service("COMMUNITY_API_URL", f"/api/v1/residents/{request.args['resident']}")
        if found:
            values = _filled({**found, "phone": found.get("phone")}, values)
            return proxy_form(values, {}, lookup={"filled": found["name"]})
    return proxy_form(values, {})


@console.post("/new/lookup")
@staff_required
def proxy_lookup():
    """Posted, so that a phone number never sits in a URL (nor in a log of one)."""
    values = {"mode": "home", "urgency": "normal"}
    lookup = _lookup(request.form)
    matches = lookup.get("matches") or []
    if len(matches) == 1:
        values = _filled(matches[0], values)
        lookup["filled"] = matches[0]["name"]
    return proxy_form(values, {}, lookup=lookup)


@console.post("/new")
@staff_required
def proxy_post():
    values = {k: v for k, v in request.form.items() if k != "csrf_token"}
    req, refused = enter_for_resident(values, url_for("console.proxy_post"))
    if refused is not None:
        return refused
    ext.db_session().commit()
    log.info("request entered for a resident", extra={"service_request_id": req.id, "actor": g.actor,
                                                      "consent_method": req.consent_method})
    return redirect(url_for("console.detail", request_id=req.id, done="created"), 303)
