"""What the volunteer registry, stations, hours and time bank accept and
return, and the volunteer portal's forms. The CSV/XLSX roster import
validates each row with VolunteerIn, the same schema as the API."""
from __future__ import annotations

import re
from decimal import Decimal

import apprise
from flask_smorest.fields import Upload
from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from services.common import community, contract
from services.common import extensions as ext

from .models import Building

MOBILE = re.compile(r"^1[3-9]\d{9}$")
WEEKDAYS = {
    **{name: i for i, name in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))},
    **{name: i for i, name in enumerate(("周一", "周二", "周三", "周四", "周五", "周六", "周日"))},
    "周天": 6,
}
# building:unit, neither holding ':' or whitespace (Python's \s, spelled out:
# ECMA-262's \s in the OpenAPI document lacks \x1c-\x1f and \x85).
_PART = r"[^:\s\x1c-\x1f\x85]"
STAIRWELL = re.compile(rf"^{_PART}{{1,16}}:{_PART}{{1,8}}$")
MONTH = re.compile(r"^20\d{2}-(0[1-9]|1[0-2])$")  # e.g. 2026-11
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
ORDERED = "The end must be after the start."
VERIFIED = "Only skills the volunteer has can be verified."
APPRISE = "Not a channel URL Apprise understands (e.g. wecombot://KEY, mailto://…, json://…)."
ROSTER = "Attach a .csv or .xlsx roster."
ROSTER_ROWS = ("A .csv or .xlsx roster with a header row, one volunteer a row (the fields of a volunteer); "
               "a file with bad rows imports nothing unless partial=true.")
WINDOW_TEXT = re.compile(r"^\s*(\S+)\s+(\d{1,2}:\d{2})\s*[-–~至]\s*(\d{1,2}:\d{2})\s*$")


def channel_ok(url: str) -> None:
    """What Apprise understands, beyond the scheme (contract.channel_url)."""
    if contract.CHANNEL_URL.match(url) and apprise.Apprise.instantiate(url) is None:
        raise ValidationError(APPRISE)


class WindowSchema(Schema):
    weekday = fields.Integer(required=True, strict=True, validate=validate.Range(0, 6))  # 0 = Monday
    start = contract.ClockTime(required=True)
    end = contract.ClockTime(required=True, metadata={"description": ORDERED})

    @validates_schema
    def _order(self, data, **kwargs):
        if data["end"] <= data["start"]:
            raise ValidationError({"end": [ORDERED]})


def parse_windows(text: str) -> list[dict]:
    """'Sat 09:00-11:00; 周日 14:00-16:00' (roster files) → window dicts."""
    windows = []
    for part in re.split(r"[;；\n]", text or ""):
        if not part.strip():
            continue
        match = WINDOW_TEXT.match(part)
        token = match.group(1) if match else ""
        day = WEEKDAYS.get(token.lower()[:3] if token.isascii() else token)
        if day is None:
            raise ValidationError(f"Not a weekly window: {part.strip()!r} (e.g. 'Sat 09:00-11:00').")
        windows.append({"weekday": day, "start": match.group(2).zfill(5), "end": match.group(3).zfill(5)})
    return windows


def format_windows(windows) -> str:
    return "; ".join(f"{WEEKDAY_NAMES[w.weekday]} {w.start_time:%H:%M}-{w.end_time:%H:%M}" for w in windows)


class VolunteerIn(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 64))
    display_name = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 64))
    phone = fields.String(required=True, validate=validate.Regexp(MOBILE, error="Enter an 11-digit mobile number."))
    building = fields.String(required=True, validate=validate.Length(1, 16),
                             metadata=community.documented_building())
    unit = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 8),
                         metadata=community.documented_unit())
    skills = fields.List(fields.String(validate=validate.OneOf(contract.VOLUNTEER_SKILLS)), required=True,
                         validate=validate.Length(1, len(contract.VOLUNTEER_SKILLS)),
                         metadata={"uniqueItems": True})  # checked by _unique
    # Skills whose credential staff have checked (required for health checks, prenatal guidance).
    verified = fields.List(fields.String(validate=validate.OneOf(contract.VOLUNTEER_SKILLS)), load_default=list,
                           metadata={"description": VERIFIED})
    teams = fields.List(fields.String(validate=validate.Length(1, 32)), load_default=list,
                        validate=validate.Length(0, 10))
    capacity = fields.Integer(load_default=1, strict=True, validate=validate.Range(1, 10))
    channels = fields.List(fields.String(validate=[validate.Length(1, 2000), contract.channel_url, channel_ok],
                                         metadata={"description": "A channel URL Apprise understands "
                                                                  "(the scheme is not enough)."}),
                           load_default=list, validate=validate.Length(0, 5))
    language = fields.String(load_default="zh-CN", validate=validate.OneOf(contract.LANGUAGES))
    windows = fields.List(fields.Nested(WindowSchema), load_default=list, validate=validate.Length(0, 21))
    days_off = fields.List(fields.Date(), load_default=list, validate=validate.Length(0, 366))
    active = fields.Boolean(load_default=True)

    @validates("skills")
    def _unique(self, value, **kwargs):
        if len(set(value)) != len(value):
            raise ValidationError("Each skill once.")

    @validates_schema(skip_on_field_errors=False)
    def _cross(self, data, partial=False, **kwargs):
        errors = {}
        if "building" in data:
            building = ext.db_session().get(Building, data["building"])
            if building is None:
                errors["building"] = ["Unknown building."]
            elif data.get("unit") and data["unit"] not in building.units:
                errors["unit"] = ["That building has no such unit."]
        if "verified" in data and "skills" in data and set(data["verified"]) - set(data["skills"]):
            errors["verified"] = [VERIFIED]
        if errors:
            raise ValidationError(errors)


class VolunteerPatch(VolunteerIn):
    """The same fields, any subset (use with partial=VolunteerPatch.ANY): a
    window given is whole (partial=True would let one lack its end)."""

    ANY = tuple(VolunteerIn._declared_fields)


class VolunteerQuery(Schema):
    skill = fields.String(validate=validate.OneOf(contract.VOLUNTEER_SKILLS))
    building = fields.String(validate=validate.Length(1, 16))
    unit = fields.String(validate=validate.Length(1, 8))
    # building:unit, repeatable (?stairwell=3:1&stairwell=3:2): a hallway leader's area.
    stairwell = fields.List(fields.String(validate=validate.Regexp(STAIRWELL, error="building:unit, e.g. 3:1")),
                            validate=validate.Length(1, 50))
    grid = fields.String(validate=validate.Length(1, 16))
    team = fields.String(validate=validate.Length(1, 32))
    active = fields.Boolean()


class WindowOut(Schema):
    weekday = fields.Integer()
    start = fields.Time(attribute="start_time", format="%H:%M")
    end = fields.Time(attribute="end_time", format="%H:%M")


class VolunteerOut(Schema):
    """Staff view: phone and channels masked (channel URLs are secrets)."""

    id = fields.Integer()
    name = fields.String()
    display_name = fields.String()
    phone = fields.Function(lambda v: contract.mask_phone(v.phone))
    building = fields.String()
    unit = fields.String(allow_none=True)
    grid = fields.Function(lambda v: v.home.grid)
    skills = fields.List(fields.String(), attribute="skill_codes")
    verified = fields.List(fields.String(), attribute="verified_codes")
    teams = fields.List(fields.String())
    capacity = fields.Integer()
    active_tasks = fields.Integer()
    active = fields.Boolean()
    channels = fields.Function(lambda v: [contract.mask_url(u) for u in v.channels])
    language = fields.String()
    windows = fields.List(fields.Nested(WindowOut))
    days_off = fields.Function(lambda v: sorted(d.day.isoformat() for d in v.days_off))
    rating = fields.Float(allow_none=True)
    created_at = fields.AwareDateTime()


class ImportArgs(Schema):
    partial = fields.Boolean(load_default=False)  # import the good rows of a file with bad ones


class RosterFile(Schema):
    file = Upload(required=True, error_messages={"required": ROSTER}, metadata={"description": ROSTER_ROWS})


class ExportArgs(Schema):
    format = fields.String(load_default="csv", validate=validate.OneOf(("csv", "xlsx")))


# The console validates with the same schemas: they live in the contract.
StationIn, StationSessionIn = contract.StationIn, contract.StationSessionIn


class StationSessionOut(Schema):
    id = fields.Integer()
    category = fields.String()
    weekday = fields.Integer()
    start = fields.Time(attribute="start_time", format="%H:%M")
    end = fields.Time(attribute="end_time", format="%H:%M")
    volunteer_id = fields.Integer()
    slots = fields.Integer()
    active = fields.Boolean()


class StationOut(Schema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    place = fields.String()
    lead_volunteer_id = fields.Integer(allow_none=True)


class AssignIn(Schema):
    volunteer_id = contract.Id(required=True)
    actor = fields.String(load_default="staff", validate=validate.Length(1, 64))


class HoursQuery(Schema):
    status = fields.String(validate=validate.OneOf(("pending", "confirmed", "correction")))
    month = fields.String(validate=validate.Regexp(MONTH))
    volunteer_id = contract.Id(strict=False)  # a query string carries text


class HoursOut(Schema):
    id = fields.Integer()
    volunteer_id = fields.Integer()
    volunteer_name = fields.Function(lambda e: e.volunteer.name)
    request_id = fields.Function(lambda e: e.assignment.request_id)
    category = fields.Function(lambda e: e.assignment.request.category)
    hours = fields.Decimal(as_string=True)
    status = fields.String()
    confirmed_by = fields.String(allow_none=True)
    correction_hours = fields.Decimal(as_string=True, allow_none=True)
    correction_reason = fields.String()
    completed_at = fields.AwareDateTime()
    confirmed_at = fields.AwareDateTime(allow_none=True)
    # The office's correction: the hours before it and why (who: confirmed_by).
    corrected_from = fields.Decimal(as_string=True, allow_none=True)
    corrected_reason = fields.String()


def decimal_between(low: str, high: str):
    """A range check for Decimal fields (apispec would print a Range's
    bounds as Decimals, which JSON cannot hold)."""
    def check(value):
        if value is not None and not Decimal(low) <= value <= Decimal(high):
            raise ValidationError(f"Must be between {low} and {high}.")
    return check


def amount_field(low: str, high: str, *validators, metadata=None, **kwargs) -> fields.Decimal:
    """A number with one decimal, from low to high: checked by decimal_between,
    stated in the document as its minimum and maximum."""
    return fields.Decimal(places=1, validate=[decimal_between(low, high), *validators],
                          metadata={"minimum": float(low), "maximum": float(high), **(metadata or {})}, **kwargs)


def hours_field(**kwargs) -> fields.Decimal:
    """Service hours as the time bank counts them: half an hour to a day, in
    0.5 h steps (as completion rounds them). One rule for staff confirming
    hours and for volunteers asking for a correction."""
    return amount_field("0.5", "24", contract.half_hour_steps, metadata={"multipleOf": 0.5}, **kwargs)


class ConfirmIn(Schema):
    by = fields.String(load_default="staff", validate=validate.Length(1, 64))
    hours = hours_field(load_default=None, allow_none=True)


class RankingArgs(Schema):
    month = fields.String(required=True, validate=validate.Regexp(MONTH))
    format = fields.String(load_default="json", validate=validate.OneOf(("json", "csv", "xlsx")))


class SpendIn(Schema):
    volunteer_id = contract.Id(required=True)
    amount = amount_field("0.5", "1000", required=True)
    ref = fields.String(required=True, validate=validate.Length(1, 100))  # what service it bought


class OfferOut(Schema):
    id = fields.Integer()
    volunteer_id = fields.Integer()
    volunteer_name = fields.Function(lambda o: o.volunteer.display_name)
    status = fields.String()
    reason = fields.String()
    decline_reason = fields.String()
    created_at = fields.AwareDateTime()
    expires_at = fields.AwareDateTime(allow_none=True)


class AssignmentOut(Schema):
    id = fields.Integer()
    volunteer_id = fields.Integer()
    volunteer_name = fields.Function(lambda a: a.volunteer.display_name)
    status = fields.String()
    actor = fields.String()
    created_at = fields.AwareDateTime()
    complete_by = fields.AwareDateTime(allow_none=True)
    completed_at = fields.AwareDateTime(allow_none=True)


class EscalationOut(Schema):
    id = fields.Integer()
    level = fields.Integer()
    leader_id = fields.Integer(allow_none=True)
    reason = fields.String()
    created_at = fields.AwareDateTime()


class RequestDispatchOut(Schema):
    """What matching did with a request: the staff console's timeline."""

    request_id = fields.String(attribute="id")
    status = fields.String()
    escalation_level = fields.Integer()
    offers = fields.List(fields.Nested(OfferOut))
    assignments = fields.List(fields.Nested(AssignmentOut))
    escalations = fields.List(fields.Nested(EscalationOut))


# --- the volunteer portal's forms ---


class CompleteIn(Schema):
    minutes = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(1, 24 * 60))
    note = fields.String(load_default="", validate=validate.Length(0, 500))


class CorrectionIn(Schema):
    hours = hours_field(required=True)
    reason = fields.String(required=True, validate=validate.Length(1, 300))


class DonateIn(Schema):
    to = contract.Id(required=True)
    amount = fields.Decimal(required=True, places=1, validate=validate.Range(0.5, 1000))
