"""The queue: the requests in the staff member's scope, filtered, on the
page or as a download."""
from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from flask import abort, g, render_template, request
from marshmallow import ValidationError
from sqlalchemy import select

from services.common import contract, tables
from services.common import extensions as ext
from services.common.clock import utcnow
from services.common.web import local_time

from .. import hotline
from ..models import Building, ServiceRequest
from ..queries import queue_statement
from ..schemas import QueueQuery
from .blueprint import console, staff_required


def _query_args() -> dict:
    try:
        return QueueQuery().load(request.args.to_dict())
    except ValidationError as exc:
        abort(400, description=str(exc.messages))


QUEUE_HEADER = ("tracking_code", "created_at", "category", "building", "unit", "grid", "status", "take_by",
                "due_at", "overdue", "handbacks", "masked_phone")


def _queue_row(req: ServiceRequest, now: datetime) -> list:
    return [req.tracking_code, local_time(req.created_at), req.category, req.building_code, req.unit or "",
            req.building.grid, req.status, local_time(req.take_by), local_time(req.due_at),
            "1" if hotline.overdue(req, now) else "0", req.handbacks, req.masked_phone]


@console.get("/")
@staff_required
def queue():
    q, now = _query_args(), utcnow()
    if "format" in q:
        rows = ext.db_session().scalars(queue_statement(g.scope, q, now).limit(10000)).all()
        return tables.download(tables.table(QUEUE_HEADER, [_queue_row(r, now) for r in rows], q["format"]),
                               f"requests.{q['format']}", q["format"])
    rows = ext.db_session().scalars(queue_statement(g.scope, q, now).limit(500)).all()
    grids = sorted({b.grid for b in ext.db_session().scalars(select(Building))})
    return render_template("console_queue.html", rows=rows, q=q, now=now, overdue=hotline.overdue,
                           categories=contract.CATEGORIES, statuses=contract.STATUSES,
                           grids=g.scope.grids(grids), export_args=urlencode(request.args.to_dict()))
