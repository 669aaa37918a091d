"""The register's staff API (/api/v1): households and residents within the
acting staff member's scope (the console's claims, or the admin token), the
export, the lookup for proxy intake, and the outcome of the console's
changes. Every read is written to the register's access log; care needs and
disability (sealed) only when asked for, and then marked sensitive.
Changes come as tasks (tasks.py), never through this API."""
from __future__ import annotations

from flask import g
from flask.views import MethodView
from flask_smorest import abort
from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import selectinload

from services.common import contract
from services.common import extensions as ext
from services.common.auth import staff
from services.common.clock import SHANGHAI
from services.common.factory import ApiBlueprint, page_of
from services.common.register_file import HEADERS, export_row
from services.common.tables import download, table

from . import register
from .models import Household, HouseholdPhone, RegisterChange, Resident
from .schemas import (
    ExportArgs,
    HouseholdDetail,
    HouseholdOut,
    HouseholdQuery,
    LookupOut,
    LookupQuery,
    RegisterChangeOut,
    ResidentOut,
    SealedArgs,
)

api = ApiBlueprint("api", __name__, url_prefix="/api/v1", description="Register of households and residents")


def _year() -> int:
    return ext.clock().now().astimezone(SHANGHAI).year


def _households(query: dict):
    """The households in scope that match the filters (a select)."""
    stmt = select(Household).where(register.in_scope(g.acting))
    if query.get("status", "open") == "open":
        stmt = stmt.where(Household.closed_at.is_(None))
    elif query["status"] == "closed":
        stmt = stmt.where(Household.closed_at.is_not(None))
    for key in ("building", "unit", "grid"):
        if query.get(key):
            stmt = stmt.where(getattr(Household, key) == query[key])
    # IN (one pass over residents), not a correlated EXISTS per household.
    living = select(Resident.household_id).where(Resident.closed_at.is_(None))
    if query.get("lives_alone") is not None:
        alone = Household.id.in_(living.where(Resident.lives_alone.is_(True)))
        stmt = stmt.where(alone if query["lives_alone"] else ~alone)
    if query.get("age_band"):
        stmt = stmt.where(Household.id.in_(living.where(register.born_in_band(query["age_band"], _year()))))
    if query.get("duplicates"):
        stmt = stmt.where(or_(register.same_room(), register.same_phone()))
    if query.get("search"):
        text = query["search"].strip()
        by_phone = exists().where(HouseholdPhone.household_id == Household.id,
                                  HouseholdPhone.phone.like(f"%{text}")) if text.isdigit() and len(text) == 4 \
            else None
        stmt = stmt.where(or_(Household.room == text, *([by_phone] if by_phone is not None else [])))
    return stmt.order_by(func.length(Household.building), Household.building, Household.unit,
                         func.length(Household.room), Household.room, Household.id)


def _brief(resident: Resident, year: int) -> dict:
    return {"id": resident.id, "name": resident.name, "sex": resident.sex, "relation": resident.relation,
            "age_band": register.age_band(resident.birth_year, year), "lives_alone": resident.lives_alone}


def _household_out(h: Household, year: int, flags: dict, masked: bool = True) -> dict:
    people = register.open_residents(h) if h.closed_at is None else list(h.residents)
    return {"id": h.id, "grid": h.grid, "building": h.building, "unit": h.unit, "floor": h.floor, "room": h.room,
            "tenure": h.tenure, "floor_area": h.floor_area,
            "phones": [contract.mask_phone(p.phone) if masked else p.phone for p in h.phones],
            "residents": [_brief(r, year) for r in people],
            "over_60": sum(1 for r in people if year - r.birth_year >= 60),
            "lives_alone": any(r.lives_alone for r in people), "duplicate": flags.get(h.id, []),
            "closed_at": h.closed_at, "closed_reason": h.closed_reason}


def _resident_out(r: Resident, year: int, sealed: bool) -> dict:
    h = r.household
    out = {key: getattr(r, key) for key in register.RESIDENT_FIELDS if key not in ("care_need", "disability")}
    out.update(id=r.id, household_id=h.id, building=h.building, unit=h.unit, room=h.room, grid=h.grid,
               age_band=register.age_band(r.birth_year, year), sealed=sealed, closed_at=r.closed_at,
               closed_reason=r.closed_reason)
    if sealed:
        out.update(care_need=r.care_need or "none", disability=r.disability)
    return out


def _scoped_household(household_id: int) -> Household:
    household = ext.db_session().get(Household, household_id)
    if household is None:
        abort(404, message="no such household")
    if not register.allows(g.acting, household):
        abort(403, message="this household is outside your area")
    return household


@api.route("/households")
class Households(MethodView):
    @staff
    @api.arguments(HouseholdQuery, location="query")
    @api.response(200, HouseholdOut(many=True))
    @api.paginate()
    def get(self, query, pagination_parameters):
        """Households in the acting staff member's area, by building, unit,
        grid, someone living alone, an age band, open or closed, duplicates,
        a room or the last 4 digits of a phone; a page at a time (phones masked)."""
        session = ext.db_session()
        stmt = _households(query).options(selectinload(Household.residents), selectinload(Household.phones))
        page = page_of(session, stmt, pagination_parameters)
        flags = register.duplicates(session, [h.id for h in page])
        year = _year()
        out = [_household_out(h, year, flags) for h in page]
        register.record(session, g.acting, "list", rows=len(out))
        session.commit()
        return out


@api.route("/households/<id:household_id>")
class HouseholdById(MethodView):
    @staff
    @api.arguments(SealedArgs, location="query")
    @api.response(200, HouseholdDetail)
    def get(self, args, household_id):
        """A household with every resident (closed ones too), phones in
        full; care needs and disability with `sealed=true` (logged as sensitive)."""
        session = ext.db_session()
        household = _scoped_household(household_id)
        year = _year()
        out = _household_out(household, year, register.duplicates(session, [household.id]), masked=False)
        out["people"] = [_resident_out(r, year, args["sealed"]) for r in household.residents]
        register.record(session, g.acting, "view", household_id=household.id, rows=len(out["people"]),
                        sensitive=args["sealed"])
        session.commit()
        return out


@api.route("/residents/<id:resident_id>")
class ResidentById(MethodView):
    @staff
    @api.arguments(SealedArgs, location="query")
    @api.response(200, ResidentOut)
    def get(self, args, resident_id):
        """One resident; care needs and disability with `sealed=true` (logged as sensitive)."""
        session = ext.db_session()
        resident = session.get(Resident, resident_id)
        if resident is None:
            abort(404, message="no such resident")
        if not register.allows(g.acting, resident.household):
            abort(403, message="this resident lives outside your area")
        out = _resident_out(resident, _year(), args["sealed"])
        register.record(session, g.acting, "view", household_id=resident.household_id, resident_id=resident.id,
                        rows=1, sensitive=args["sealed"])
        session.commit()
        return out


@api.route("/households/export")
class HouseholdExport(MethodView):
    @staff
    @api.arguments(ExportArgs, location="query")
    @api.response(200)
    def get(self, args):
        """The register in the area (CSV or XLSX, one resident a row with the
        household's columns, the office's headers): the file imports again
        as it is. Sealed columns only with `sealed=true` (logged as sensitive)."""
        session = ext.db_session()
        sealed = args["sealed"]
        people = selectinload(Household.residents)
        if sealed:  # opened in the same query, not one query per resident and field
            people = people.undefer(Resident.care_need).undefer(Resident.disability)
        households = session.scalars(_households(args).options(people, selectinload(Household.phones))).all()
        fields = [k for k in register.RESIDENT_FIELDS if sealed or k not in ("care_need", "disability")]
        rows = []
        for h in households:
            place = {"building": h.building, "unit": h.unit, "floor": h.floor, "room": h.room,
                     "floor_area": h.floor_area, "tenure": h.tenure, "phones": [p.phone for p in h.phones]}
            for r in (register.open_residents(h) if h.closed_at is None else h.residents):
                person = {key: getattr(r, key) for key in fields}
                rows.append(export_row(place, person, sealed))
        register.record(session, g.acting, "export", rows=len(rows), sensitive=sealed)
        session.commit()
        fmt = args["format"]
        return download(table(HEADERS, rows, fmt), f"register.{fmt}", fmt)


@api.route("/residents/lookup")
class ResidentLookup(MethodView):
    @staff
    @api.arguments(LookupQuery, location="query")
    @api.response(200, LookupOut(many=True))
    def get(self, query):
        """Residents of a room, or with a phone (by its keyed digest, never
        the number in a URL), in the acting staff member's area: for proxy
        intake, so that the desk does not type what the office knows."""
        session = ext.db_session()
        stmt = (select(Resident).join(Household).where(register.in_scope(g.acting), Household.closed_at.is_(None),
                                                       Resident.closed_at.is_(None)).order_by(Resident.id).limit(20))
        by_room = all(query.get(k) for k in ("building", "unit", "room"))
        if query.get("phone_digest"):
            digest = query["phone_digest"]
            stmt = stmt.where(or_(Resident.phone_digest == digest, exists().where(
                HouseholdPhone.household_id == Household.id, HouseholdPhone.phone_digest == digest)))
        if by_room:
            stmt = stmt.where(Household.building == query["building"], Household.unit == query["unit"],
                              Household.room == query["room"])
        year = _year()
        found = []
        for r in session.scalars(stmt) if by_room or query.get("phone_digest") else ():
            h = r.household
            found.append({"resident_id": r.id, "household_id": h.id, "name": r.name,
                          "phone": r.phone or (h.phones[0].phone if h.phones else None), "building": h.building,
                          "unit": h.unit, "room": h.room, "age_band": register.age_band(r.birth_year, year),
                          "reach_by": r.reach_by})
        register.record(session, g.acting, "lookup", rows=len(found))
        session.commit()
        return found


@api.route("/register-changes/<uuid:change_id>")
class RegisterChangeById(MethodView):
    @staff
    @api.response(200, RegisterChangeOut)
    def get(self, change_id):
        """What became of a change the console asked for (an edit, a close,
        an import): 404 until the community service has carried it out.
        Staff see their own changes, the office all."""
        change = ext.db_session().get(RegisterChange, str(change_id))
        if change is None or not (g.acting.admin or change.actor == g.acting.actor):
            abort(404, message="not carried out yet")
        return change
