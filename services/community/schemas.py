"""The community service's API schemas (marshmallow): what its staff API
answers and accepts. Payloads of tasks are in the shared contract (the
console checks its forms and register files with the same HouseholdIn and
ResidentIn)."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from services.common import contract

from .register import BAND_NAMES

STAIRWELL_ROOM = r"^[0-9]{1,5}[A-Za-z]?$"
DIGEST = r"^[0-9a-f]{32}$"


def _no_whole_number(value: str) -> None:
    # Seven digits in a row are a phone number: never in a URL or a log.
    if sum(ch.isdigit() for ch in value) >= 7:
        raise ValidationError("Search by the last 4 digits of the phone, not the whole number.")


class HouseholdQuery(Schema):
    building = fields.String(validate=validate.Length(1, 16))
    unit = fields.String(validate=validate.Length(1, 8))
    grid = fields.String(validate=validate.Length(1, 16))
    lives_alone = fields.Boolean(metadata={"description": "Households where someone lives alone."})
    age_band = fields.String(validate=validate.OneOf(BAND_NAMES),
                             metadata={"description": "Households with a resident in this band (60+: over 60)."})
    status = fields.String(load_default="open", validate=validate.OneOf(("open", "closed", "all")))
    duplicates = fields.Boolean(metadata={"description": "Only households flagged as duplicates (room or phone)."})
    search = fields.String(validate=[validate.Length(1, 8), _no_whole_number],
                           metadata={"description": "A room, or the last 4 digits of a household's phone."})


class SealedArgs(Schema):
    sealed = fields.Boolean(load_default=False, metadata={
        "description": "Include care needs and disability (sealed; each view is logged as sensitive)."})


class ExportArgs(HouseholdQuery, SealedArgs):
    format = fields.String(load_default="csv", validate=validate.OneOf(("csv", "xlsx")))


class LookupQuery(Schema):
    """By room (building, unit and room, all three) and/or by the phone's
    keyed digest (contract.phone_digest): never the number itself in a URL.
    Without either, nobody is found (a lookup never lists the register)."""

    building = fields.String(validate=validate.Length(1, 16))
    unit = fields.String(validate=validate.Length(1, 8))
    room = fields.String(validate=validate.Regexp(STAIRWELL_ROOM))
    phone_digest = fields.String(validate=validate.Regexp(DIGEST),
                                 metadata={"description": "The phone's keyed digest (contract.phone_digest)."})


class ResidentBrief(Schema):
    """A resident in a list: the age band, never the year of birth."""

    id = fields.Integer()
    name = fields.String()
    sex = fields.String()
    relation = fields.String()
    age_band = fields.String()
    lives_alone = fields.Boolean()


class HouseholdOut(Schema):
    id = fields.Integer()
    grid = fields.String()
    building = fields.String()
    unit = fields.String()
    floor = fields.Integer()
    room = fields.String()
    tenure = fields.String()
    phones = fields.List(fields.String(), metadata={"description": "Masked in lists (138****1234)."})
    residents = fields.List(fields.Nested(ResidentBrief))
    over_60 = fields.Integer()
    lives_alone = fields.Boolean()
    duplicate = fields.List(fields.String(), metadata={"description": "room, phone: shared with another household."})
    closed_at = fields.AwareDateTime(allow_none=True)
    closed_reason = fields.String(allow_none=True)


class ResidentOut(Schema):
    id = fields.Integer()
    household_id = fields.Integer()
    building = fields.String()
    unit = fields.String()
    room = fields.String()
    grid = fields.String()
    name = fields.String()
    sex = fields.String()
    birth_year = fields.Integer()
    age_band = fields.String()
    relation = fields.String()
    phone = fields.String(allow_none=True)
    lives_alone = fields.Boolean()
    party_member = fields.Boolean()
    reach_by = fields.String()
    emergency_name = fields.String(allow_none=True)
    emergency_relation = fields.String(allow_none=True)
    emergency_phone = fields.String(allow_none=True)
    consent_contact = fields.Boolean()
    consent_on = fields.Date(allow_none=True)
    consent_how = fields.String(allow_none=True)
    sealed = fields.Boolean(metadata={"description": "Whether care_need and disability were asked for (and shown)."})
    care_need = fields.String(allow_none=True, metadata={"description": "Sealed: only with sealed=true."})
    disability = fields.String(allow_none=True, metadata={"description": "Sealed: only with sealed=true."})
    closed_at = fields.AwareDateTime(allow_none=True)
    closed_reason = fields.String(allow_none=True)


class HouseholdDetail(HouseholdOut):
    floor_area = fields.Decimal(as_string=True, allow_none=True)
    people = fields.List(fields.Nested(ResidentOut), metadata={"description": "Every resident, closed ones too."})


class LookupOut(Schema):
    resident_id = fields.Integer()
    household_id = fields.Integer()
    name = fields.String()
    phone = fields.String(allow_none=True)
    building = fields.String()
    unit = fields.String()
    room = fields.String()
    age_band = fields.String()
    reach_by = fields.String()


class RegisterChangeOut(Schema):
    """The outcome of a change the console asked for."""

    change_id = fields.String()
    kind = fields.String()
    actor = fields.String(allow_none=True)
    outcome = fields.String()  # applied, refused
    detail = fields.Dict(allow_none=True)
    household_id = fields.Integer(allow_none=True)
    resident_id = fields.Integer(allow_none=True)
    at = fields.AwareDateTime()


class PlaceOut(Schema):
    building = fields.String()
    unit = fields.String()
    room = fields.String()
    grid = fields.String()


class VisitPlanQuery(Schema):
    grid = fields.String(validate=validate.Length(1, 16))
    overdue = fields.Boolean(metadata={"description": "Only plans with a visit past its due day and no outcome."})
    resident_id = contract.Id(strict=False)


class VisitOut(Schema):
    id = fields.Integer()
    plan_id = fields.Integer()
    ref = fields.Function(lambda v: f"visit:{v.id}")
    reason = fields.String()
    due_on = fields.Date()
    outcome = fields.String(allow_none=True)
    note = fields.String(allow_none=True)
    recorded_by = fields.String(allow_none=True)
    recorded_at = fields.AwareDateTime(allow_none=True)
    escalated_at = fields.AwareDateTime(allow_none=True)


class VisitPlanOut(Schema):
    """A plan with whom it is for and where: staff in scope read it to work
    through the visits, on the phone if need be."""

    id = fields.Integer()
    resident_id = fields.Integer()
    resident_name = fields.Function(lambda p: p.resident.name)
    phone = fields.Function(lambda p: p.resident.phone or next((x.phone for x in p.resident.household.phones), None))
    place = fields.Function(lambda p: PlaceOut().dump(p.resident.household))
    rhythm = fields.String()
    visitor = fields.String()
    volunteer_id = fields.Integer(allow_none=True)
    preferred_times = fields.String(allow_none=True)
    checkin_daily = fields.Boolean()
    checked_in_today = fields.Boolean(metadata={"description": "Only for plans with the daily check-in."})
    active = fields.Boolean()
    next_due = fields.Date()
    overdue_since = fields.Date(allow_none=True, metadata={"description": "The oldest visit past its day, unrecorded."})
    last_visit = fields.Nested(VisitOut, allow_none=True)


HouseholdIn, ResidentIn = contract.HouseholdIn, contract.ResidentIn
