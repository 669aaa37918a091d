"""Intake's HTTP side: the resident's web form and tracking page, and the
JSON API (documented by OpenAPI through flask-smorest)."""
from __future__ import annotations

import logging

import segno
from flask import Blueprint as WebBlueprint
from flask import current_app, g, redirect, render_template, request, url_for
from flask.views import MethodView
from flask_babel import lazy_gettext as _l
from flask_smorest import abort
from markupsafe import Markup
from marshmallow import ValidationError
from sqlalchemy import select

from services.common import contract
from services.common import extensions as ext
from services.common.auth import callers, public, signed_in
from services.common.clock import utcnow
from services.common.factory import ApiBlueprint, page_of
from services.common.ratelimit import limit
from services.common.web import current_lang, read_service

from . import open311, operations, staff
from .labels import STATUS_LABELS
from .models import FINAL, Building, ContactAccess, Open311Key, ServiceRequest, normalise_tracking_code
from .queries import queue_statement, sorted_buildings
from .schemas import (
    BuildingOut,
    CancelIn,
    CategoryOut,
    ContactOut,
    FeedbackIn,
    Open311KeyIn,
    Open311KeyOut,
    QueueQuery,
    ServiceRequestCreated,
    ServiceRequestIn,
    StaffRequestOut,
    TrackingOut,
)

log = logging.getLogger(__name__)

web = WebBlueprint("web", __name__)
api = ApiBlueprint("api", __name__, url_prefix="/api/v1", description="Residents' service requests")


def _submit(data: dict, channel: str) -> ServiceRequest:
    session = ext.db_session()
    req = operations.submit(session, ext.outbox(), data, channel=channel, language=current_lang(),
                            digest_key=current_app.config["PHONE_DIGEST_KEY"],
                            timer=operations.timer_for(data["category"]))
    session.commit()  # the outbox relays volunteers.request_submitted right after this
    log.info("request submitted", extra={"service_request_id": req.id, "category": req.category, "channel": channel})
    return req


def _find(code: str) -> ServiceRequest | None:
    return ext.db_session().scalar(
        select(ServiceRequest).where(ServiceRequest.tracking_code == normalise_tracking_code(code))
    )


# --- Web pages ---


def _form(values: dict, errors: dict, status: int = 200):
    buildings = sorted_buildings()
    return render_template(
        "request_form.html",
        categories=contract.RESIDENT_CATEGORIES,
        buildings=buildings,
        max_units=max((len(b.units) for b in buildings), default=1),
        values=values,
        errors=errors,
    ), status


@web.get("/")
@public
def form():
    return _form({"building": request.args.get("building", ""), "mode": "home", "urgency": "normal"}, {})


@web.post("/")
@public
@limit("request_form")
def submit_form():
    values = request.form.to_dict()
    values.pop("csrf_token", None)
    try:
        data = ServiceRequestIn().load(values)
    except ValidationError as exc:
        return _form(values, exc.messages, 422)
    req = _submit(data, channel="web")
    return redirect(url_for("web.track", code=req.tracking_code, new=1), 303)


@web.get("/track/<code>")
@public
def track(code: str):
    req = _find(code)
    if req is None:
        return render_template("not_found.html"), 404
    return _tracking_page(req, notice=NOTICES.get(request.args.get("done", "")))


NOTICES = {
    "cancelled": _l("Your request is cancelled. Your phone number and room are no longer shown to anyone."),
    "feedback": _l("Thank you for your feedback! It reaches the volunteer."),
    "stopped": _l("No more text messages or calls about this request. This page still shows what happens."),
}


# What happens next, in plain words, under the status.
NEXT_STEPS = {
    "submitted": _l("We are looking for a neighbour volunteer. This page shows who takes it."),
    "matching": _l("We are looking for a neighbour volunteer. This page shows who takes it."),
    "offered": _l("A volunteer has been asked. This page shows when they accept."),
    "assigned": _l("The volunteer will contact you to arrange a time."),
    "in_progress": _l("The volunteer is working on it."),
    "completed": _l("Done. Please tell us below whether your problem is solved."),
}


def _live_context(req: ServiceRequest) -> dict:
    return {"req": req, "category": contract.CATEGORY_BY_CODE[req.category], "labels": STATUS_LABELS,
            "messages": _inbox(req), "next_step": NEXT_STEPS.get(req.status)}


def _tracking_page(req: ServiceRequest, notice=None, errors=None, status: int = 200):
    return render_template(
        "track.html", **_live_context(req), new=request.args.get("new") == "1", notice=notice,
        errors=errors or {}, can_cancel=req.status not in FINAL,
        can_rate=req.status in ("completed", "closed") and req.feedback is None,
        live_every=current_app.config["TRACK_POLL_MS"],
    ), status


@web.get("/track/<code>/live")
@public
def track_live(code: str):
    """The changing part of the tracking page, for its script (no reload)."""
    req = _find(code)
    if req is None:
        return {"error": "not found"}, 404
    return {"status": req.status, "final": req.status in ("closed", "cancelled"),
            "html": render_template("_track_live.html", **_live_context(req))}


@web.post("/track/<code>/cancel")
@public
def cancel_form(code: str):
    req = _find(code)
    if req is None:
        return render_template("not_found.html"), 404
    if not operations.cancel(ext.db_session(), ext.outbox(), req, actor="resident",
                             reason=request.form.get("reason", "").strip()[:500]):
        return _tracking_page(req, status=409)
    ext.db_session().commit()
    return redirect(url_for("web.track", code=req.tracking_code, done="cancelled"), 303)


@web.post("/track/<code>/stop-messages")
@public
def stop_messages(code: str):
    """退订: the resident stops text messages and calls about this request."""
    req = _find(code)
    if req is None:
        return render_template("not_found.html"), 404
    operations.stop_messages(req)
    ext.db_session().commit()
    return redirect(url_for("web.track", code=req.tracking_code, done="stopped"), 303)


@web.post("/track/<code>/feedback")
@public
def feedback_form(code: str):
    req = _find(code)
    if req is None:
        return render_template("not_found.html"), 404
    values = {k: v for k, v in request.form.items() if k != "csrf_token" and v != ""}
    try:
        data = FeedbackIn().load(values)
    except ValidationError as exc:
        return _tracking_page(req, errors=exc.messages, status=422)
    if not operations.give_feedback(ext.db_session(), ext.outbox(), req, data):
        return _tracking_page(req, status=409)
    ext.db_session().commit()
    return redirect(url_for("web.track", code=req.tracking_code, done="feedback"), 303)


@web.get("/posters")
@public
def posters():
    """One printable poster per building, for the stairwell notice boards."""
    buildings = sorted_buildings()
    return render_template("posters.html", buildings=buildings)


@web.get("/posters/<code>")
@public
def poster(code: str):
    """A4: a QR code that opens the form with this building chosen."""
    building = ext.db_session().get(Building, code)
    if building is None:
        return render_template("not_found.html"), 404
    url = f"{current_app.config['REQUESTS_URL']}/?building={building.code}"
    qr = segno.make(url, error="m").svg_inline(scale=8, omitsize=True)
    return render_template("poster.html", building=building, url=url, qr=Markup(qr))


def _inbox(req: ServiceRequest) -> list[dict]:
    """The resident's in-app messages, from notify's API (the page still
    shows the timeline when notify is unreachable)."""
    return read_service("NOTIFY_API_URL", f"/api/v1/inbox/resident:{req.id}") or []


# --- JSON API ---


@api.route("/categories")
class Categories(MethodView):
    @public
    @api.response(200, CategoryOut(many=True))
    def get(self):
        """Service categories a resident may ask for; staff-only ones never go to volunteers."""
        return list(contract.RESIDENT_CATEGORIES)  # a tuple would read as (body, status)


@api.route("/buildings")
class Buildings(MethodView):
    @public
    @api.response(200, BuildingOut(many=True))
    def get(self):
        """The community's buildings (幢), their stairwells and grid."""
        return sorted_buildings()


@api.route("/requests")
class Requests(MethodView):
    # One budget per address for the form and the API together.
    decorators = [limit("request_form")]

    @public
    @api.arguments(ServiceRequestIn)
    @api.response(201, ServiceRequestCreated)
    def post(self, data):
        """Submit a request for help; answers with its tracking code."""
        req = _submit(data, channel="api")
        return {"id": req.id, "tracking_code": req.tracking_code, "status": req.status,
                "tracking_url": req.tracking_url(current_app.config["REQUESTS_URL"])}


@api.route("/requests/<code>")
class Tracking(MethodView):
    @public
    @api.response(200, TrackingOut)
    def get(self, code):
        """Status and history of a request, by its tracking code."""
        req = _find(code)
        if req is None:
            abort(404, message="no request with that tracking code")
        return req


@api.route("/requests/<code>/cancel")
class Cancel(MethodView):
    @public
    @api.arguments(CancelIn)
    @api.response(200, TrackingOut)
    def post(self, data, code):
        """Withdraw a request (the tracking code is the resident's key)."""
        req = _find(code)
        if req is None:
            abort(404, message="no request with that tracking code")
        if not operations.cancel(ext.db_session(), ext.outbox(), req, actor="resident",
                                 reason=data["reason"]):
            abort(409, message=f"a {req.status} request cannot be cancelled")
        ext.db_session().commit()
        return req


@api.route("/requests/<code>/feedback")
class GiveFeedback(MethodView):
    @public
    @api.arguments(FeedbackIn)
    @api.response(201, TrackingOut)
    def post(self, data, code):
        """The resident's rating (1–5), thanks and comment, once, after completion."""
        req = _find(code)
        if req is None:
            abort(404, message="no request with that tracking code")
        if not operations.give_feedback(ext.db_session(), ext.outbox(), req, data):
            abort(409, message="feedback is taken once, after completion")
        ext.db_session().commit()
        return req


@api.route("/open311/keys")
class Open311Keys(MethodView):
    @callers("admin")
    @api.arguments(Open311KeyIn)
    @api.response(201, Open311KeyOut)
    def post(self, data):
        """Issue an Open311 API key (staff token); the key is shown this once."""
        row, key = open311.issue_key(ext.db_session(), data["name"])
        ext.db_session().commit()
        return {"id": row.id, "name": row.name, "api_key": key, "created_at": row.created_at}


@api.route("/open311/keys/<id:key_id>")
class Open311KeyById(MethodView):
    @callers("admin")
    @api.response(204)
    def delete(self, key_id):
        """Revoke an Open311 API key (staff token)."""
        row = ext.db_session().get(Open311Key, key_id)
        if row is None:
            abort(404, message="no such key")
        open311.revoke_key(row)
        ext.db_session().commit()


@api.route("/internal/requests/<uuid:request_id>/contact")
class Contact(MethodView):
    @callers("volunteers")
    @api.response(200, ContactOut)
    def get(self, request_id):
        """The resident's contact, for matching only (its token), and only
        while a volunteer is on the request (offered and accepted, assigned
        or in progress), never after it is finished."""
        req = ext.db_session().get(ServiceRequest, str(request_id))
        if req is None:
            abort(404, message="no such request")
        if req.status == "cancelled" or req.anonymised_at is not None:
            abort(410, message="the resident withdrew this request, or its data was removed")
        # "offered" too: matching commits the acceptance and shows the
        # contact before its "assigned" event reaches intake. Matching itself
        # checks that the reader holds a live assignment.
        if req.status not in ("offered", "assigned", "in_progress"):
            abort(409, message="the contact is given only while a volunteer is on the request")
        # Who the calling service shows it to (volunteer:<id>): the access log says.
        reader = request.args.get("reader", "")
        reader = reader if contract.RECIPIENT_KEY.match(reader) else "service"
        ext.db_session().add(ContactAccess(request_id=req.id, actor=reader, purpose="assigned volunteer"))
        ext.db_session().commit()
        log.info("contact read", extra={"service_request_id": req.id, "by": reader})
        return req


# --- the staff API: what the console shows, as JSON, in the caller's scope ---


def _staff_session_or_admin_token() -> bool:
    """A staff session (GET only: cookies are not trusted for writes here)
    or the bootstrap admin token; sets g.scope."""
    return request.method == "GET" and staff.identify(ext.db_session())


def _refuse_staff_api():
    abort(401, message="sign in as staff, or send the admin token")


staff_reads = signed_in(_staff_session_or_admin_token, _refuse_staff_api)


@api.route("/staff/requests")
class StaffRequests(MethodView):
    @staff_reads
    @api.arguments(QueueQuery, location="query")
    @api.response(200, StaffRequestOut(many=True))
    @api.paginate()
    def get(self, query, pagination_parameters):
        """Requests in the caller's scope, newest first, with the queue's filters, a page at a time."""
        return page_of(ext.db_session(), queue_statement(g.scope, query, utcnow()), pagination_parameters)


@api.route("/staff/requests/<uuid:request_id>")
class StaffRequestById(MethodView):
    @staff_reads
    @api.response(200, StaffRequestOut)
    def get(self, request_id):
        """One request, if it is in the caller's scope (403 otherwise)."""
        req = ext.db_session().get(ServiceRequest, str(request_id))
        if req is None:
            abort(404, message="no such request")
        if not g.scope.allows(req):
            abort(403, message="outside your area")
        return req
