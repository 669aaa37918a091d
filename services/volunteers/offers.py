"""The offer link: the page a volunteer reaches from an offer message, and
the answer to it (accept, or decline with a reason), from the link or from
the portal. Accepting signs the volunteer in to the portal; the resident's
contact is shown only to them, signed in, while the task is live."""
from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from services.common import contract
from services.common import extensions as ext
from services.common.auth import public
from services.common.clock import utcnow

from .dispatch import dispatcher
from .models import Assignment, Offer, Volunteer, token_hash
from .portal import (
    LIVE_TASK,
    OUTCOMES,
    REASONS,
    contact,
    own,
    signed_in_volunteer,
    start_portal_session,
    volunteer_required,
    web,
)


def _offer(token: str) -> Offer | None:
    return ext.db_session().scalar(select(Offer).where(Offer.token_hash == token_hash(token)))


@web.get("/")
@public
def home():
    return render_template("home.html")


@web.get("/offers/<token>")
@public
def offer_page(token: str):
    """The offer as its link shows it. A GET never changes anything and
    never signs in: link previews and crawlers open links too."""
    offer = _offer(token)
    if offer is None:
        return render_template("not_found.html"), 404
    return _render_offer(offer, url_for("web.answer_offer", token=token),
                         outcome=OUTCOMES.get(request.args.get("outcome", "")))


def _render_offer(offer: Offer, action: str, outcome=None, status: int = 200):
    live = offer.status == "accepted" and _live_assignment(offer) is not None
    # The contact is for the volunteer doing the task, in their own signed-in
    # browser, while the task is live: not for whoever else holds the link
    # (a forwarded message, a shared phone), and not after completion.
    reader = signed_in_volunteer()
    mine = reader is not None and reader.id == offer.volunteer_id
    return render_template(
        "offer.html", offer=offer, req=offer.request, category=contract.CATEGORY_BY_CODE[offer.request.category],
        reasons=[REASONS[r] for r in offer.reason.split() if r in REASONS], action=action,
        open_now=offer.status == "open" and (offer.expires_at is None or offer.expires_at > utcnow()),
        live=live, mine=mine, contact=contact(offer.request_id, offer.volunteer_id) if live and mine else None,
        outcome=outcome,
    ), status


def _live_assignment(offer: Offer) -> Assignment | None:
    return ext.db_session().scalar(select(Assignment).where(
        Assignment.offer_id == offer.id, Assignment.status.in_(LIVE_TASK)))


@web.post("/offers/<token>")
@public
def answer_offer(token: str):
    """Accept or decline (with an optional reason). Accepting through the
    link signs the offer's volunteer in to the portal in this browser: the
    link and a deliberate POST are the same proof as a sign-in link, and
    the contact is shown only to a signed-in volunteer."""
    offer = _offer(token)
    if offer is None:
        return render_template("not_found.html"), 404
    outcome = _answer(offer, url_for("web.answer_offer", token=token))
    if not isinstance(outcome, str):
        return outcome
    if outcome == "accepted":
        vol = ext.db_session().get(Volunteer, offer.volunteer_id)
        if vol is not None and vol.active:
            start_portal_session(vol)
    return redirect(url_for("web.offer_page", token=token, outcome=outcome), 303)


def _answer(offer: Offer, action: str):
    """The form's decision, carried out and committed (or, for an
    acceptance that lost its race, rolled back): the outcome, or a page to
    show again."""
    decision = request.form.get("decision")
    matching = dispatcher(ext.db_session())
    if decision == "accept":
        outcome = matching.accept(offer)
        if outcome != "accepted":
            ext.db_session().rollback()  # a lost race: nothing of the attempt stays
            return outcome
    elif decision == "decline":
        reason = request.form.get("reason", "").strip()[:200]
        outcome = "declined" if matching.decline(offer, reason) else "closed"
    else:
        return _render_offer(offer, action, outcome=_l("Choose accept or decline."), status=400)
    ext.db_session().commit()
    return outcome


# --- the same offers, reached from the portal ---


@web.get("/me/offers/<id:offer_id>")
@volunteer_required
def my_offer(offer_id: int):
    """An offer opened from the portal: the link's token is not stored, so
    the signed-in volunteer reaches their offers by id."""
    return _render_offer(own(Offer, offer_id), url_for("web.answer_my_offer", offer_id=offer_id),
                         outcome=OUTCOMES.get(request.args.get("outcome", "")))


@web.post("/me/offers/<id:offer_id>")
@volunteer_required
def answer_my_offer(offer_id: int):
    offer = own(Offer, offer_id)
    outcome = _answer(offer, url_for("web.answer_my_offer", offer_id=offer_id))
    if not isinstance(outcome, str):
        return outcome
    return redirect(url_for("web.my_offer", offer_id=offer_id, outcome=outcome), 303)
