"""Time coins (时间银行) on the volunteer's page: the office records what a
volunteer spent them on. Matching keeps the coins: the console checks the
form, asks by task (contract.COINS_SPEND, with a change id) and shows
matching's record of the change — done, or refused when the balance does
not cover it."""
from __future__ import annotations

import logging
import uuid

from flask import g, redirect, request, url_for
from marshmallow import Schema, ValidationError, fields, validate

from services.common import contract
from services.common import extensions as ext
from services.common.i18n import N_

from .blueprint import console, staff_required
from .office import office_only
from .volunteers import editable_volunteer, form_values, volunteer_page

log = logging.getLogger(__name__)

AMOUNT = N_("Coins from 0.5 to 1000, in 0.5 steps.")
WHAT_FOR = N_("Say what the coins paid for (1 to 100 characters).")


class SpendForm(Schema):
    """The spending as the office types it: the contract's rule for the amount, and what it bought."""

    amount = fields.Decimal(required=True, places=1, validate=[validate.Range(0.5, 1000, error=AMOUNT),
                                                               contract.half_hour_steps],
                            error_messages={"required": AMOUNT, "invalid": AMOUNT})
    ref = fields.String(required=True, validate=validate.Length(1, 100, error=WHAT_FOR),
                        error_messages={"required": WHAT_FOR})


@console.post("/volunteers/<id:volunteer_id>/coins")
@staff_required
def coins_spend(volunteer_id):
    """Record coins spent: the community admin, for a volunteer they can open."""
    office_only()
    vol = editable_volunteer(volunteer_id)
    values = {k: request.form.get(k, "").strip() for k in ("amount", "ref")}
    try:
        data = SpendForm().load({k: v for k, v in values.items() if v})
    except ValidationError as exc:
        return volunteer_page(vol, form_values(vol), {}, 422, spend={"typed": values, "errors": exc.messages})
    change_id = str(uuid.uuid4())
    ext.outbox().emit(ext.db_session(), contract.COINS_SPEND, {
        "change_id": change_id, "actor": g.actor, "volunteer_id": volunteer_id, **data})
    ext.db_session().commit()
    log.info("coin spending asked", extra={"change_id": change_id, "volunteer_id": volunteer_id, "actor": g.actor})
    return redirect(url_for("console.volunteer_change", change_id=change_id), 303)
