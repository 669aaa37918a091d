"""Staff accounts and Open311 keys, managed by the community admin in the
console: create, reset a password, change role and scope, deactivate and
reactivate; issue and revoke keys. Intake owns both, so no task is sent.
Every change is recorded (staff.audit: who, what, when)."""
from __future__ import annotations

import logging

from flask import abort, g, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError
from sqlalchemy import select

from services.common import extensions as ext

from .. import open311, staff
from ..models import Building, Open311Key, StaffAudit, StaffMember
from ..schemas import KeyNameIn, PasswordIn, StaffAccountIn, StaffScopeIn
from .blueprint import console, staff_required
from .office import office_only
from .words import ROLE_LABELS

log = logging.getLogger(__name__)

AUDIT_LABELS = {
    "created": _l("Account created"), "password_reset": _l("Password reset"),
    "role_changed": _l("Role or area changed"), "deactivated": _l("Deactivated"),
    "reactivated": _l("Reactivated"), "key_issued": _l("Open311 key issued"),
    "key_revoked": _l("Open311 key revoked"),
}
DONE = {
    "role_changed": _l("Role and area saved; the member signs in again."),
    "deactivated": _l("Deactivated; the member is signed out everywhere."),
    "reactivated": _l("Reactivated; the member can sign in again."),
    "unchanged": _l("Nothing changed."),
}
LAST_ADMIN = _l("The community needs at least one active admin: make another admin first.")
NOT_YOURSELF = _l("You cannot deactivate your own account or take away your own admin role.")


def _grids() -> list[str]:
    return sorted({b.grid for b in ext.db_session().scalars(select(Building))})


def _form_values(member: StaffMember | None) -> dict:
    if member is None:
        return {"role": "grid_leader", "grid": "", "stairwells": ""}
    return {"role": member.role, "grid": member.grid or "", "stairwells": " ".join(member.stairwells or [])}


def detail_words(detail: str) -> str:
    """An audit line's role codes in the page's words."""
    return " ".join(str(ROLE_LABELS.get(word, word)) for word in detail.split(" "))


def staff_names() -> dict[str, str]:
    """Staff actors (staff:<id>) by the names the console shows."""
    return {f"staff:{s.id}": s.display_name for s in ext.db_session().scalars(select(StaffMember))}


def _accounts_page(values: dict | None = None, errors: dict | None = None, status: int = 200,
                   created: tuple[StaffMember, str] | None = None):
    office_only()
    members = ext.db_session().scalars(select(StaffMember).order_by(StaffMember.active.desc(),
                                                                    StaffMember.username)).all()
    audit = ext.db_session().scalars(select(StaffAudit).order_by(StaffAudit.id.desc()).limit(50)).all()
    return render_template("console_staff.html", members=members, values=values or _form_values(None),
                           errors=errors or {}, grids=_grids(), created=created, audit=audit,
                           audit_labels=AUDIT_LABELS, names=staff_names(), detail_words=detail_words), status


@console.get("/office/staff")
@staff_required
def staff_accounts():
    return _accounts_page()


@console.post("/office/staff")
@staff_required
def staff_create():
    """A new account; without a typed password one is generated and shown once."""
    office_only()
    values = {k: v for k, v in request.form.items() if k != "csrf_token"}
    try:
        data = StaffAccountIn().load(values)
    except ValidationError as exc:
        return _accounts_page(values, exc.messages, 422)
    session = ext.db_session()
    if session.scalar(select(StaffMember.id).where(StaffMember.username == data["username"])) is not None:
        return _accounts_page(values, {"username": [_l("This username is taken.")]}, 409)
    password = data["password"] or staff.generated_password()
    member = staff.create(session, data["username"], password, data["role"], data["display_name"],
                          data["grid"], data["stairwells"])
    session.flush()
    staff.audit(session, g.actor, member.actor, "created", _scope_text(member))
    session.commit()
    return _accounts_page(created=(member, "" if data["password"] else password))


def _scope_text(member: StaffMember) -> str:
    return f"{member.role} {member.grid or ''} {' '.join(member.stairwells or [])}".strip()


def _member(member_id: int) -> StaffMember:
    office_only()
    member = ext.db_session().get(StaffMember, member_id)
    if member is None:
        abort(404)
    return member


def _member_page(member: StaffMember, values: dict | None = None, errors: dict | None = None,
                 status: int = 200, password: str | None = None):
    audit = ext.db_session().scalars(select(StaffAudit).where(StaffAudit.target == member.actor)
                                     .order_by(StaffAudit.id.desc()).limit(50)).all()
    return render_template("console_staff_member.html", member=member, values=values or _form_values(member),
                           errors=errors or {}, grids=_grids(), password=password, audit=audit,
                           audit_labels=AUDIT_LABELS, names=staff_names(), detail_words=detail_words,
                           done=DONE.get(request.args.get("done", ""))), status


def _is_me(member: StaffMember) -> bool:
    return g.staff is not None and g.staff.id == member.id


def _last_admin(member: StaffMember) -> bool:
    return member.role == "admin" and member.active and staff.active_admins(ext.db_session()) <= 1


@console.get("/office/staff/<id:member_id>")
@staff_required
def staff_member(member_id):
    return _member_page(_member(member_id))


@console.post("/office/staff/<id:member_id>/scope")
@staff_required
def staff_scope(member_id):
    """Role and area; a change ends the member's sessions."""
    member = _member(member_id)
    values = {k: v for k, v in request.form.items() if k != "csrf_token"}
    try:
        data = StaffScopeIn().load(values)
    except ValidationError as exc:
        return _member_page(member, values, exc.messages, 422)
    if member.role == "admin" and data["role"] != "admin":
        if _is_me(member):
            return _member_page(member, values, {"role": [NOT_YOURSELF]}, 409)
        if _last_admin(member):
            return _member_page(member, values, {"role": [LAST_ADMIN]}, 409)
    before = _scope_text(member)
    if not staff.set_role(member, data["role"], data["grid"], data["stairwells"]):
        return redirect(url_for("console.staff_member", member_id=member.id, done="unchanged"), 303)
    staff.audit(ext.db_session(), g.actor, member.actor, "role_changed", f"{before} → {_scope_text(member)}")
    ext.db_session().commit()
    return redirect(url_for("console.staff_member", member_id=member.id, done="role_changed"), 303)


@console.post("/office/staff/<id:member_id>/password")
@staff_required
def staff_password(member_id):
    """A new password, typed by the admin or generated and shown this once;
    the member's sessions end."""
    member = _member(member_id)
    try:
        data = PasswordIn().load({"password": request.form.get("password", "")})
    except ValidationError as exc:
        return _member_page(member, errors=exc.messages, status=422)
    password = data["password"] or staff.generated_password()
    staff.set_password(member, password)
    staff.audit(ext.db_session(), g.actor, member.actor, "password_reset",
                "typed" if data["password"] else "generated")
    ext.db_session().commit()
    return _member_page(member, password="" if data["password"] else password)


@console.post("/office/staff/<id:member_id>/active")
@staff_required
def staff_active(member_id):
    """Deactivate (signed out everywhere at once) or reactivate; never
    yourself, never the last active admin."""
    member = _member(member_id)
    active = request.form.get("active") == "1"
    if not active and _is_me(member):
        return _member_page(member, errors={"active": [NOT_YOURSELF]}, status=409)
    if not active and _last_admin(member):
        return _member_page(member, errors={"active": [LAST_ADMIN]}, status=409)
    if not staff.set_active(member, active):
        return redirect(url_for("console.staff_member", member_id=member.id, done="unchanged"), 303)
    action = "reactivated" if active else "deactivated"
    staff.audit(ext.db_session(), g.actor, member.actor, action)
    ext.db_session().commit()
    return redirect(url_for("console.staff_member", member_id=member.id, done=action), 303)


# --- Open311 keys ---


def _keys_page(values: dict | None = None, errors: dict | None = None, status: int = 200,
               issued: tuple[Open311Key, str] | None = None):
    office_only()
    keys = ext.db_session().scalars(select(Open311Key).order_by(Open311Key.id.desc())).all()
    return render_template("console_keys.html", keys=keys, values=values or {}, errors=errors or {},
                           issued=issued, done=request.args.get("done") == "revoked"), status


@console.get("/office/keys")
@staff_required
def open311_keys():
    return _keys_page()


@console.post("/office/keys")
@staff_required
def open311_issue():
    """A new key, shown on this page once; only its hash is kept."""
    office_only()
    values = {"name": request.form.get("name", "")}
    try:
        data = KeyNameIn().load(values)
    except ValidationError as exc:
        return _keys_page(values, exc.messages, 422)
    row, key = open311.issue_key(ext.db_session(), data["name"])
    ext.db_session().flush()
    staff.audit(ext.db_session(), g.actor, f"open311_key:{row.id}", "key_issued", row.name)
    ext.db_session().commit()
    return _keys_page(issued=(row, key))


@console.post("/office/keys/<id:key_id>/revoke")
@staff_required
def open311_revoke(key_id):
    office_only()
    row = ext.db_session().get(Open311Key, key_id)
    if row is None:
        abort(404)
    if row.revoked_at is None:
        open311.revoke_key(row)
        staff.audit(ext.db_session(), g.actor, f"open311_key:{row.id}", "key_revoked", row.name)
        ext.db_session().commit()
    return redirect(url_for("console.open311_keys", done="revoked"), 303)
