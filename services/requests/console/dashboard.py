"""The dashboard: requests per week, median times, open and overdue per
grid, the three rates (响应率, 解决率, 满意率) and volunteers' confirmed
hours, each table downloadable."""
from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import datetime, timedelta

from flask import abort, g, render_template, request
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from services.common import contract, tables, workdays
from services.common import extensions as ext
from services.common.clock import SHANGHAI, utcnow
from services.common.web import read_service

from .. import calls, hotline
from ..models import FINAL, PhoneCall, ServiceRequest
from .blueprint import console, staff_required

log = logging.getLogger(__name__)


def _week_start(dt: datetime) -> str:
    local = dt.astimezone(SHANGHAI)
    return (local - timedelta(days=local.weekday())).strftime("%Y-%m-%d")


def _hours(delta: timedelta) -> float:
    return round(delta.total_seconds() / 3600, 1)


def _months(now: datetime, count: int) -> list[str]:
    local = now.astimezone(SHANGHAI)
    year, month = local.year, local.month
    out = []
    for _ in range(count):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return out[::-1]


def _month_start(month: str) -> datetime:
    """The start of a month (YYYY-MM) in Hangzhou, as an aware time."""
    return datetime.strptime(month, "%Y-%m").replace(tzinfo=SHANGHAI)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.0f}%"


def dashboard_tables(now: datetime) -> dict[str, dict]:
    """Every table on the dashboard, as header + rows (the page draws
    charts from them; each one downloads as CSV or XLSX)."""
    since = now - timedelta(weeks=8)
    rows = ext.db_session().scalars(select(ServiceRequest).where(g.scope.where(),
                                                                ServiceRequest.created_at >= since)).all()
    open_rows = ext.db_session().scalars(select(ServiceRequest).where(g.scope.where(),
                                                                ServiceRequest.status.not_in(FINAL))).all()
    weeks = sorted({_week_start(r.created_at) for r in rows})
    per_week = Counter((_week_start(r.created_at), r.category) for r in rows)
    categories = sorted({r.category for r in rows})
    out = {"per_week": {"header": ["week", *categories, "total"], "rows": [
        [w, *(per_week[(w, c)] for c in categories), sum(per_week[(w, c)] for c in categories)] for w in weeks]}}

    accept, complete = defaultdict(list), defaultdict(list)
    for r in rows:
        if r.taken_at:
            accept[r.category].append(_hours(r.taken_at - r.created_at))
        if r.completed_at:
            complete[r.category].append(_hours(r.completed_at - r.created_at))
    out["medians"] = {"header": ["category", "median_hours_to_accept", "median_hours_to_complete"], "rows": [
        [c, hotline.median(accept[c]), hotline.median(complete[c])] for c in categories]}

    by_grid = defaultdict(lambda: [0, 0])
    for r in open_rows:
        by_grid[r.building.grid][0] += 1
        by_grid[r.building.grid][1] += hotline.overdue(r, now)
    out["open_by_grid"] = {"header": ["grid", "open", "overdue"],
                           "rows": [[grid, *by_grid[grid]] for grid in sorted(by_grid)]}

    for name, key in (("rates_by_grid", lambda r: r.building.grid), ("rates_by_category", lambda r: r.category)):
        rates = hotline.rates(rows, key)
        out[name] = {"header": [name.rsplit("_", 1)[1], "requests", "response_rate", "resolution_rate",
                                "satisfaction_rate", "rated", "alert"],
                     "rows": [[k, r.requests, _pct(r.response), _pct(r.resolution), _pct(r.satisfaction), r.rated,
                               "satisfaction < 85%" if r.alert else ""] for k, r in sorted(rates.items())]}

    # Phone calls per outcome per month (the 街道 counts enquiries that never became a request too).
    months = _months(now, 6)
    call_rows = ext.db_session().scalars(select(PhoneCall).where(
        calls.visible(g.scope, g.actor), PhoneCall.called_at >= _month_start(months[0]))).all()
    out["calls_by_month"] = {"header": calls.STATS_HEADER, "rows": calls.monthly(call_rows)}

    hours, ranking = [], []
    for month in _months(now, 6):  # oldest first: the loop ends on this month's ranking
        ranking = read_service("VOLUNTEERS_API_URL", f"/api/v1/hours/ranking?month={month}") or []
        hours.append([month, sum(float(r["hours"]) for r in ranking), len(ranking)])
    out["hours_by_month"] = {"header": ["month", "confirmed_hours", "volunteers"], "rows": hours}
    out["ranking"] = {"header": ["rank", "name", "hours", "tasks"],
                      "rows": [[r["rank"], r["name"], r["hours"], r["tasks"]] for r in ranking[:20]]}
    return out


# Column labels on the page; the downloads keep the stable keys.
HEADER_LABELS = {
    "grid": _l("Grid"), "category": _l("Service"), "requests": _l("Requests"), "week": _l("Week"),
    "total": _l("Total"), "response_rate": _l("Response rate"), "resolution_rate": _l("Resolution rate"),
    "satisfaction_rate": _l("Satisfaction rate"), "rated": _l("Rated"), "alert": _l("Alert"),
    "median_hours_to_accept": _l("Median hours to accept"),
    "median_hours_to_complete": _l("Median hours to complete"), "open": _l("Open"), "overdue": _l("Overdue"),
    "month": _l("Month"), "confirmed_hours": _l("Confirmed hours"), "volunteers": _l("Volunteers"),
    "rank": _l("Rank"), "name": _l("Name"), "hours": _l("Hours"), "tasks": _l("Tasks"),
    "satisfaction < 85%": _l("⚠ satisfaction below 85%"),
    "calls": _l("Calls"), "became_request": _l("Became a request"), "answered": _l("Answered on the spot"),
    "referred": _l("Referred elsewhere"), "no_request": _l("Enquiries without a request"),
}


@console.get("/dashboard")
@staff_required
def dashboard():
    now = utcnow()
    data = dashboard_tables(now)
    name, fmt = request.args.get("export"), request.args.get("format", "csv")
    if name:
        if name not in data or fmt not in tables.FORMATS:
            abort(404)
        return tables.download(tables.table(data[name]["header"], data[name]["rows"], fmt), f"{name}.{fmt}", fmt)
    alerts = [row for t in ("rates_by_grid", "rates_by_category") for row in data[t]["rows"] if row[-1]]
    # A year without a holiday schedule counts Monday to Friday: said here, not left to be found out at 春节.
    missing_years = workdays.calendar().missing_years(workdays.years_ahead(now))
    if missing_years:
        log.warning("working calendar: no holiday schedule for %s; timers count Monday to Friday", missing_years)
    return render_template("console_dashboard.html", data=data, alerts=alerts, labels=HEADER_LABELS,
                           categories=contract.CATEGORY_BY_CODE, missing_years=missing_years)
