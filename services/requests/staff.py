"""Staff accounts, sign-in and scope.

Passwords are argon2id hashes. Sign-in failures are counted in Redis per
address, and per account except from a browser the account signed in from
before (device cookie); past a limit every attempt gets the same 429,
whether the account exists or not. A session holds the staff id and the
account's session epoch: signing out (or a password change) bumps the
epoch and every older cookie stops working. The bootstrap admin token
(LINLI_ADMIN_TOKEN) stays for automation and acts as an admin.

Scope: an admin sees everything, a grid leader their grid, a hallway
leader their stairwells. Every query of requests goes through
`Scope.where()`, every request by id through `Scope.allows()`."""
from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from datetime import timedelta

import click
import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, g, request, session
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import and_, false, or_, select, true

from services.common import extensions as ext
from services.common.auth import StaffClaims, bearer_matches
from services.common.clock import utcnow
from services.common.queueing import redis_client

from .models import Building, ServiceRequest, StaffAudit, StaffMember

log = logging.getLogger(__name__)
hasher = PasswordHasher()
# Verified against when the username is unknown, so that a wrong username
# costs the same time as a wrong password.
_DUMMY_HASH = hasher.hash(secrets.token_urlsafe(16))
ROLES = ("admin", "grid_leader", "hallway_leader")
MIN_PASSWORD = 10


@dataclass(frozen=True)
class Scope:
    role: str
    grid: str | None = None
    stairwells: tuple[str, ...] = field(default_factory=tuple)  # "building:unit"

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def where(self):
        """A filter on ServiceRequest for this scope."""
        if self.admin:
            return true()
        if self.role == "grid_leader":
            return ServiceRequest.building_code.in_(select(Building.code).where(Building.grid == self.grid))
        pairs = [s.split(":", 1) for s in self.stairwells]
        if not pairs:
            return false()
        return or_(*(and_(ServiceRequest.building_code == b, ServiceRequest.unit == u) for b, u in pairs))

    def allows_place(self, building: Building | None, unit: str | None) -> bool:
        if self.admin:
            return True
        if building is None:
            return False
        if self.role == "grid_leader":
            return building.grid == self.grid
        return f"{building.code}:{unit}" in self.stairwells

    def allows(self, req: ServiceRequest) -> bool:
        return self.allows_place(req.building, req.unit)

    def grids(self, all_grids: list[str]) -> list[str]:
        return all_grids if self.admin else [self.grid] if self.grid else []


def scope_of(staff: StaffMember | None) -> Scope:
    if staff is None:  # the bootstrap token
        return Scope("admin")
    return Scope(staff.role, staff.grid, tuple(staff.stairwells or ()))


# --- sign-in limits (Redis) ---
#
# Failures are counted per address, and per account for browsers the account
# has not signed in from before. A browser that has signed in to the account
# carries a signed device cookie (OWASP's "device cookies"): it is counted
# on its own, so that strangers guessing at an account cannot lock its owner
# out of their usual browser, while guessing from anywhere else stays
# bounded by the account's limit.

DEVICE_COOKIE = "linli_staff_device"
DEVICE_DAYS = 180


def _limiter() -> redis.Redis:
    return redis_client(current_app.config["REDIS_URL"])


def _hash(value: str) -> str:
    # Hashed: the key names no account and no address in Redis.
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _device_signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="linli-staff-device")


def _device(username: str) -> str | None:
    """The id of this browser's device cookie, if it was issued for `username`."""
    raw = request.cookies.get(DEVICE_COOKIE)
    if not raw:
        return None
    try:
        value = _device_signer().loads(raw, max_age=DEVICE_DAYS * 86400)
    except BadSignature:
        return None
    account = _hash(username.strip().lower())
    return value.get("n") if isinstance(value, dict) and value.get("a") == account else None


def issue_device_cookie(response, username: str) -> None:
    value = _device_signer().dumps({"a": _hash(username.strip().lower()), "n": secrets.token_urlsafe(12)})
    response.set_cookie(DEVICE_COOKIE, value, max_age=DEVICE_DAYS * 86400, path="/staff", httponly=True,
                        samesite="Lax", secure=current_app.config["SESSION_COOKIE_SECURE"])


def _keys(username: str) -> dict[str, str]:
    """The counters this attempt is judged by: its address, and its device
    (a known browser) or else the account (any other browser)."""
    keys = {"LOGIN_LIMIT_ADDRESS": f"linli:login:addr:{_hash(request.remote_addr or '')}"}
    device = _device(username)
    if device:
        keys["LOGIN_LIMIT_ACCOUNT"] = f"linli:login:dev:{_hash(device)}"
    else:
        keys["LOGIN_LIMIT_ACCOUNT"] = f"linli:login:acct:{_hash(username.strip().lower())}"
    return keys


def locked_out(username: str) -> bool:
    cfg = current_app.config
    keys = _keys(username)
    try:
        counts = _limiter().mget(list(keys.values()))
    except redis.RedisError as exc:
        # Fail open: an outage must not lock the office out; argon2's cost
        # still bounds guessing, and the event is logged.
        log.warning("sign-in limiter unavailable", extra={"error": type(exc).__name__})
        return False
    return any(int(c or 0) >= cfg[limit] for limit, c in zip(keys, counts, strict=True))


def count_failure(username: str) -> None:
    window = current_app.config["LOGIN_WINDOW_SECONDS"]
    try:
        pipe = _limiter().pipeline()
        for key in _keys(username).values():
            pipe.incr(key)
            pipe.expire(key, window, nx=True)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("sign-in limiter unavailable", extra={"error": type(exc).__name__})


def clear_failures(username: str) -> None:
    try:
        _limiter().delete(_keys(username)["LOGIN_LIMIT_ACCOUNT"])
    except redis.RedisError:
        pass


def authenticate(db_session, username: str, password: str) -> StaffMember | None:
    staff = db_session.scalar(select(StaffMember).where(StaffMember.username == username.strip().lower()))
    try:
        hasher.verify(staff.password_hash if staff else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if staff is None or not staff.active:
        return None
    if hasher.check_needs_rehash(staff.password_hash):
        staff.password_hash = hasher.hash(password)
    return staff


def start_session(staff: StaffMember) -> None:
    """A fresh session on every sign-in (no fixation): nothing the browser
    held before survives, and the cookie is new."""
    session.clear()
    session.permanent = True
    session["staff"] = staff.id
    session["epoch"] = staff.session_epoch
    session["sid"] = secrets.token_urlsafe(16)
    staff.last_login_at = utcnow()


def end_session(staff: StaffMember) -> None:
    staff.session_epoch += 1
    session.clear()


def current_staff(db_session) -> StaffMember | None:
    staff_id = session.get("staff")
    if not isinstance(staff_id, int):
        return None
    staff = db_session.get(StaffMember, staff_id)
    if staff is None or not staff.active or session.get("epoch") != staff.session_epoch:
        return None
    return staff


def identify(db_session) -> bool:
    """Set g.staff, g.scope and g.acting from the session or the admin token."""
    if bearer_matches("ADMIN_TOKEN"):
        g.staff, g.scope, g.actor = None, Scope("admin"), "admin-token"
    else:
        staff = current_staff(db_session)
        if staff is None:
            return False
        g.staff, g.scope, g.actor = staff, scope_of(staff), staff.actor
    # What other services are told when this page reads them (auth.vouch).
    g.acting = StaffClaims(g.actor, g.scope.role, g.scope.grid, g.scope.stairwells)
    return True


def session_lifetime(app) -> None:
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=app.config["STAFF_SESSION_HOURS"])


# --- accounts ---


def _check_role(role: str, grid: str | None, stairwells: list[str] | None) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if role == "grid_leader" and not grid:
        raise ValueError("a grid leader needs --grid")
    if role == "hallway_leader" and not stairwells:
        raise ValueError("a hallway leader needs --stairwell building:unit (one or more)")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"the password needs at least {MIN_PASSWORD} characters")


def create(db_session, username: str, password: str, role: str, name: str, grid: str | None = None,
           stairwells: list[str] | None = None, demo: bool = False) -> StaffMember:
    _check_role(role, grid, stairwells)
    _check_password(password)
    staff = db_session.scalar(select(StaffMember).where(StaffMember.username == username.lower())) \
        or StaffMember(username=username.lower())
    staff.display_name = name
    set_role(staff, role, grid, stairwells)
    set_password(staff, password)
    staff.active = True
    staff.demo = demo
    db_session.add(staff)
    return staff


def generated_password() -> str:
    """A password the office reads out once (16 characters, no look-alikes)."""
    alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(16))


def set_password(staff: StaffMember, password: str) -> None:
    """A new password (argon2id) signs the account out everywhere."""
    _check_password(password)
    staff.password_hash = hasher.hash(password)
    staff.session_epoch = (staff.session_epoch or 0) + 1


def set_role(staff: StaffMember, role: str, grid: str | None, stairwells: list[str] | None) -> bool:
    """Role and scope; a change ends the account's sessions (a cookie must
    not carry the old scope). True if anything changed."""
    _check_role(role, grid, stairwells)
    grid = grid if role == "grid_leader" else None
    stairwells = list(stairwells or []) if role == "hallway_leader" else []
    if (staff.role, staff.grid, list(staff.stairwells or [])) == (role, grid, stairwells):
        return False
    staff.role, staff.grid, staff.stairwells = role, grid, stairwells
    staff.session_epoch = (staff.session_epoch or 0) + 1
    return True


def set_active(staff: StaffMember, active: bool) -> bool:
    """Deactivate (its sessions end now) or reactivate. True if it changed."""
    if staff.active == active:
        return False
    staff.active = active
    if not active:
        staff.session_epoch = (staff.session_epoch or 0) + 1
    return True


def active_admins(db_session) -> int:
    return len(db_session.scalars(select(StaffMember.id).where(StaffMember.role == "admin",
                                                                 StaffMember.active.is_(True))).all())


def audit(db_session, actor: str, target: str, action: str, detail: str = "") -> None:
    """Record an account or key change (who, what, when), in the table and the log."""
    db_session.add(StaffAudit(actor=actor, target=target, action=action, detail=detail[:300]))
    log.info("staff account change", extra={"actor": actor, "target": target, "action": action})


def demo_leftovers(db_session) -> str:
    """The demo staff accounts that can still sign in (production refuses to start with any)."""
    names = db_session.scalars(select(StaffMember.username).where(StaffMember.demo.is_(True),
                                                                  StaffMember.active.is_(True))).all()
    return f"demo staff accounts {', '.join(names)}" if names else ""


def remove_demo(db_session) -> list[str]:
    """Close the demo's staff accounts for good: inactive, no usable
    password, every session ended. The rows stay, because the timelines
    name them as actors."""
    removed = []
    for staff in db_session.scalars(select(StaffMember).where(StaffMember.demo.is_(True))):
        staff.active = False
        staff.password_hash = "!removed-demo-account"  # no argon2 hash: nothing verifies against it
        staff.session_epoch += 1
        removed.append(staff.username)
    return removed


def register_commands(app) -> None:
    app.extensions["demo_leftovers"] = demo_leftovers

    @app.cli.command("remove-demo")
    def remove_demo_command():
        """Close every demo staff account (make remove-demo)."""
        db = ext.database()
        try:
            removed = remove_demo(db.Session())
            db.Session.commit()
        finally:
            db.Session.remove()
        click.echo(f"requests: demo staff accounts closed: {', '.join(removed) or 'none'}")

    @app.cli.command("create-staff")
    @click.option("--username", required=True)
    @click.option("--role", type=click.Choice(ROLES), default="admin", show_default=True)
    @click.option("--name", default="", help="Shown in the console and the timeline.")
    @click.option("--grid", default=None, help="A grid leader's grid code.")
    @click.option("--stairwell", "stairwells", multiple=True, help="A hallway leader's building:unit.")
    @click.password_option(envvar="LINLI_STAFF_PASSWORD")
    def create_staff(username, role, name, grid, stairwells, password):
        """Create (or reset) a staff account; the first admin comes from here."""
        db = ext.database()
        try:
            staff = create(db.Session(), username, password, role, name or username, grid, list(stairwells))
            created = staff.username
            db.Session.commit()
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
        finally:
            db.Session.remove()
        click.echo(f"staff account {created} ({role}) ready")
