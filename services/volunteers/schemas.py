"""What the volunteer registry, stations, hours and time bank accept and
return, and the volunteer portal's forms. The CSV/XLSX roster import
validates each row with VolunteerIn, the same schema as the API."""
from __future__ import annotations

import re
from decimal import Decimal

from flask_smorest.fields import Upload
from marshmallow import Schema, ValidationError, fields, validate

from services.common import contract
from services.common.i18n import N_

# The registry's input schemas are the contract's: the console checks with them too.
MOBILE, ORDERED, VERIFIED = contract.MOBILE, contract.ORDERED, contract.VERIFIED
WindowSchema, VolunteerIn, VolunteerPatch = contract.WindowSchema, contract.VolunteerIn, contract.VolunteerPatch
# building:unit, neither holding ':' or whitespace (Python's \s, spelled out:
# ECMA-262's \s in the OpenAPI document lacks \x1c-\x1f and \x85).
_PART = r"[^:\s\x1c-\x1f\x85]"
STAIRWELL = re.compile(rf"^{_PART}{{1,16}}:{_PART}{{1,8}}$")
MONTH = re.compile(r"^20\d{2}-(0[1-9]|1[0-2])$")  # e.g. 2026-11
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
ROSTER = "Attach a .csv or .xlsx roster."
ROSTER_ROWS = ("A .csv or .xlsx roster with a header row, one volunteer a row (the fields of a volunteer); "
               "a file with bad rows imports nothing unless partial=true.")


def format_windows(windows) -> str:
    return "; ".join(f"{WEEKDAY_NAMES[w.weekday]} {w.start_time:%H:%M}-{w.end_time:%H:%M}" for w in windows)


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


class CredentialOut(Schema):
    """A verified skill: who verified it (staff:<id>, admin-token) and when
    (unknown for credentials verified before this was recorded)."""

    skill = fields.String(attribute="category")
    verified_by = fields.String(allow_none=True)
    verified_at = fields.AwareDateTime(allow_none=True)


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
    credentials = fields.List(fields.Nested(CredentialOut))
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


class PhoneDigestQuery(Schema):
    phone_digest = fields.String(required=True, validate=validate.Regexp(r"^[0-9a-f]{32}$"),
                                 metadata={"description": "The phone's keyed digest (contract.phone_digest)."})


class RegisteredOut(Schema):
    registered = fields.Boolean()


class StaffChangeOut(Schema):
    """The outcome of a change the console asked for."""

    id = fields.String()
    action = fields.String()
    actor = fields.String()
    volunteer_id = fields.Integer(allow_none=True)
    outcome = fields.String()  # done, refused
    reason = fields.String(allow_none=True)  # phone_taken, out_of_scope, no_such_volunteer
    report = fields.Dict()  # an import's registered, updated and refused rows
    done_at = fields.AwareDateTime()


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


class CoinEntryOut(Schema):
    # A decimal as a string, e.g. "1.5": + earned or received, − spent or donated.
    amount = fields.String(metadata={"example": "-1.5"})
    kind = fields.String()  # earned, spent, donated, received
    ref = fields.String()
    created_at = fields.AwareDateTime()


class CoinsOut(Schema):
    """A volunteer's time coins (时间银行): the balance and the latest entries, newest first."""

    balance = fields.String(metadata={"example": "3.5"})  # a decimal as a string
    entries = fields.List(fields.Nested(CoinEntryOut))


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
    # A visit's outcome (探访): required for a programme's visit, see portal.task_complete.
    outcome = fields.String(load_default=None, validate=validate.OneOf(
        contract.VISIT_OUTCOMES, error=N_("Say what you found.")))


class CorrectionIn(Schema):
    hours = hours_field(required=True)
    reason = fields.String(required=True, validate=validate.Length(1, 300))


class DonateIn(Schema):
    to = contract.Id(required=True)
    amount = fields.Decimal(required=True, places=1, validate=validate.Range(0.5, 1000))
