"""What the volunteer registry accepts and returns."""
from __future__ import annotations

import apprise
from flask import current_app
from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from services.common import contract

from .models import Building

MOBILE = r"^1[3-9]\d{9}$"


def channel_ok(url: str) -> None:
    if apprise.Apprise.instantiate(url) is None:
        raise ValidationError("Not a channel URL Apprise understands (e.g. wecombot://KEY, mailto://…, json://…).")


class VolunteerIn(Schema):
    name = fields.String(required=True, validate=validate.Length(1, 64))
    display_name = fields.String(load_default=None, validate=validate.Length(1, 64))
    phone = fields.String(required=True, validate=validate.Regexp(MOBILE, error="Enter an 11-digit mobile number."))
    building = fields.String(required=True, validate=validate.Length(1, 16))
    unit = fields.String(load_default=None, allow_none=True, validate=validate.Length(1, 8))
    skills = fields.List(fields.String(validate=validate.OneOf(contract.VOLUNTEER_SKILLS)), required=True,
                         validate=validate.Length(1, len(contract.VOLUNTEER_SKILLS)))
    capacity = fields.Integer(load_default=1, strict=True, validate=validate.Range(1, 10))
    channels = fields.List(fields.String(validate=[validate.Length(1, 2000), channel_ok]), load_default=list,
                           validate=validate.Length(0, 5))
    language = fields.String(load_default="zh-CN", validate=validate.OneOf(contract.LANGUAGES))

    @validates("skills")
    def _unique(self, value, **kwargs):
        if len(set(value)) != len(value):
            raise ValidationError("Each skill once.")

    @validates_schema(skip_on_field_errors=False)
    def _building(self, data, **kwargs):
        if "building" not in data:
            return
        building = current_app.extensions["db"].Session.get(Building, data["building"])
        if building is None:
            raise ValidationError({"building": ["Unknown building."]})
        if data.get("unit") and data["unit"] not in building.units:
            raise ValidationError({"unit": ["That building has no such unit."]})


class VolunteerOut(Schema):
    """Staff view: phone and channels masked (channel URLs are secrets)."""

    id = fields.Integer()
    name = fields.String()
    display_name = fields.String()
    phone = fields.Function(lambda v: contract.mask_phone(v.phone))
    building = fields.String()
    unit = fields.String(allow_none=True)
    skills = fields.List(fields.String(), attribute="skill_codes")
    capacity = fields.Integer()
    active_tasks = fields.Integer()
    active = fields.Boolean()
    channels = fields.Function(lambda v: [contract.mask_url(u) for u in v.channels])
    language = fields.String()
    created_at = fields.AwareDateTime()
