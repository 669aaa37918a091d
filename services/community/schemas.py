"""The community service's API schemas (marshmallow): what its staff API
answers and accepts. Payloads of tasks are in the shared contract."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from services.common import contract


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


class RegisterChangeOut(Schema):
    change_id = fields.String()
    kind = fields.String()
    outcome = fields.String(metadata={"description": "applied or refused"})
    detail = fields.Dict(allow_none=True, metadata={"description": "Why it was refused, per field."})
    at = fields.AwareDateTime()
