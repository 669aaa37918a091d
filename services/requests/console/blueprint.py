"""The staff console's blueprint (/staff) and what every page of it shares:
sign-in on every page (staff_required), no caching, the labels every template
uses, and a request by id only within the staff member's scope."""
from __future__ import annotations

import logging

from flask import Blueprint, abort, g, redirect, request, url_for

from services.common import extensions as ext
from services.common.auth import signed_in
from services.common.clock import utcnow

from .. import staff
from ..models import ServiceRequest
from ..queries import waiting_count
from .words import template_globals

log = logging.getLogger(__name__)

console = Blueprint("console", __name__, url_prefix="/staff")

def _staff_signed_in() -> bool:
    return staff.identify(ext.db_session())


def _to_login():
    return redirect(url_for("console.login", next=request.path))


# Every console page but the sign-in pages (public) is for signed-in staff.
staff_required = signed_in(_staff_signed_in, _to_login)


@console.after_request
def _private(response):
    # Pages with residents' data are never cached, by the browser or a proxy.
    response.headers["Cache-Control"] = "no-store"
    return response


def _waiting() -> int | None:
    """How many requests wait for the signed-in member (queries.waiting:
    those handed to them among them),
    for the navigation: one count, asked only by console pages."""
    scope = g.get("scope")
    return waiting_count(scope, utcnow(), g.get("actor")) if scope is not None else None


@console.app_context_processor
def _globals():
    return {"staff_member": g.get("staff"), "waiting_count": _waiting, **template_globals()}


def scoped_request(request_id) -> ServiceRequest:
    """The request, if it is in the staff member's scope: 404 if there is
    none, 403 (and a warning in the log) if it is someone else's."""
    req = ext.db_session().get(ServiceRequest, str(request_id))
    if req is None:
        abort(404)
    if not g.scope.allows(req):
        log.warning("out-of-scope request refused", extra={"service_request_id": req.id, "actor": g.actor})
        abort(403)
    return req
