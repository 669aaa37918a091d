"""The contact access log (PIPL): who saw which resident's contact, and when."""
from __future__ import annotations

from flask import g, render_template, request
from sqlalchemy import select

from services.common import extensions as ext
from services.common import tables
from services.common.web import local_time

from ..models import ContactAccess, ServiceRequest, StaffMember
from .blueprint import console, staff_required


@console.get("/access-log")
@staff_required
def access_log():
    """Who saw which resident's contact, and when (scoped like the queue)."""
    rows = ext.db_session().execute(
        select(ContactAccess, ServiceRequest.tracking_code).join(ServiceRequest)
        .where(g.scope.where()).order_by(ContactAccess.id.desc()).limit(1000)).all()
    names = {f"staff:{s.id}": s.display_name for s in ext.db_session().scalars(select(StaffMember))}
    table = [[local_time(a.at), code, a.actor, names.get(a.actor, ""), a.purpose] for a, code in rows]
    fmt = request.args.get("format")
    if fmt in tables.FORMATS:
        return tables.download(tables.table(("at", "tracking_code", "actor", "name", "purpose"), table, fmt),
                               f"access-log.{fmt}", fmt)
    return render_template("console_access.html", rows=table)
