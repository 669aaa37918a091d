"""Visits in the community service's HTTP side: the staff API the console
reads (plans and who is overdue, within the staff member's scope, logged),
and the resident's daily check-in page (报平安): one tap, no sign-in beyond
the resident's own link, elder mode."""
from __future__ import annotations

from flask import abort as page_abort
from flask import current_app, g, render_template
from flask.views import MethodView
from flask_smorest import abort
from sqlalchemy import exists, func, select

from services.common import contract
from services.common import extensions as ext
from services.common.auth import public, staff
from services.common.clock import utcnow
from services.common.factory import page_of
from services.common.ratelimit import limit

from .api import api
from .models import CheckIn, Household, Resident, Visit, VisitPlan
from .register import in_scope, record
from .schemas import VisitOut, VisitPlanOut, VisitPlanQuery
from .views import web
from .visits import Visits, local_today


def _annotate(plans: list[VisitPlan], today) -> list[VisitPlan]:
    """What the list shows besides the plan: the last visit, the oldest
    overdue one, today's check-in (three queries for a page, not three per row)."""
    ids = [p.id for p in plans]
    if not ids:
        return plans
    session = ext.db_session()
    last = {v.plan_id: v for v in session.scalars(select(Visit).where(Visit.id.in_(
        select(func.max(Visit.id)).where(Visit.plan_id.in_(ids)).group_by(Visit.plan_id))))}
    overdue = dict(session.execute(select(Visit.plan_id, func.min(Visit.due_on)).where(
        Visit.plan_id.in_(ids), Visit.outcome.is_(None), Visit.due_on < today).group_by(Visit.plan_id)).all())
    checked = set(session.scalars(select(CheckIn.plan_id).where(CheckIn.plan_id.in_(ids), CheckIn.on == today)))
    for p in plans:
        p.last_visit, p.overdue_since, p.checked_in_today = last.get(p.id), overdue.get(p.id), p.id in checked
    return plans


def _in_scope(stmt):
    """Visit plans (or visits joined with their plan) of residents in the
    acting staff member's part of the register."""
    return (stmt.join(Resident, Resident.id == VisitPlan.resident_id)
            .join(Household, Household.id == Resident.household_id).where(in_scope(g.acting)))


@api.route("/visit-plans")
class VisitPlans(MethodView):
    @staff
    @api.arguments(VisitPlanQuery, location="query")
    @api.response(200, VisitPlanOut(many=True))
    @api.paginate()
    def get(self, query, pagination_parameters):
        """Visit plans in the staff member's scope: overdue first (the
        oldest), then by grid and place — a list a grid leader works
        through on the phone. Each read is in the register's access log."""
        today = local_today(utcnow())
        overdue_since = (select(func.min(Visit.due_on)).where(
            Visit.plan_id == VisitPlan.id, Visit.outcome.is_(None), Visit.due_on < today).scalar_subquery())
        stmt = (_in_scope(select(VisitPlan))
                .order_by(overdue_since.is_(None), overdue_since, Household.grid, Household.building,
                          Household.unit, Household.room, VisitPlan.id))
        if "grid" in query:
            stmt = stmt.where(Household.grid == query["grid"])
        if "resident_id" in query:
            stmt = stmt.where(VisitPlan.resident_id == query["resident_id"])
        if query.get("overdue"):
            stmt = stmt.where(exists().where(Visit.plan_id == VisitPlan.id, Visit.outcome.is_(None),
                                             Visit.due_on < today))
        plans = _annotate(page_of(ext.db_session(), stmt, pagination_parameters), today)
        record(ext.db_session(), g.acting, "visits", rows=len(plans))
        ext.db_session().commit()
        return plans


@api.route("/visit-plans/<id:plan_id>/visits")
class PlanVisits(MethodView):
    @staff
    @api.response(200, VisitOut(many=True))
    @api.paginate()
    def get(self, plan_id, pagination_parameters):
        """A plan's visits, newest first."""
        plan = ext.db_session().scalar(
            _in_scope(select(VisitPlan)).where(VisitPlan.id == plan_id))
        if plan is None:
            abort(404, message="no such visit plan in your area")
        visits = page_of(ext.db_session(), select(Visit).where(Visit.plan_id == plan.id).order_by(Visit.id.desc()),
                         pagination_parameters)
        record(ext.db_session(), g.acting, "visits", rows=len(visits), resident_id=plan.resident_id)
        ext.db_session().commit()
        return visits


@api.route("/visits/<id:visit_id>")
class OneVisit(MethodView):
    @staff
    @api.response(200, VisitOut)
    def get(self, visit_id):
        """A visit, if the resident is in the staff member's scope (the
        console checks before it records an outcome for them)."""
        visit = ext.db_session().scalar(
            _in_scope(select(Visit).join(VisitPlan, VisitPlan.id == Visit.plan_id)).where(Visit.id == visit_id))
        if visit is None:
            abort(404, message="no such visit in your area")
        return visit


# --- 报平安: the resident's own page ---


def _plan_for(token: str) -> VisitPlan:
    plan = ext.db_session().scalar(select(VisitPlan).where(
        VisitPlan.checkin_token_digest == contract.link_digest(token), VisitPlan.active.is_(True),
        VisitPlan.checkin_daily.is_(True)))
    if plan is None:
        page_abort(404)
    return plan


@web.get("/checkin/<token>")
@public
def checkin_page(token: str):
    plan = _plan_for(token)
    done = Visits(ext.db_session(), None, current_app.config).checked_in_today(plan)
    # No name on the page: a link passed on tells nobody whose it is.
    return _no_store(render_template("checkin.html", token=token, done=done,
                                     office_phone=current_app.config["OFFICE_PHONE"]))


@web.post("/checkin/<token>")
@public
@limit("checkin")
def checkin(token: str):
    _plan_for(token)
    Visits(ext.db_session(), None, current_app.config).check_in(token)
    ext.db_session().commit()
    return _no_store(render_template("checkin.html", token=token, done=True, just_now=True,
                                     office_phone=current_app.config["OFFICE_PHONE"]))


def _no_store(body: str):
    # The link is the resident's key: no cache keeps the page.
    return body, 200, {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
