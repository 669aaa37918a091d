"""Volunteers in the staff member's scope, read from matching's API; the
office (and a grid leader, for their grid) registers and edits them here.
Matching owns the registry: the console checks a form with the contract's
own schema (VolunteerIn), then asks through the outbox (a staff action
with a change id) and reads matching's record of the change to say when
it has taken effect."""
from __future__ import annotations

import logging
import uuid
from datetime import datetime

from flask import abort, current_app, g, make_response, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError
from sqlalchemy import select

from services.common import contract, tables
from services.common import extensions as ext
from services.common.roster import LIST_SPLIT
from services.common.web import current_lang, local_time, read_all_pages, read_service

from .. import operations
from ..models import Building, StaffMember
from ..queries import sorted_buildings
from .blueprint import console, staff_required
from .words import WEEKDAY_LABELS

log = logging.getLogger(__name__)

EMPTY_WINDOWS = 2  # blank window rows under the volunteer's own, to add more without scripts
REFUSALS = {
    "phone_taken": _l("A volunteer with this phone number is registered already."),
    "out_of_scope": _l("This volunteer lives outside your grid."),
    "no_such_volunteer": _l("There is no such volunteer any more."),
    "busy": _l("The volunteer has more tasks in hand than the new number allows."),
    "channels_changed": _l("The volunteer's message channels changed meanwhile: nothing was changed. Open the "
                           "volunteer again and choose once more."),
    "not_enough_coins": _l("The volunteer has fewer time coins than that: nothing was spent."),
}
OUTSIDE_GRID = _l("This building is outside your grid.")


def _scoped_volunteers() -> list[dict]:
    # Matching answers within the staff member's scope: the console sends
    # their claims with every read (services.common.auth).
    return read_all_pages("VOLUNTEERS_API_URL", "/api/v1/volunteers") or []


def skill_words(codes) -> str:
    """Services as words in the page's language, not codes."""
    lang = current_lang()
    return "、".join(contract.CATEGORY_BY_CODE[c].name(lang) if c in contract.CATEGORY_BY_CODE else c
                     for c in codes)


VOLUNTEER_HEADER = ("id", "name", "building", "unit", "skills", "active", "capacity")


@console.get("/volunteers")
@staff_required
def volunteers():
    vols = _scoped_volunteers()
    rows = [[v["id"], v["display_name"], v["building"], v.get("unit") or "", " ".join(v["skills"]),
             "1" if v["active"] else "0", v["capacity"]] for v in vols]
    fmt = request.args.get("format")
    if fmt in tables.FORMATS:
        return tables.download(tables.table(VOLUNTEER_HEADER, rows, fmt), f"volunteers.{fmt}", fmt)
    return render_template("console_volunteers.html", vols=vols, can_edit=g.scope.role != "hallway_leader",
                           skill_words=skill_words, done=VOLUNTEER_DONE.get(request.args.get("done", "")))


VOLUNTEER_DONE = {
    "activate": _l("Sent to the volunteers service; the list shows the change in a moment."),
    "deactivate": _l("Sent to the volunteers service; the list shows the change in a moment."),
}


def may_change() -> None:
    """Hallway leaders read the registry; the office and grid leaders change it."""
    if g.scope.role == "hallway_leader":
        abort(403)


def editable_volunteer(volunteer_id: int) -> dict:
    """A volunteer this staff member may change: admin, or their grid's
    (matching answers within the member's scope)."""
    may_change()
    found = read_service("VOLUNTEERS_API_URL", f"/api/v1/volunteers/{volunteer_id}")
    if found is None:
        abort(403)
    return found


# --- the form: text fields to the contract's shape, errors back to fields ---


def _items(text: str) -> list[str]:
    return [x for x in LIST_SPLIT.split((text or "").strip()) if x]


def form_input(form, editing: bool) -> tuple[dict, list[int]]:
    """The registration form as VolunteerIn's input, and for each window
    sent the form row it came from (its errors go back to that row).
    Editing, an empty phone or channels field keeps what is registered."""
    data = {k: form.get(k, "").strip() for k in ("name", "display_name", "phone", "building", "unit", "language")}
    data = {k: v for k, v in data.items() if v or (k == "unit" and editing)}
    if editing and not data.get("unit"):
        data["unit"] = None
    data["skills"] = form.getlist("skills")
    data["verified"] = form.getlist("verified")
    data["teams"] = _items(form.get("teams", ""))
    data["days_off"] = _items(form.get("days_off", ""))
    channels = [c.strip() for c in form.get("channels", "").splitlines() if c.strip()]
    if channels or not editing:
        data["channels"] = channels
    capacity = form.get("capacity", "").strip()
    data["capacity"] = int(capacity) if capacity.isdigit() else capacity or 1
    data["active"] = form.get("active") == "1"
    windows, rows = [], []
    for i in range(int(form.get("window_rows", "0") or 0) if form.get("window_rows", "").isdigit() else 0):
        day, start, end = (form.get(f"window-{i}-{k}", "").strip() for k in ("weekday", "start", "end"))
        if day or start or end:
            windows.append({"weekday": int(day) if day.isdigit() else day, "start": start, "end": end})
            rows.append(i)
    data["windows"] = windows
    return data, rows


def flat(messages) -> list[str]:
    """Marshmallow's messages for one field (a list, or by list index) as one list."""
    if isinstance(messages, dict):
        return [m for inner in messages.values() for m in flat(inner)]
    if isinstance(messages, list):
        return [m for inner in messages for m in flat(inner)] if any(not isinstance(m, str) for m in messages) \
            else list(messages)
    return [str(messages)]


def field_errors(messages: dict, window_rows: list[int]) -> dict:
    """Errors by the form's field names: a window's under window-<row>."""
    errors = {}
    for name, found in messages.items():
        if name == "windows" and isinstance(found, dict):
            for index, inner in found.items():
                row = window_rows[index] if isinstance(index, int) and index < len(window_rows) else 0
                errors.setdefault(f"window-{row}", []).extend(flat(inner))
        else:
            errors[name] = flat(found)
    return errors


def _buildings() -> list[Building]:
    return [b for b in sorted_buildings() if g.scope.allows_place(b, None)]


def form_values(vol: dict) -> dict:
    """A registered volunteer as the form shows them (phone and channels masked)."""
    return {"name": vol["name"], "display_name": vol["display_name"], "building": vol["building"],
            "unit": vol.get("unit") or "", "language": vol.get("language", "zh-CN"), "skills": vol["skills"],
            "verified": vol.get("verified", []), "teams": " ".join(vol.get("teams", [])),
            "days_off": " ".join(vol.get("days_off", [])), "capacity": vol["capacity"], "active": vol["active"],
            "windows": [{k: w[k] for k in ("weekday", "start", "end")} for w in vol.get("windows", [])]}


def _values_from(form) -> dict:
    rows = int(form.get("window_rows", "0")) if form.get("window_rows", "").isdigit() else 0
    return {**{k: form.get(k, "") for k in ("name", "display_name", "phone", "building", "unit", "language",
                                             "teams", "days_off", "capacity", "channels")},
            "skills": form.getlist("skills"), "verified": form.getlist("verified"), "active": form.get("active") == "1",
            "windows": [{k: form.get(f"window-{i}-{k}", "") for k in ("weekday", "start", "end")}
                        for i in range(min(rows, 21))]}


def when(iso: str | None) -> str:
    """An API's UTC time, shown in Asia/Shanghai."""
    return local_time(datetime.fromisoformat(iso)) if iso else ""


def _staff_names() -> dict[str, str]:
    return {f"staff:{s.id}": s.display_name for s in ext.db_session().scalars(select(StaffMember))}


def volunteer_page(vol: dict | None, values: dict, errors: dict, status: int = 200, spend: dict | None = None):
    """The volunteer's page: the registry form and, for a registered
    volunteer, their time coins (and the office's spending form, `spend`:
    its values and errors)."""
    windows = list(values.get("windows", []))
    windows += [{"weekday": "", "start": "", "end": ""}] * EMPTY_WINDOWS
    return render_template(
        "console_volunteer.html", vol=vol, values=values, errors=errors, windows=windows,
        weekdays=WEEKDAY_LABELS, buildings=_buildings(), skills=[c for c in contract.CATEGORIES if not c.staff_only],
        credential_skills=[c for c in contract.CATEGORIES if c.credential], staff_names=_staff_names(),
        skill_words=skill_words, when=when, coins=_coins(vol), can_spend=g.scope.admin,
        spend=spend or {"typed": {}, "errors": {}}, coin_labels=COIN_LABELS), status


COIN_LABELS = {"earned": _l("earned"), "spent": _l("spent"), "donated": _l("donated"), "received": _l("received")}


def _coins(vol: dict | None) -> dict | None:
    """The volunteer's time coins, as matching holds them (None: not registered yet, or not answering)."""
    return read_service("VOLUNTEERS_API_URL", f"/api/v1/volunteers/{vol['id']}/coins") if vol else None


def channel_removals(form, vol: dict) -> tuple[list[dict], bool]:
    """The registered channels ticked for removal (as the page showed them,
    masked), and whether that is all of them. New channels typed in replace
    them all instead."""
    shown = vol.get("channels") or []
    ticked = sorted({int(i) for i in form.getlist("remove_channels") if i.isdigit() and int(i) < len(shown)})
    return [{"index": i, "masked": shown[i]} for i in ticked], bool(shown) and len(ticked) == len(shown)


def _checked(form, editing: bool, vol: dict | None = None):
    """(data, None) when the form passes the contract's schema, the grid
    and the registry's phone check; else (None, the form page with errors)."""
    raw, window_rows = form_input(form, editing)
    schema = contract.VolunteerPatch(partial=contract.VolunteerPatch.ANY) if editing else contract.VolunteerIn()
    errors = {}
    try:
        data = schema.load(raw)
    except ValidationError as exc:
        data, errors = None, field_errors(exc.messages, window_rows)
    building = ext.db_session().get(Building, raw.get("building") or "")
    if building is not None and not g.scope.allows_place(building, None):
        errors.setdefault("building", []).append(OUTSIDE_GRID)
    phone = raw.get("phone")
    own = vol is not None and contract.mask_phone(phone or "") == vol["phone"]  # matching tells for sure
    if not errors and phone and not own and _phone_registered(phone):
        errors["phone"] = [contract.PHONE_TAKEN]
    if errors:
        return None, volunteer_page(vol, _values_from(form), errors, 422)
    return data, None


def _phone_registered(phone: str) -> bool:
    """Asked of matching by the number's keyed digest (never the number in a
    URL); matching refuses a known phone again when the task arrives."""
    digest = contract.phone_digest(phone, current_app.config["PHONE_DIGEST_KEY"])
    found = read_service("VOLUNTEERS_API_URL", f"/api/v1/volunteers/registered?phone_digest={digest}")
    return bool(found and found.get("registered"))


def _send(action: str, **payload) -> str:
    change_id = str(uuid.uuid4())
    operations.staff_action(ext.db_session(), ext.outbox(), None, action, g.actor, change_id=change_id,
                            grid=g.scope.grid if g.scope.role == "grid_leader" else None, **payload)
    ext.db_session().commit()
    log.info("registry change asked", extra={"change_id": change_id, "action": action, "actor": g.actor,
                                             "volunteer_id": payload.get("volunteer_id")})
    return change_id


@console.get("/volunteers/new")
@staff_required
def volunteer_new():
    may_change()
    return volunteer_page(None, {"capacity": 1, "active": True, "language": "zh-CN", "windows": []}, {})


@console.post("/volunteers/new")
@staff_required
def volunteer_register():
    """Register: checked here with the contract's schema, carried out by matching."""
    may_change()
    data, page = _checked(request.form, editing=False)
    if page is not None:
        return page
    change_id = _send("register", volunteer=data)
    return redirect(url_for("console.volunteer_change", change_id=change_id), 303)


@console.get("/volunteers/<id:volunteer_id>")
@staff_required
def volunteer_edit(volunteer_id):
    vol = editable_volunteer(volunteer_id)
    return volunteer_page(vol, form_values(vol), {})


@console.post("/volunteers/<id:volunteer_id>")
@staff_required
def volunteer_update(volunteer_id):
    """Every field of the volunteer, changed by matching (the registry's owner)."""
    vol = editable_volunteer(volunteer_id)
    data, page = _checked(request.form, editing=True, vol=vol)
    if page is not None:
        return page
    removals, every = channel_removals(request.form, vol)
    if every and "channels" not in data:
        data["channels"] = []  # none left: the registry's own field says so
        removals = []
    change_id = _send("update", volunteer_id=volunteer_id, changes=data, remove_channels=removals)
    return redirect(url_for("console.volunteer_change", change_id=change_id), 303)


@console.post("/volunteers/<id:volunteer_id>/active")
@staff_required
def volunteer_active(volunteer_id):
    """Deactivate (no new offers) or activate again, through matching."""
    editable_volunteer(volunteer_id)
    action = "activate" if request.form.get("active") == "1" else "deactivate"
    operations.staff_action(ext.db_session(), ext.outbox(), None, action, g.actor,
                            volunteer_id=volunteer_id)
    ext.db_session().commit()
    log.info("volunteer status asked", extra={"volunteer_id": volunteer_id, "action": action, "actor": g.actor})
    return redirect(url_for("console.volunteers", done=action), 303)


@console.get("/volunteers/changes/<uuid:change_id>")
@staff_required
def volunteer_change(change_id):
    """Sent, waiting for matching, or carried out (with the volunteer as
    matching now holds them) or refused, and why."""
    change = read_service("VOLUNTEERS_API_URL", f"/api/v1/staff-changes/{change_id}")
    vol = None
    if change and change.get("volunteer_id") and change["outcome"] == "done" and change["action"] != "spend":
        vol = read_service("VOLUNTEERS_API_URL", f"/api/v1/volunteers/{change['volunteer_id']}")
    page = make_response(render_template(
        "console_volunteer_change.html", change=change, vol=vol,
        refusal=REFUSALS.get((change or {}).get("reason") or ""), refusals=REFUSALS, staff_names=_staff_names(),
        skill_words=skill_words, weekdays=WEEKDAY_LABELS, when=when))
    if change is None:
        page.headers["Refresh"] = "5"  # look again until matching has carried it out (no script needed)
    return page

