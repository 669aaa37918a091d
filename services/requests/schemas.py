"""What intake accepts and returns. The web form and the JSON API validate
with the same schema; error texts are English in the API and translated on
the form (they are marked for extraction with N_)."""
from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta

from marshmallow import Schema, ValidationError, fields, post_load, pre_load, validate, validates_schema
from sqlalchemy import select

from services.common import community, contract
from services.common import extensions as ext
from services.common.clock import SHANGHAI, utcnow
from services.common.i18n import N_

from .models import Building

# An 11-digit mobile number, or a landline with its area code (spaces are dropped first).
PHONE = re.compile(r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8})$")
ROOM = re.compile(r"^[0-9A-Za-z-]{1,8}$")
# Text is stripped before it is checked: it must hold more than spaces. The
# class is Python's str.strip() whitespace in ECMA-262 terms (\s lacks \x1c-\x1f, \x85).
NOT_BLANK = r"[^\s\x1c-\x1f\x85]"
WINDOW = "The end of the time window must be after its start, and not already over."


class LocalDateTime(fields.DateTime):
    """ISO 8601; a time without zone is read as Asia/Shanghai (what the
    resident's clock says); stored as UTC."""

    def _deserialize(self, value, attr, data, **kwargs):
        parsed = super()._deserialize(value, attr, data, **kwargs)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=SHANGHAI)
        return parsed


class ServiceRequestIn(Schema):
    category = fields.String(required=True, validate=validate.OneOf(
        [c.code for c in contract.RESIDENT_CATEGORIES], error=N_("Choose a service category from the list.")),
        error_messages={"required": N_("Choose a service category.")})
    description = fields.String(required=True, validate=validate.Length(
        1, 1000, error=N_("Describe what you need, in at most 1000 characters.")),
        error_messages={"required": N_("Describe what you need, in at most 1000 characters.")},
        metadata={"pattern": NOT_BLANK})
    building = fields.String(required=True, validate=validate.Length(1, 16),
                             error_messages={"required": N_("Choose your building.")},
                             metadata=community.documented_building())
    unit = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 8),
                         metadata=community.documented_unit())
    room = fields.String(required=True, validate=validate.Regexp(ROOM, error=N_("Enter your room number, e.g. 302.")),
                         error_messages={"required": N_("Enter your room number, e.g. 302.")})
    contact_name = fields.String(required=True, validate=validate.Length(
        1, 64, error=N_("Enter your name, in at most 64 characters.")),
        error_messages={"required": N_("Enter your name, in at most 64 characters.")},
        metadata={"pattern": NOT_BLANK})
    contact_phone = fields.String(required=True, validate=validate.Regexp(
        PHONE, error=N_("Enter an 11-digit mobile number or a landline with area code.")),
        error_messages={"required": N_("Enter a phone number we can call.")})
    mode = fields.String(load_default="home", validate=validate.OneOf(contract.MODES))
    window_start = LocalDateTime(load_default=None, allow_none=True, metadata={"description": WINDOW})
    window_end = LocalDateTime(load_default=None, allow_none=True, metadata={"description": WINDOW})
    urgency = fields.String(load_default="normal", validate=validate.OneOf(contract.URGENCIES))
    elderly = fields.Boolean(load_default=False)  # over 80
    disability = fields.Boolean(load_default=False)
    messages = fields.String(load_default="none", validate=validate.OneOf(
        contract.RESIDENT_MESSAGES, error=N_("Choose how we may tell you about your request.")), metadata={
            "description": "The resident's own opt-in to hear back: none (the tracking page only), text (SMS) "
                           "or call (a voice call for what matters, SMS for the rest)."})
    consent = fields.Boolean(required=True, validate=validate.Equal(
        True, error=N_("Please agree to the privacy notice so we can pass your request on.")),
        error_messages={"required": N_("Please agree to the privacy notice so we can pass your request on.")})

    @pre_load
    def _clean(self, data, **kwargs):
        # Form posts send "" for untouched optional fields, and spaces around
        # phone numbers are common when copied.
        if not isinstance(data, Mapping):
            return data  # marshmallow answers "Invalid input type" for the whole body
        data = {k: (v.strip() if isinstance(v, str) else v) for k, v in data.items()}
        data = {k: v for k, v in data.items() if v != "" or k in ("description", "room", "contact_name")}
        if isinstance(data.get("contact_phone"), str):
            data["contact_phone"] = data["contact_phone"].replace(" ", "")
        return data

    @validates_schema(skip_on_field_errors=False)
    def _cross_field(self, data, **kwargs):
        errors: dict[str, list[str]] = {}
        if "building" in data:
            building = ext.db_session().get(Building, data["building"])
            if building is None:
                errors["building"] = [N_("Choose your building from the list.")]
            elif data.get("unit") and data["unit"] not in building.units:
                errors["unit"] = [N_("That building has no such stairwell (unit).")]
        start, end = data.get("window_start"), data.get("window_end")
        if start and end and end <= start:
            errors["window_end"] = [N_("The end of the time window must be after its start.")]
        if end and end < datetime.now(SHANGHAI) - timedelta(minutes=5):
            errors.setdefault("window_end", []).append(N_("The time window is already over."))
        if errors:
            raise ValidationError(errors)


class ServiceRequestCreated(Schema):
    id = fields.String()
    tracking_code = fields.String()
    status = fields.String()
    tracking_url = fields.String()


class StatusChangeOut(Schema):
    status = fields.String()
    event = fields.String(allow_none=True)
    actor = fields.String()
    note = fields.String()
    at = fields.AwareDateTime()


class TrackingOut(Schema):
    """What anyone holding the tracking code may see: what the resident
    entered about the task, never name, phone or room."""

    tracking_code = fields.String()
    status = fields.String()
    category = fields.String()
    building = fields.String(attribute="building_code")
    unit = fields.String(allow_none=True)
    mode = fields.String()
    urgency = fields.String()
    window_start = fields.AwareDateTime(allow_none=True)
    window_end = fields.AwareDateTime(allow_none=True)
    volunteer_name = fields.String(allow_none=True)
    appointment_at = fields.AwareDateTime(allow_none=True)
    place = fields.String(allow_none=True)
    created_at = fields.AwareDateTime()
    history = fields.List(fields.Nested(StatusChangeOut), attribute="public_history")
    feedback_given = fields.Function(lambda r: r.feedback is not None)


class FeedbackIn(Schema):
    rating = fields.Integer(required=True, validate=validate.Range(1, 5, error=N_("Choose 1 to 5 stars.")),
                            error_messages={"required": N_("Choose 1 to 5 stars.")})
    thanks = fields.Boolean(load_default=False)
    comment = fields.String(load_default="", validate=validate.Length(0, 500))
    # The follow-up (回访) asks whether it is solved; "no" reopens the request.
    resolved = fields.Boolean(load_default=True)


class CancelIn(Schema):
    reason = fields.String(load_default="", validate=validate.Length(0, 500))


class ContactOut(Schema):
    """The resident's contact, for the assigned volunteer only (fetched by
    the volunteers service with its service token after acceptance)."""

    contact_name = fields.String()
    contact_phone = fields.String()
    building = fields.String(attribute="building_code")
    unit = fields.String(allow_none=True)
    room = fields.String()


class CategoryName(fields.String):
    """A category's name in one language, from the catalogue."""

    def __init__(self, language: str, **kwargs):
        super().__init__(**kwargs)
        self.language = language

    def get_value(self, obj, attr, accessor=None, default=None):
        return obj.name(self.language)


class CategoryOut(Schema):
    code = fields.String()
    name_zh = CategoryName("zh-CN")
    name_en = CategoryName("en")
    staff_only = fields.Boolean()


class BuildingOut(Schema):
    code = fields.String()
    name = fields.String()
    units = fields.List(fields.String())
    grid = fields.String()


class Open311KeyIn(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 64))  # who it is for


class Open311KeyOut(Schema):
    id = fields.Integer()
    name = fields.String()
    api_key = fields.String()
    created_at = fields.AwareDateTime()


# --- the staff console ---

CONSENT_METHODS = ("phone", "in_person", "written")


class ProxyRequestIn(ServiceRequestIn):
    """A request entered by staff or a hallway leader for a resident who
    phoned or walked in: how the resident agreed is recorded."""

    consent = fields.Boolean(required=True, validate=validate.Equal(
        True, error=N_("Confirm that the resident agreed to pass their request on.")),
        error_messages={"required": N_("Confirm that the resident agreed to pass their request on.")})
    consent_method = fields.String(required=True, validate=validate.OneOf(
        CONSENT_METHODS, error=N_("Choose how the resident agreed.")),
        error_messages={"required": N_("Choose how the resident agreed.")})
    language = fields.String(load_default="zh-CN", validate=validate.OneOf(contract.LANGUAGES))


def _note(required_text: str):
    return fields.String(required=True, validate=validate.Length(2, 200, error=required_text),
                         error_messages={"required": required_text})


class ReasonIn(Schema):
    """Hand back, cancel: a reason the timeline keeps."""

    note = _note(N_("Give a reason (2 to 200 characters)."))


class CloseIn(Schema):
    note = _note(N_("Say how it was resolved (2 to 200 characters)."))


class ExtendIn(Schema):
    working_days = fields.Integer(required=True, validate=validate.Range(
        1, 10, error=N_("An extension is 1 to 10 working days.")),
        error_messages={"required": N_("An extension is 1 to 10 working days.")})
    note = _note(N_("Give the reason the resident will see (2 to 200 characters)."))


class ReassignIn(Schema):
    volunteer_id = fields.Integer(required=True, validate=validate.Range(1, contract.MAX_ID), error_messages={
        "required": N_("Choose a volunteer."), "invalid": N_("Choose a volunteer.")})


class EscalateIn(Schema):
    level = fields.Integer(required=True, validate=validate.OneOf((1, 2, 3), error=N_("Choose who takes it over.")),
                           error_messages={"required": N_("Choose who takes it over."),
                                           "invalid": N_("Choose who takes it over.")})
    note = fields.String(load_default="", validate=validate.Length(0, 200))


class QueueQuery(Schema):
    """The request queue's filters (console page, export and JSON list)."""

    status = fields.String(validate=validate.OneOf(contract.STATUSES))
    category = fields.String(validate=validate.OneOf(contract.CATEGORY_BY_CODE))
    grid = fields.String(validate=validate.Length(1, 16))
    building = fields.String(validate=validate.Length(1, 16))
    overdue = fields.Boolean()
    escalated = fields.Boolean()
    follow_up = fields.Boolean()  # completed, not yet rated: call the resident
    format = fields.String(validate=validate.OneOf(("csv", "xlsx")))

    @pre_load
    def _blank(self, data, **kwargs):
        if not isinstance(data, Mapping):
            return data
        return {k: v for k, v in data.items() if v not in ("", None)}


QUEUE_SORTS = ("received", "code", "service", "where", "grid", "status", "due")  # queries.SORTS
QUEUE_PAGE_SIZE = 50
# Seven digits in a row is most of a phone number: the search box takes the
# last four only, so that no full number reaches an address or a log.
PHONE_LIKE = re.compile(r"[0-9]{7}")


def no_phone_number(value: str) -> None:
    if PHONE_LIKE.search(value):
        raise ValidationError(N_("Search by the last 4 digits of the phone, not the whole number."))


class ConsoleQueueQuery(QueueQuery):
    """The console's queue adds search, sorting, pages and "waiting for me"
    to the shared filters."""

    search = fields.String(validate=[validate.Length(1, 20), no_phone_number])
    waiting = fields.Boolean()
    mine = fields.Boolean()  # handed to me (ServiceRequest.handler)
    sort = fields.String(validate=validate.OneOf(QUEUE_SORTS))
    dir = fields.String(validate=validate.OneOf(("asc", "desc")))
    page = fields.Integer(load_default=1, validate=validate.Range(1, 100000))


class StaffRequestOut(TrackingOut):
    """A request as staff in scope see it in lists: masked contact only."""

    history = fields.List(fields.Nested(StatusChangeOut))
    id = fields.String()
    grid = fields.String(attribute="building.grid")
    masked_phone = fields.String()
    take_by = fields.AwareDateTime(allow_none=True)
    due_at = fields.AwareDateTime(allow_none=True)
    taken_at = fields.AwareDateTime(allow_none=True)
    completed_at = fields.AwareDateTime(allow_none=True)
    overdue = fields.Boolean()
    handbacks = fields.Integer()
    channel = fields.String()
    entered_by = fields.String(allow_none=True)


# --- the office: staff accounts and Open311 keys (console) ---

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
STAFF_ROLES = ("admin", "grid_leader", "hallway_leader")  # staff.ROLES
ROLE = N_("Choose a role.")
GRID = N_("A grid leader needs one of the community's grids.")
STAIRWELLS = N_("A hallway leader needs stairwells as building:unit, e.g. 3:1 3:2, each of the community.")
# staff.MIN_PASSWORD characters
PASSWORD = N_("A password has at least 10 characters; leave it empty for a generated one.")


def _stairwell_list(text: str | None) -> list[str]:
    return [p for p in re.split(r"[\s,，、;；]+", text or "") if p]


class StaffScopeIn(Schema):
    """A staff member's role and scope: a grid leader's grid, a hallway
    leader's stairwells (building:unit, separated by spaces or commas)."""

    role = fields.String(required=True, validate=validate.OneOf(STAFF_ROLES, error=ROLE),
                         error_messages={"required": ROLE})
    grid = fields.String(load_default=None, allow_none=True, validate=validate.Length(0, 16))
    stairwells = fields.String(load_default="", validate=validate.Length(0, 500, error=STAIRWELLS))

    @validates_schema(skip_on_field_errors=False)  # every field's error at once
    def _scope(self, data, **kwargs):
        buildings = {b.code: b for b in ext.db_session().scalars(select(Building))}
        if data.get("role") == "grid_leader" and data.get("grid") not in {b.grid for b in buildings.values()}:
            raise ValidationError({"grid": [GRID]})
        if data.get("role") == "hallway_leader":
            pairs = [p.split(":", 1) for p in _stairwell_list(data.get("stairwells"))]
            if not pairs or any(len(p) != 2 or p[0] not in buildings or p[1] not in buildings[p[0]].units
                                for p in pairs):
                raise ValidationError({"stairwells": [STAIRWELLS]})

    @post_load
    def _lists(self, data, **kwargs):
        hallway = data["role"] == "hallway_leader"
        data["stairwells"] = list(dict.fromkeys(_stairwell_list(data.get("stairwells")))) if hallway else []
        data["grid"] = data.get("grid") if data["role"] == "grid_leader" else None
        return data


class PasswordIn(Schema):
    password = fields.String(load_default="", validate=validate.Length(0, 200))

    @validates_schema(skip_on_field_errors=False)
    def _password(self, data, **kwargs):
        if data.get("password") and len(data["password"]) < 10:
            raise ValidationError({"password": [PASSWORD]})


class StaffAccountIn(StaffScopeIn, PasswordIn):
    username = fields.String(required=True, validate=validate.Regexp(
        USERNAME, error=N_("2 to 64 lower-case letters, digits, dots, dashes or underscores.")),
        error_messages={"required": N_("Give a username.")})
    display_name = fields.String(required=True, validate=validate.Length(
        1, 64, error=N_("Give the name shown in the console (up to 64 characters).")),
        error_messages={"required": N_("Give the name shown in the console (up to 64 characters).")})

    @pre_load
    def _tidy(self, data, **kwargs):
        if not isinstance(data, Mapping):
            return data
        return {**data, **({"username": data["username"].strip().lower()} if isinstance(data.get("username"), str)
                           else {})}


class KeyNameIn(Schema):
    name = fields.String(required=True, validate=validate.Length(
        1, 64, error=N_("Say who the key is for (up to 64 characters).")),
        error_messages={"required": N_("Say who the key is for (up to 64 characters).")})


class PhoneCallIn(Schema):
    """A call for the console's call log (来电登记). Errors are shown at
    their field; the phone number is posted, never put in a URL."""

    caller_phone = fields.String(required=True, validate=validate.Regexp(
        PHONE, error=N_("Enter an 11-digit mobile number or a landline with area code.")),
        error_messages={"required": N_("Enter the number the caller rang from.")})
    caller_name = fields.String(load_default="", validate=validate.Length(
        max=64, error=N_("A name is at most 64 characters.")))
    called_at = LocalDateTime(load_default=None, allow_none=True,
                              error_messages={"invalid": N_("Enter the date and time of the call.")})
    building = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 16))
    unit = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 8))
    topic = fields.String(required=True, validate=validate.OneOf(
        [c.code for c in contract.RESIDENT_CATEGORIES] + ["other"], error=N_("Choose what the call was about.")),
        error_messages={"required": N_("Choose what the call was about.")})
    note = fields.String(load_default="", validate=validate.Length(
        max=200, error=N_("A note is at most 200 characters.")))
    outcome = fields.String(required=True, validate=validate.OneOf(
        ("request", "answered", "referred"), error=N_("Choose what came of the call.")),
        error_messages={"required": N_("Choose what came of the call.")})
    referred_to = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(
        ("12345", "property", "police", "other"), error=N_("Choose where the caller was referred.")))

    @pre_load
    def _clean(self, data, **kwargs):
        if not isinstance(data, Mapping):
            return data
        data = {k: (v.strip() if isinstance(v, str) else v) for k, v in data.items()}
        data = {k: v for k, v in data.items() if v != ""}
        if isinstance(data.get("caller_phone"), str):
            data["caller_phone"] = data["caller_phone"].replace(" ", "")
        return data

    @validates_schema(skip_on_field_errors=False)
    def _cross_field(self, data, **kwargs):
        errors: dict[str, list[str]] = {}
        if data.get("building"):
            building = ext.db_session().get(Building, data["building"])
            if building is None:
                errors["building"] = [N_("Choose a building from the list.")]
            elif data.get("unit") and data["unit"] not in building.units:
                errors["unit"] = [N_("That building has no such stairwell (unit).")]
        elif data.get("unit"):
            errors["building"] = [N_("Choose the building of that stairwell.")]
        if data.get("topic") == "other" and len(data.get("note", "")) < 2:
            errors["note"] = [N_("Say in a few words what the call was about.")]
        if data.get("outcome") == "referred" and not data.get("referred_to"):
            errors["referred_to"] = [N_("Choose where the caller was referred.")]
        if data.get("called_at") and data["called_at"] > utcnow() + timedelta(minutes=5):
            errors["called_at"] = [N_("The call cannot be in the future.")]
        if errors:
            raise ValidationError(errors)
