"""Proxy intake: staff enter a request for a resident who phoned or
walked in (现场), within their own scope."""
from __future__ import annotations

import logging

from flask import current_app, g, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError

from services.common import contract
from services.common import extensions as ext

from .. import operations
from ..models import Building
from ..queries import sorted_buildings
from ..schemas import ProxyRequestIn
from .blueprint import console, staff_required

log = logging.getLogger(__name__)


def _proxy_form(values: dict, errors: dict, status: int = 200):
    buildings = [b for b in sorted_buildings() if any(g.scope.allows_place(b, u) for u in b.units)]
    return render_template("request_form.html", categories=contract.RESIDENT_CATEGORIES, buildings=buildings,
                           max_units=max((len(b.units) for b in buildings), default=1), values=values,
                           errors=errors, proxy=True, form_action=url_for("console.proxy_post")), status


@console.get("/new")
@staff_required
def proxy():
    return _proxy_form({"mode": "home", "urgency": "normal"}, {})


@console.post("/new")
@staff_required
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
    log.info("request entered for a resident", extra={"service_request_id": req.id, "actor": g.actor,
                                                      "consent_method": data["consent_method"]})
    return redirect(url_for("console.detail", request_id=req.id, done="created"), 303)
