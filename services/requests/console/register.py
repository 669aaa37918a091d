"""The community register (住户台账) in the console: households and residents
read from the community service's API within the staff member's scope (it
applies the scope and keeps the access log), edited with the contract's
HouseholdIn/ResidentIn and handed over as tasks with a change id, closed
(moved out, deceased) without deleting, imported from the office's Excel
with a row-by-row report, and downloaded."""
from __future__ import annotations

import logging
import uuid
from urllib.parse import urlencode

from flask import abort, current_app, g, make_response, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError

from services.common import contract, tables
from services.common import extensions as ext
from services.common.community import load as load_community
from services.common.register_file import COLUMNS, HEADERS, validate_rows
from services.common.web import read_download, read_page, read_service

from ..models import Building
from ..queries import sorted_buildings
from .blueprint import console, staff_required
from .uploads import FileRefused, read_upload, upload_mode
from .volunteers import flat, when

log = logging.getLogger(__name__)

API = "COMMUNITY_API_URL"
PAGE_SIZE = 50
FILTERS = ("building", "unit", "grid", "lives_alone", "age_band", "status", "duplicates", "search")
AGE_BANDS = ("60+", "60-69", "70-79", "80+", "18-59", "0-17")
UNAVAILABLE = _l("The register cannot be read just now. Try again in a minute.")
WHOLE_NUMBER = _l("Search by the last 4 digits of the phone, not the whole number.")
OUTSIDE = _l("This stairwell is outside your area.")
REFUSALS = {
    "out_of_scope": _l("This household is outside your area."),
    "not_found": _l("There is no such household or resident any more."),
    "closed": _l("This household or resident is closed (moved out or deceased)."),
}
NO_FILE = _l("Choose a .csv or .xlsx register file.")
UNREADABLE = _l("This file cannot be read as a register: save it as .xlsx or as UTF-8 .csv with a header row.")


def _claims() -> dict:
    """The asker's scope, carried with a change: the community service
    applies it to the change as it does to a read."""
    return {"actor": g.actor, "role": g.scope.role, "grid": g.scope.grid, "stairwells": list(g.scope.stairwells)}


def _send(task: str, **payload) -> str:
    change_id = str(uuid.uuid4())
    ext.outbox().emit(ext.db_session(), task, {"change_id": change_id, **_claims(), **payload})
    ext.db_session().commit()
    log.info("register change asked", extra={"change_id": change_id, "actor": g.actor,
                                             "action": payload.get("action", "import")})
    return change_id


def _grids() -> list[str]:
    return [gr["code"] for gr in load_community(current_app.config["COMMUNITY_FILE"]).get("grids", [])]


def _buildings() -> list[Building]:
    return [b for b in sorted_buildings() if any(g.scope.allows_place(b, u) for u in b.units)]


# --- the list ---


def _query() -> tuple[dict, dict]:
    q = {k: request.args.get(k, "").strip() for k in FILTERS if request.args.get(k, "").strip()}
    errors = {}
    if sum(ch.isdigit() for ch in q.get("search", "")) >= 7:
        errors["search"] = [WHOLE_NUMBER]
        q.pop("search")
    if q.get("age_band") not in AGE_BANDS:
        q.pop("age_band", None)
    for flag in ("lives_alone", "duplicates"):
        if flag in q:
            q[flag] = "true"
    return q, errors


@console.get("/register")
@staff_required
def register_list():
    q, errors = _query()
    fmt = request.args.get("format")
    if fmt in tables.FORMATS:
        found = read_download(API, f"/api/v1/households/export?{urlencode({**q, 'format': fmt})}")
        if found is None:
            abort(503)
        return tables.download(found.content, f"register.{fmt}", fmt)
    page = request.args.get("page", "1")
    page = int(page) if page.isdigit() and 0 < int(page) < 10**5 else 1
    found = read_page(API, f"/api/v1/households?{urlencode({**q, 'page': page, 'page_size': PAGE_SIZE})}")
    households, pagination = found if found is not None else ([], {})
    total = pagination.get("total", 0)

    def link(**changes):
        return url_for("console.register_list", **{**q, **changes})

    return render_template(
        "console_register.html", households=households, q=q, errors=errors, total=total, page=page,
        pages=pagination.get("total_pages", 0), first=(page - 1) * PAGE_SIZE + 1,
        last=(page - 1) * PAGE_SIZE + len(households), link=link, grids=_grids(), age_bands=AGE_BANDS,
        unavailable=UNAVAILABLE if found is None else None, export_args=urlencode(q),
        can_import=g.scope.role != "hallway_leader"), 200 if found is not None else 503


# --- forms: text fields to the contract's shape, errors back to fields ---

HOUSEHOLD_FIELDS = ("building", "unit", "floor", "room", "floor_area", "tenure", "phones")
RESIDENT_TEXT = ("name", "sex", "birth_year", "relation", "phone", "care_need", "disability", "reach_by",
                 "emergency_name", "emergency_relation", "emergency_phone", "consent_on", "consent_how")
RESIDENT_FLAGS = ("lives_alone", "party_member", "consent_contact")


def _number(text: str):
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else text


def household_input(form) -> dict:
    data = {k: form.get(k, "").strip() for k in HOUSEHOLD_FIELDS}
    data["floor"] = _number(data["floor"]) if data["floor"] else None
    data["floor_area"] = data["floor_area"] or None
    data["phones"] = [p for p in data["phones"].replace("，", " ").replace(",", " ").split() if p]
    return {k: v for k, v in data.items() if v is not None and v != ""} | {"phones": data["phones"]}


def resident_input(form) -> dict:
    data = {k: form.get(k, "").strip() for k in RESIDENT_TEXT}
    data = {k: (v or None) for k, v in data.items()}
    if data["birth_year"] is not None:
        data["birth_year"] = _number(data["birth_year"])
    for k in ("name", "sex", "birth_year"):
        if data[k] is None:
            data.pop(k)
    for k in ("relation", "care_need", "reach_by"):
        if data[k] is None:
            data.pop(k)
    return data | {k: form.get(k) == "1" for k in RESIDENT_FLAGS}


def _errors(messages: dict) -> dict:
    return {name: flat(found) for name, found in messages.items()}


def _checked(schema, raw: dict) -> tuple[dict | None, dict]:
    try:
        return schema.load(raw), {}
    except ValidationError as exc:
        return None, _errors(exc.messages)


def _in_area(data: dict, errors: dict) -> None:
    building = ext.db_session().get(Building, data.get("building") or "")
    if building is not None and not g.scope.allows_place(building, data.get("unit")):
        errors.setdefault("unit", []).append(OUTSIDE)


def _household(household_id: int, sealed: bool = False) -> dict:
    """A household in the member's scope (the community service answers
    within it, and logs the view); 403 otherwise."""
    found = read_service(API, f"/api/v1/households/{household_id}" + ("?sealed=true" if sealed else ""))
    if found is None:
        abort(403)
    return found


def _household_page(household: dict, values=None, errors=None, resident_values=None, resident_errors=None,
                    status=200, sealed=False):
    return render_template(
        "console_household.html", h=household, values=values or _household_values(household), errors=errors or {},
        resident_values=resident_values or {"relation": "other", "sex": "female", "reach_by": "text",
                                            "care_need": "none"},
        resident_errors=resident_errors or {}, buildings=_buildings(), sealed=sealed, when=when,
        vocab=contract), status


def _household_values(h: dict) -> dict:
    return {k: h.get(k) or "" for k in ("building", "unit", "floor", "room", "floor_area", "tenure")} | {
        "phones": " ".join(h.get("phones") or [])}


@console.get("/register/households/new")
@staff_required
def household_new():
    return render_template("console_household.html", h=None, values={"tenure": "owner"}, errors={},
                           buildings=_buildings(), vocab=contract, sealed=False, when=when)


@console.post("/register/households/new")
@staff_required
def household_add():
    raw = household_input(request.form)
    data, errors = _checked(contract.HouseholdIn(), raw)
    _in_area(raw, errors)
    if errors:
        return render_template("console_household.html", h=None, values=request.form, errors=errors,
                               buildings=_buildings(), vocab=contract, sealed=False, when=when), 422
    change_id = _send(contract.REGISTER_CHANGE, action="add_household", household=data)
    return redirect(url_for("console.register_change", change_id=change_id), 303)


@console.get("/register/households/<id:household_id>")
@staff_required
def household_page(household_id):
    sealed = request.args.get("sealed") == "1"
    return _household_page(_household(household_id, sealed), sealed=sealed)


@console.post("/register/households/<id:household_id>")
@staff_required
def household_update(household_id):
    household = _household(household_id)
    raw = household_input(request.form)
    data, errors = _checked(contract.HouseholdIn(), raw)
    _in_area(raw, errors)
    if errors:
        return _household_page(household, values=request.form, errors=errors, status=422)
    change_id = _send(contract.REGISTER_CHANGE, action="edit_household", household_id=household_id, household=data)
    return redirect(url_for("console.register_change", change_id=change_id), 303)


@console.post("/register/households/<id:household_id>/close")
@staff_required
def household_close(household_id):
    _household(household_id)
    change_id = _send(contract.REGISTER_CHANGE, action="close_household", household_id=household_id,
                      reason="moved_out")
    return redirect(url_for("console.register_change", change_id=change_id), 303)


@console.post("/register/households/<id:household_id>/residents")
@staff_required
def resident_add(household_id):
    household = _household(household_id)
    data, errors = _checked(contract.ResidentIn(), resident_input(request.form))
    if errors:
        return _household_page(household, resident_values=request.form, resident_errors=errors, status=422)
    change_id = _send(contract.REGISTER_CHANGE, action="add_resident", household_id=household_id, resident=data)
    return redirect(url_for("console.register_change", change_id=change_id), 303)


def _resident(resident_id: int) -> dict:
    # Editing shows the sealed fields: the community service logs it as sensitive.
    found = read_service(API, f"/api/v1/residents/{resident_id}?sealed=true")
    if found is None:
        abort(403)
    return found


def _resident_page(resident: dict, values: dict, errors: dict, status: int = 200):
    return render_template("console_resident.html", r=resident, values=values, errors=errors, vocab=contract,
                           when=when), status


def _resident_values(r: dict) -> dict:
    values = {k: "" if r.get(k) is None else r.get(k) for k in RESIDENT_TEXT}
    return values | {k: r.get(k) for k in RESIDENT_FLAGS}


@console.get("/register/residents/<id:resident_id>")
@staff_required
def resident_page(resident_id):
    resident = _resident(resident_id)
    return _resident_page(resident, _resident_values(resident), {})


@console.post("/register/residents/<id:resident_id>")
@staff_required
def resident_update(resident_id):
    resident = _resident(resident_id)
    data, errors = _checked(contract.ResidentIn(), resident_input(request.form))
    if errors:
        return _resident_page(resident, dict(request.form) | {k: request.form.get(k) == "1" for k in RESIDENT_FLAGS},
                              errors, 422)
    change_id = _send(contract.REGISTER_CHANGE, action="edit_resident", resident_id=resident_id, resident=data)
    return redirect(url_for("console.register_change", change_id=change_id), 303)


@console.post("/register/residents/<id:resident_id>/close")
@staff_required
def resident_close(resident_id):
    _resident(resident_id)
    reason = request.form.get("reason")
    if reason not in contract.CLOSE_REASONS:
        abort(400)
    change_id = _send(contract.REGISTER_CHANGE, action="close_resident", resident_id=resident_id, reason=reason)
    return redirect(url_for("console.register_change", change_id=change_id), 303)


@console.get("/register/changes/<uuid:change_id>")
@staff_required
def register_change(change_id):
    """Sent, waiting for the community service, or carried out (with a
    link to the household) or refused, and why."""
    change = read_service(API, f"/api/v1/register-changes/{change_id}")
    detail = (change or {}).get("detail") or {}
    page = make_response(render_template("console_register_change.html", change=change, detail=detail,
                                         refusal=REFUSALS.get(detail.get("reason", "")), when=when))
    if change is None:
        page.headers["Refresh"] = "5"  # look again until the change is carried out (no script needed)
    return page


# --- the office's file ---


def _may_import() -> None:
    """The office and grid leaders (for their grid) import; hallway leaders edit by hand."""
    if g.scope.role == "hallway_leader":
        abort(403)


def _import_page(status: int = 200, **context):
    return render_template("console_register_import.html", headers=HEADERS, column_names=dict(COLUMNS),
                           mode=context.pop("mode", "all"), **context), status


@console.get("/register/import")
@staff_required
def register_upload():
    _may_import()
    return _import_page()


@console.post("/register/import")
@staff_required
def register_import():
    """Check every row at once (the report is on the page), flag duplicates,
    and send the good rows when the file is clean or "valid rows only"."""
    _may_import()
    mode = upload_mode()
    try:
        # A register is one row a resident: bounded by the import task, not the roster's rows.
        rows = read_upload(NO_FILE, UNREADABLE, max_rows=contract.REGISTER_TASK_ROWS)
    except FileRefused as exc:
        return _import_page(exc.status, mode=mode, file_error=exc.message)
    good, bad, duplicates = validate_rows(rows)
    buildings = {b.code: b for b in ext.db_session().query(Building)}
    outside = [n for n, d in good
               if not g.scope.allows_place(buildings.get(d["household"]["building"]), d["household"]["unit"])]
    if outside:
        good = [(n, d) for n, d in good if n not in set(outside)]
        bad = sorted(bad + [{"row": n, "errors": {"unit": [OUTSIDE]}} for n in outside], key=lambda e: e["row"])
    report = [{"row": e["row"], "errors": list(_errors(e["errors"]).items())} for e in bad]
    send = bool(good) and (mode == "valid" or not bad)
    change_id = None
    if send:
        change_id = _send(contract.REGISTER_IMPORT, row_numbers=[n for n, _ in good], rows=[d for _, d in good])
    return _import_page(200 if send else 422, mode=mode, report=report, duplicates=duplicates, rows=len(rows),
                        good=len(good), sent=send,
                        change_url=url_for("console.register_change", change_id=change_id) if change_id else None)
