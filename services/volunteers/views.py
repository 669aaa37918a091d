"""Matching's HTTP side: the offer page a volunteer reaches from a message,
and the volunteer registry API for staff and automation."""
from __future__ import annotations

import logging

import requests as http
from flask import Blueprint as WebBlueprint
from flask import current_app, redirect, render_template, request, url_for
from flask.views import MethodView
from flask_babel import lazy_gettext as _l
from flask_smorest import Blueprint, abort
from sqlalchemy import select

from services.common import contract
from services.common.web import require_token

from . import dispatch
from .models import Offer, Volunteer, VolunteerSkill
from .schemas import VolunteerIn, VolunteerOut

log = logging.getLogger(__name__)

web = WebBlueprint("web", __name__)
api = Blueprint("api", __name__, url_prefix="/api/v1", description="Volunteer registry")

REASONS = {
    "same_stairwell": _l("You live in the same stairwell."),
    "same_building": _l("You live in the same building."),
    "same_grid": _l("You live in the same grid."),
    "same_community": _l("You are one of the few neighbours with this skill."),
}
OUTCOMES = {
    "accepted": _l("Thank you! The task is yours. The resident's contact is below."),
    "declined": _l("You declined. We will ask another neighbour."),
    "full": _l("You already have as many tasks as you said you can take. Finish one first."),
    "closed": _l("This offer is no longer open."),
    "taken": _l("Another volunteer took this request first. Thank you all the same."),
}


def _session():
    return current_app.extensions["db"].Session


def _offer(token: str) -> Offer | None:
    return _session().scalar(select(Offer).where(Offer.token == token))


@web.get("/")
def home():
    return render_template("home.html")


@web.get("/offers/<token>")
def offer_page(token: str):
    offer = _offer(token)
    if offer is None:
        return render_template("not_found.html"), 404
    contact = _contact(offer) if offer.status == "accepted" else None
    return render_template(
        "offer.html",
        offer=offer,
        req=offer.request,
        category=contract.CATEGORY_BY_CODE[offer.request.category],
        reasons=[REASONS[r] for r in offer.reason.split() if r in REASONS],
        contact=contact,
        outcome=OUTCOMES.get(request.args.get("outcome", "")),
    )


@web.post("/offers/<token>")
def answer_offer(token: str):
    """Accept or decline; a GET never changes anything."""
    offer = _offer(token)
    if offer is None:
        return render_template("not_found.html"), 404
    session, outbox = _session(), current_app.extensions["outbox"]
    decision = request.form.get("decision")
    if decision == "accept":
        outcome = dispatch.accept(session, outbox, offer)
    elif decision == "decline":
        declined = dispatch.decline(session, outbox, offer, current_app.config["VOLUNTEERS_URL"])
        outcome = "declined" if declined else "closed"
    else:
        return render_template("offer.html", offer=offer, req=offer.request, reasons=[], contact=None,
                               category=contract.CATEGORY_BY_CODE[offer.request.category],
                               outcome=_l("Choose accept or decline.")), 400
    session.commit()
    return redirect(url_for("web.offer_page", token=token, outcome=outcome), 303)


def _contact(offer: Offer) -> dict | None:
    """The resident's contact, read from intake's API only for the volunteer
    who accepted (never stored here)."""
    token = current_app.config["SERVICE_TOKEN"]
    if not token:
        return None
    try:
        resp = http.get(f"{current_app.config['REQUESTS_API_URL']}/api/v1/internal/requests/{offer.request_id}/contact",
                        headers={"Authorization": f"Bearer {token}"}, timeout=current_app.config["HTTP_TIMEOUT"])
        resp.raise_for_status()
        log.info("contact shown", extra={"request_id": offer.request_id, "volunteer_id": offer.volunteer_id})
        return resp.json()
    except (http.RequestException, ValueError) as exc:
        log.warning("contact unavailable", extra={"request_id": offer.request_id, "error": type(exc).__name__})
        return None


@api.before_request
def _staff_only():
    # Before validation, so that a caller without the token learns nothing.
    require_token("ADMIN_TOKEN")


@api.route("/volunteers")
class Volunteers(MethodView):
    @api.arguments(VolunteerIn)
    @api.response(201, VolunteerOut)
    def post(self, data):
        """Register a volunteer (staff token)."""
        session = _session()
        vol = Volunteer(
            name=data["name"], display_name=data["display_name"] or data["name"], phone=data["phone"],
            building=data["building"], unit=data["unit"], capacity=data["capacity"], channels=data["channels"],
            language=data["language"], skills=[VolunteerSkill(category=s) for s in data["skills"]],
        )
        session.add(vol)
        session.commit()
        log.info("volunteer registered", extra={"volunteer_id": vol.id})
        return vol


@api.route("/volunteers/<int:volunteer_id>")
class VolunteerById(MethodView):
    @api.response(200, VolunteerOut)
    def get(self, volunteer_id):
        """One volunteer (staff token)."""
        vol = _session().get(Volunteer, volunteer_id)
        if vol is None:
            abort(404, message="no such volunteer")
        return vol
