"""The console's words for codes: every code a person reads in the console
(a service, a status, a role, a channel, who did something, why) is shown
in the page's language. Downloads keep the codes and add a name column."""
from __future__ import annotations

from flask import current_app, g
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from services.common import contract
from services.common import extensions as ext
from services.common.community import load as load_community
from services.common.i18n import translate
from services.common.web import current_lang

from ..labels import STATUS_LABELS
from ..models import StaffMember

# Monday first, as datetime.weekday() counts (the contract's weekday numbers).
WEEKDAY_LABELS = (_l("Monday"), _l("Tuesday"), _l("Wednesday"), _l("Thursday"), _l("Friday"), _l("Saturday"),
                  _l("Sunday"))
ROLE_LABELS = {"admin": _l("Community admin"), "grid_leader": _l("Grid leader"),
               "hallway_leader": _l("Hallway leader")}
CHANNEL_LABELS = {"web": _l("web form"), "api": _l("app"), "open311": _l("Open311 partner"),
                  "staff": _l("entered by staff")}
CONSENT_LABELS = {"phone": _l("By phone"), "in_person": _l("In person"), "written": _l("In writing")}
# Matching's offers and assignments, notify's deliveries.
OFFER_LABELS = {"open": _l("waiting for an answer"), "accepted": _l("accepted"), "declined": _l("declined"),
                "expired": _l("expired"), "withdrawn": _l("withdrawn")}
ASSIGNMENT_LABELS = {"active": _l("active"), "started": _l("started"), "completed": _l("completed"),
                     "cancelled": _l("cancelled")}
DELIVERY_LABELS = {"queued": _l("queued"), "sending": _l("sending"), "sent": _l("sent"),
                   "failed": _l("failed, retrying"), "dead": _l("failed")}
TEMPLATE_LABELS = {"offer": _l("Offer to a volunteer"), "offer_withdrawn": _l("Offer withdrawn"),
                   "assigned": _l("Assigned"), "reminder": _l("Reminder"), "completed": _l("Completed"),
                   "escalation": _l("Escalation"), "magic_link": _l("Sign-in link"), "thanks": _l("Thanks"),
                   "digest": _l("Digest"), "follow_up": _l("Follow-up")}
ACTOR_LABELS = {"resident": _l("the resident"), "matching": _l("matching"), "station": _l("the station"),
                "web": _l("the resident (web form)"), "api": _l("the resident (app)"),
                "open311": _l("Open311 partner"), "admin-token": _l("community admin (token)")}
GRID_LABEL = _l("Grid %(code)s")
PURPOSE_LABELS = {"console": _l("looked up in the console"), "assigned volunteer": _l("the assigned volunteer")}
PERSON_LABELS = {"volunteer": _l("volunteer #%(id)s"), "resident": _l("the resident"),
                 "leader": _l("leader #%(id)s")}

# The register (住户台账, the community service's): its codes in words.
TENURE_LABELS = {"owner": _l("Owner"), "tenant": _l("Tenant")}
SEX_LABELS = {"female": _l("Female"), "male": _l("Male")}
RELATION_LABELS = {"head": _l("Head of household"), "spouse": _l("Spouse"), "child": _l("Child"),
                   "parent": _l("Parent"), "grandchild": _l("Grandchild"), "other": _l("Other")}
CARE_LABELS = {"none": _l("Independent"), "partial": _l("Partly dependent (半失能)"),
               "full": _l("Fully dependent (失能)")}
REACH_LABELS = {"text": _l("Text message"), "call": _l("Voice call"),
                "hallway_leader": _l("Only through the hallway leader")}
CONSENT_HOW_LABELS = {"paper": _l("On paper"), "in_person": _l("In person"), "phone": _l("By phone"),
                      "online": _l("Online")}
CLOSE_LABELS = {"moved_out": _l("Moved out"), "deceased": _l("Deceased")}
DUPLICATE_LABELS = {"room": _l("Same room as another household"),
                    "phone": _l("Same phone as another household"), "person": _l("Same person twice")}
AGE_BAND_LABELS = {"0-17": _l("under 18"), "18-59": _l("18–59"), "60-69": _l("60–69"), "70-79": _l("70–79"),
                   "80+": _l("80 and over"), "60+": _l("60 and over")}
REGISTER_LABELS = {"tenure_labels": TENURE_LABELS, "sex_labels": SEX_LABELS, "relation_labels": RELATION_LABELS,
                   "care_labels": CARE_LABELS, "reach_labels": REACH_LABELS, "consent_how_labels": CONSENT_HOW_LABELS,
                   "close_labels": CLOSE_LABELS, "duplicate_labels": DUPLICATE_LABELS,
                   "age_band_labels": AGE_BAND_LABELS}


def category_name(code: str) -> str:
    found = contract.CATEGORY_BY_CODE.get(code)
    return found.name(current_lang()) if found else code


def grid_name(code: str) -> str:
    """G1 → 第1网格 (the community file's name), or "Grid G1" in English."""
    grids = {gr["code"]: gr for gr in load_community(current_app.config["COMMUNITY_FILE"]).get("grids", [])}
    found = grids.get(code)
    if found and current_lang() == "zh-CN":
        return found.get("name") or code
    if found and found.get("name_en"):
        return found["name_en"]
    return str(GRID_LABEL) % {"code": code}


def status_name(code: str) -> str:
    return str(STATUS_LABELS.get(code, code))


def _staff_names() -> dict[str, str]:
    if "staff_names" not in g:
        g.staff_names = {f"staff:{s.id}": s.display_name
                         for s in ext.db_session().scalars(select(StaffMember))}
    return g.staff_names


def actor_name(actor: str | None) -> str:
    """staff:3 → their name; volunteer:5 → "volunteer #5"; matching → "matching"."""
    if not actor:
        return ""
    if actor in ACTOR_LABELS:
        return str(ACTOR_LABELS[actor])
    if actor.startswith("staff:"):
        return _staff_names().get(actor, actor)
    kind, _, ident = actor.partition(":")
    if kind in PERSON_LABELS and ident:
        return str(PERSON_LABELS[kind]) % {"id": ident[:8]}
    return actor


def reason_text(code: str) -> str:
    """A reason code from matching (no_candidate, …) in words; free text as it is."""
    return translate(contract.REASONS[code], current_lang()) if code in contract.REASONS else code


def label(table: dict, code: str) -> str:
    return str(table.get(code, code))


def template_globals() -> dict:
    return {"category_name": category_name, "status_name": status_name, "grid_name": grid_name,
            "purpose_labels": PURPOSE_LABELS, "actor_name": actor_name,
            "reason_text": reason_text, "role_labels": ROLE_LABELS, "status_labels": STATUS_LABELS,
            "channel_labels": CHANNEL_LABELS, "consent_labels": CONSENT_LABELS, "offer_labels": OFFER_LABELS,
            "assignment_labels": ASSIGNMENT_LABELS, "delivery_labels": DELIVERY_LABELS,
            "template_labels": TEMPLATE_LABELS, "label": label, **REGISTER_LABELS}
