"""The queue: the requests in the staff member's scope — filtered, searched
(tracking code, the phone's last 4 digits, room), sorted, a page at a time
— on the page or as a download, and what staff do to several at once
(export the selection, take them, pass them to the grid leader, hand
them to a named grid or hallway leader)."""
from __future__ import annotations

import logging
import uuid
from datetime import datetime
from urllib.parse import urlencode

from flask import abort, g, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from marshmallow import EXCLUDE, ValidationError
from sqlalchemy import func, select

from services.common import contract, tables
from services.common import extensions as ext
from services.common.clock import utcnow
from services.common.web import local_time

from .. import hotline, operations
from ..models import FINAL, Building, ServiceRequest, StaffMember
from ..queries import default_direction, queue_statement
from ..schemas import QUEUE_PAGE_SIZE, ConsoleQueueQuery
from ..staff import scope_of
from .blueprint import console, staff_required
from .words import actor_name, category_name, status_name

log = logging.getLogger(__name__)

# The downloads keep the codes, with their names beside them.
QUEUE_HEADER = ("tracking_code", "created_at", "category", "category_name", "building", "unit", "grid", "status",
                "status_name", "take_by", "due_at", "overdue", "handbacks", "masked_phone", "handler")
# The page's columns: (sort key or None, label).
COLUMNS = (("code", _l("Tracking code")), ("received", _l("Received")), ("service", _l("Service")),
           ("where", _l("Where")), ("grid", _l("Grid")), ("status", _l("Status")), ("due", _l("Due")),
           (None, _l("Handled by")), (None, _l("Phone")))
MAX_SELECTION = 500
BULK_DONE = {
    "taken": _l("%(n)s requests taken; %(skipped)s were already taken or finished."),
    "escalated": _l("%(n)s requests passed to their grid leader; %(skipped)s finished ones were left as they are."),
    "handed": _l("%(n)s requests handed over; %(skipped)s finished ones were left as they are."),
}
NO_HANDLER = _l("Choose the leader to hand the ticked requests to.")
HANDLER_OUTSIDE = _l("Some ticked requests are outside that leader's area: nothing was handed over.")


def _queue_row(req: ServiceRequest, now: datetime) -> list:
    return [req.tracking_code, local_time(req.created_at), req.category, category_name(req.category),
            req.building_code, req.unit or "", req.building.grid, req.status, status_name(req.status),
            local_time(req.take_by), local_time(req.due_at), "1" if hotline.overdue(req, now) else "0",
            req.handbacks, req.masked_phone, actor_name(req.handler) if req.handler else ""]


def _download(rows, fmt: str, now: datetime):
    return tables.download(tables.table(QUEUE_HEADER, [_queue_row(r, now) for r in rows], fmt),
                           f"requests.{fmt}", fmt)


def _query_args() -> tuple[dict, dict]:
    """The queue's arguments, and field errors to show (a search that looks
    like a whole phone number is dropped, not run). Arguments that are not
    the queue's (the language and elder-mode switches, a notice) are left
    to their owners."""
    args = request.args.to_dict()
    try:
        return ConsoleQueueQuery(unknown=EXCLUDE).load(args), {}
    except ValidationError as exc:
        if set(exc.messages) != {"search"}:
            abort(400, description=str(exc.messages))
        args.pop("search")
        return ConsoleQueueQuery(unknown=EXCLUDE).load(args), exc.messages


def _args(q: dict, **changes) -> dict:
    """`q` (changed) as the queue's address arguments."""
    args = {k: ("1" if v is True else v) for k, v in {**q, **changes}.items()
            if v not in (None, "", False) and k != "format"}
    if args.get("page") == 1:
        args.pop("page")
    return args


def _link(q: dict, **changes) -> str:
    """The queue's address with `q`'s arguments, changed."""
    args = _args(q, **changes)
    return url_for("console.queue") + ("?" + urlencode(args) if args else "")


def _sort_links(q: dict) -> dict:
    """For each sortable column: its link (the other way round when it is
    the sorted column) and its aria-sort."""
    current = q.get("sort", "received")
    direction = q.get("dir") or default_direction(current)
    out = {}
    for key, _ in COLUMNS:
        if key is None:
            continue
        if key == current:
            flip = "asc" if direction == "desc" else "desc"
            out[key] = (_link(q, sort=key, dir=flip, page=1), "ascending" if direction == "asc" else "descending")
        else:
            out[key] = (_link(q, sort=key, dir=default_direction(key), page=1), None)
    return out


def _page_numbers(page: int, pages: int) -> list[int | None]:
    """1 … 4 5 [6] 7 8 … 20: None is a gap."""
    shown = sorted({1, pages, *range(max(1, page - 2), min(pages, page + 2) + 1)})
    out: list[int | None] = []
    for n in shown:
        if out and n - out[-1] > 1:
            out.append(None)
        out.append(n)
    return out


def may_hand_over() -> bool:
    """The office and grid leaders hand requests to a named leader; a
    hallway leader is the end of the chain."""
    return g.scope.role in ("admin", "grid_leader")


def handlers() -> list[StaffMember]:
    """Who requests may be handed to: active grid and hallway leaders whose
    area lies in the member's (the office: all of them; a grid leader:
    themself and the hallway leaders of their grid's stairwells)."""
    if not may_hand_over():
        return []
    buildings = {b.code: b for b in ext.db_session().scalars(select(Building))}
    found = []
    for m in ext.db_session().scalars(select(StaffMember).where(
            StaffMember.active.is_(True), StaffMember.role.in_(("grid_leader", "hallway_leader")))
            .order_by(StaffMember.role, StaffMember.display_name)):
        if m.role == "grid_leader":
            inside = g.scope.admin or m.grid == g.scope.grid
        else:
            places = [s.split(":", 1) for s in m.stairwells or ()]
            inside = bool(places) and all(g.scope.allows_place(buildings.get(b), u) for b, u in places)
        if inside:
            found.append(m)
    return found


def _render(q: dict, errors: dict, now: datetime, status: int = 200, notice: str | None = None):
    stmt = queue_statement(g.scope, q, now, g.actor)
    total = ext.db_session().scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    pages = max(1, -(-total // QUEUE_PAGE_SIZE))
    page = min(q.get("page", 1), pages)
    rows = ext.db_session().scalars(stmt.offset((page - 1) * QUEUE_PAGE_SIZE).limit(QUEUE_PAGE_SIZE)).all()
    grids = sorted({b.grid for b in ext.db_session().scalars(select(Building))})
    return render_template(
        "console_queue.html", rows=rows, q=q, now=now, deadline=hotline.deadline_state,
        categories=contract.CATEGORIES, statuses=contract.STATUSES, grids=g.scope.grids(grids), errors=errors,
        columns=COLUMNS, sort_links=_sort_links(q), total=total, page=page, pages=pages,
        page_numbers=_page_numbers(page, pages), link=lambda **c: _link(q, **c),
        first=(page - 1) * QUEUE_PAGE_SIZE + 1 if total else 0, last=(page - 1) * QUEUE_PAGE_SIZE + len(rows),
        export_args=urlencode(_args(q, page=None)), handlers=handlers(),
        notice=notice or _bulk_notice(request.args),
    ), status


def _bulk_notice(args) -> str | None:
    done = args.get("done")
    if done not in BULK_DONE:
        return None
    try:
        n, skipped = int(args.get("n", "0")), int(args.get("skipped", "0"))
    except ValueError:
        return None
    return BULK_DONE[done] % {"n": n, "skipped": skipped}


@console.get("/")
@staff_required
def queue():
    q, errors = _query_args()
    now = utcnow()
    if "format" in q:
        rows = ext.db_session().scalars(queue_statement(g.scope, q, now, g.actor).limit(10000)).all()
        return _download(rows, q["format"], now)
    return _render(q, errors, now, 422 if errors else 200)


def _selection() -> list[ServiceRequest]:
    """The posted selection, all of it in the member's scope: an id that is
    not a request's is a 400, one outside the scope a 403 (nothing is done)."""
    raw = request.form.getlist("ids")
    try:
        ids = {str(uuid.UUID(v)) for v in raw}
    except ValueError:
        abort(400)
    if len(ids) > MAX_SELECTION:
        abort(400)
    found = ext.db_session().scalars(select(ServiceRequest).where(ServiceRequest.id.in_(ids))).all() if ids else []
    if len(found) != len(ids):
        abort(404)
    outside = [r.id for r in found if not g.scope.allows(r)]
    if outside:
        log.warning("out-of-scope selection refused", extra={"count": len(outside), "actor": g.actor})
        abort(403)
    return sorted(found, key=lambda r: r.created_at, reverse=True)


def _chosen_handler() -> StaffMember | None:
    """The leader chosen in the form, if they are one the member may hand to."""
    chosen = request.form.get("handler", "")
    return next((m for m in handlers() if m.actor == chosen), None)


NOTHING_CHOSEN = _l("Choose at least one request: tick the boxes in the first column.")


@console.post("/bulk")
@staff_required
def bulk():
    """What staff do to the ticked requests at once."""
    chosen, now = _selection(), utcnow()
    what = request.form.get("action", "")
    if not chosen:
        return _render(_query_args()[0], {"ids": [NOTHING_CHOSEN]}, now, 422)
    if what in ("export_csv", "export_xlsx"):
        log.info("selection exported", extra={"count": len(chosen), "actor": g.actor})
        return _download(chosen, what.removeprefix("export_"), now)
    if what == "take":
        taken = [r for r in chosen if operations.take(r, g.actor)]
        done = "taken"
    elif what == "escalate":
        taken = [r for r in chosen if r.status not in FINAL]
        for r in taken:
            operations.staff_action(ext.db_session(), ext.outbox(), r, "escalate", g.actor, level=2,
                                    note=request.form.get("note", "")[:200])
            r.record("escalate_requested", g.actor, note=request.form.get("note", "")[:200])
        done = "escalated"
    elif what == "hand_over":
        if not may_hand_over():
            abort(403)
        handler = _chosen_handler()
        if handler is None:
            return _render(_query_args()[0], {"handler": [NO_HANDLER]}, now, 422)
        theirs = scope_of(handler)
        if not all(theirs.allows(r) for r in chosen):
            return _render(_query_args()[0], {"handler": [HANDLER_OUTSIDE]}, now, 422)
        taken = [r for r in chosen if r.status not in FINAL]
        for r in taken:
            if r.handler != handler.actor:
                r.handler = handler.actor
                r.record("handed_over", g.actor, note=handler.display_name)
        done = "handed"
    else:
        abort(400)
    ext.db_session().commit()
    log.info("bulk action", extra={"action": what, "count": len(taken), "actor": g.actor})
    # Back to the same view of the queue (the form's address carries it), saying what was done.
    return redirect(_link(_query_args()[0], done=done, n=len(taken), skipped=len(chosen) - len(taken)), 303)
