"""Volunteers' service hours waiting for confirmation (in the staff
member's scope: matching's API answers for the claims the console sends),
confirmed or corrected by the office (hours in 0.5 h steps, with a reason)
through matching's time bank, by task (contract.HOURS_REVIEW); and the
month's record of confirmed hours as matching exports it."""
from __future__ import annotations

import logging
import re
from datetime import datetime

from flask import Response, abort, g, redirect, render_template, request, session, stream_with_context, url_for
from flask_babel import lazy_gettext as _l
from marshmallow import Schema, ValidationError, fields, validate

from services.common import contract
from services.common import extensions as ext
from services.common.clock import SHANGHAI, utcnow
from services.common.i18n import N_
from services.common.web import local_time, read_all_pages, read_download

from .accounts import staff_names
from .blueprint import console, staff_required
from .office import office_only, office_readers

log = logging.getLogger(__name__)

PENDING = "office_hours_pending"  # entries sent for review, until matching shows them confirmed
HOURS = N_("Hours from 0.5 to 24, in 0.5 steps.")
STATUS_LABELS = {"pending": _l("Waiting"), "correction": _l("Volunteer asks for a correction")}


class CorrectionForm(Schema):
    """The correction as the office types it: the contract's rule for hours, and a reason."""

    hours = fields.Decimal(required=True, places=1, validate=[validate.Range(0.5, 24, error=HOURS),
                                                              contract.half_hour_steps],
                           error_messages={"required": HOURS, "invalid": HOURS})
    reason = fields.String(required=True, validate=validate.Length(2, 300, error=N_(
        "Give the reason (2 to 300 characters).")), error_messages={"required": N_(
            "Give the reason (2 to 300 characters).")})


def _confirmed_this_month() -> list[dict]:
    month = _this_month()
    found = read_all_pages("VOLUNTEERS_API_URL", f"/api/v1/hours?status=confirmed&month={month}") or []
    found.sort(key=lambda e: (e.get("confirmed_at") or "", e["id"]), reverse=True)
    for e in found:
        e["confirmed_local"] = local_time(datetime.fromisoformat(e["confirmed_at"])) if e.get("confirmed_at") else ""
    return found[:50]


def _waiting() -> list[dict] | None:
    pending = read_all_pages("VOLUNTEERS_API_URL", "/api/v1/hours?status=pending")
    asked = read_all_pages("VOLUNTEERS_API_URL", "/api/v1/hours?status=correction")
    if pending is None or asked is None:
        return None
    entries = sorted(pending + asked, key=lambda e: (e["completed_at"], e["id"]))
    for e in entries:
        e["completed_local"] = local_time(datetime.fromisoformat(e["completed_at"]))
    return entries


MONTH = re.compile(r"^20[0-9]{2}-(0[1-9]|1[0-2])$")
EXPORT_FAILED = _l("The volunteers service cannot give the hours record just now; try again in a moment.")


def _this_month() -> str:
    return utcnow().astimezone(SHANGHAI).strftime("%Y-%m")


def _months(n: int = 12) -> list[str]:
    """This month and the ones before it, newest first (the export's choices)."""
    year, month = map(int, _this_month().split("-"))
    out = []
    for _ in range(n):
        out.append(f"{year}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return out


@console.get("/office/hours/export")
@staff_required
def hours_export():
    """A month's confirmed hours as matching exports them (CSV or Excel),
    passed on as it arrives: matching applies the member's scope to the
    claims the console sends; no token or phone is in any address."""
    office_readers()
    month, fmt = request.args.get("month", _this_month()), request.args.get("format", "xlsx")
    if not MONTH.match(month) or fmt not in ("csv", "xlsx"):
        abort(400)
    found = read_download("VOLUNTEERS_API_URL", f"/api/v1/hours/export?month={month}&format={fmt}")
    if found is None:
        return hours(export_failed=True, status=502)
    log.info("hours record exported", extra={"month": month, "format": fmt, "actor": g.actor})
    return Response(stream_with_context(found.iter_content(64 * 1024)),
                    content_type=found.headers.get("Content-Type", "application/octet-stream"),
                    headers={"Content-Disposition": f"attachment; filename=hours-record-{month}.{fmt}",
                             "Cache-Control": "no-store"})


@console.get("/office/hours")
@staff_required
def hours(errors: dict | None = None, entry_id: int | None = None, status: int = 200, export_failed: bool = False):
    office_readers()
    entries = _waiting()
    sent = session.get(PENDING, [])
    if entries is not None and sent:
        waiting_ids = {e["id"] for e in entries}
        sent = [i for i in sent if i in waiting_ids]
        session[PENDING] = sent
    arrived = "sent" in request.args and not sent and entries is not None
    return render_template("console_hours.html", entries=entries, can_edit=g.scope.admin, sent=set(sent),
                           confirmed=_confirmed_this_month(), names=staff_names(),
                           arrived=arrived, errors=errors or {}, error_entry=entry_id,
                           categories=contract.CATEGORY_BY_CODE, status_labels=STATUS_LABELS,
                           values=request.form if errors else {}, months=_months(),
                           export_failed=EXPORT_FAILED if export_failed else None), status


def _send(entry_id: int, change: dict):
    ext.outbox().emit(ext.db_session(), contract.HOURS_REVIEW, {"entry_id": entry_id, "actor": g.actor, **change})
    ext.db_session().commit()
    log.info("hours review sent", extra={"hours_entry_id": entry_id, "action": change["action"], "actor": g.actor})
    session[PENDING] = [*session.get(PENDING, []), entry_id][-200:]
    return redirect(url_for("console.hours", sent=1), 303)


@console.post("/office/hours/<id:entry_id>/confirm")
@staff_required
def hours_confirm(entry_id):
    office_only()
    return _send(entry_id, {"action": "confirm"})


@console.post("/office/hours/<id:entry_id>/correct")
@staff_required
def hours_correct(entry_id):
    office_only()
    try:
        data = CorrectionForm().load({k: request.form.get(k, "").strip() for k in ("hours", "reason")
                                      if request.form.get(k, "").strip()})
    except ValidationError as exc:
        return hours(exc.messages, entry_id, 422)
    return _send(entry_id, {"action": "correct", "hours": data["hours"], "reason": data["reason"]})
