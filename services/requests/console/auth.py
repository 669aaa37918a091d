"""Staff sign-in and sign-out (staff.py counts the failures and keeps the session)."""
from __future__ import annotations

import logging

from flask import g, redirect, render_template, request, url_for
from flask_babel import lazy_gettext as _l

from services.common import extensions as ext
from services.common.auth import public

from .. import staff
from .blueprint import console, staff_required

log = logging.getLogger(__name__)

FAILED = _l("Sign-in failed: the username or password is not right.")
LOCKED = _l("Too many attempts. Wait 15 minutes and try again, or ask the community office.")


def _safe_next(target: str | None) -> str:
    return target if target and target.startswith("/staff") and "//" not in target else url_for("console.queue")


@console.get("/login")
@public
def login():
    return render_template("staff_login.html", error=None, next=_safe_next(request.args.get("next")))


@console.post("/login")
@public
def login_post():
    username = request.form.get("username", "")[:64]
    password = request.form.get("password", "")[:200]
    nxt = _safe_next(request.form.get("next"))
    # The same answer for a locked, unknown or existing account.
    if staff.locked_out(username):
        return render_template("staff_login.html", error=LOCKED, next=nxt), 429
    member = staff.authenticate(ext.db_session(), username, password) if username and password else None
    if member is None:
        staff.count_failure(username)
        log.info("staff sign-in failed")
        return render_template("staff_login.html", error=FAILED, next=nxt), 401
    staff.clear_failures(username)
    staff.start_session(member)
    ext.db_session().commit()
    log.info("staff signed in", extra={"staff_id": member.id})
    response = redirect(nxt, 303)
    staff.issue_device_cookie(response, member.username)
    return response


@console.post("/logout")
@staff_required
def logout():
    if g.staff is not None:
        staff.end_session(g.staff)
        ext.db_session().commit()
    return redirect(url_for("console.login"), 303)
