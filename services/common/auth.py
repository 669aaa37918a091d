"""Who may open what, said the same way in every service: each view carries
exactly one guard, as a decorator, and the guard marks the view
(`view.access`) so that tests/test_access.py finds any endpoint without one.

- `callers(*allowed)`: the JSON APIs' bearer tokens ("admin" is
  LINLI_ADMIN_TOKEN; "requests"/"volunteers" the calling service's token).
  Outermost, above flask-smorest's decorators: a caller without a token is
  refused before the arguments are parsed, so learns nothing of the schema.
- `signed_in(identify, refuse)`: a browser session (the staff console, the
  volunteer portal, the staff API's reads).
- `staff`: a staff member's API: the admin token, or intake's token with
  the claims of the staff member the console acts for (`X-Linli-Staff`,
  below); the view applies the claims' scope (`g.acting`).
- `public`: open to anybody (residents' pages, tracking, Open311 with its own
  API-key rule inside, health). Rules that depend on the data (whose inbox,
  whether a volunteer is on the request) stay inside the view, after the guard.

Staff identity across services. Staff sign in once, to the console (intake),
the one staff UI; other services never hold a staff session. When the console
reads another service for a signed-in staff member it sends, with its own
service token, their claims (who, role, grid, stairwells) signed with that
token and valid for a minute (`vouch`). The receiving service checks the
signature and the age (`acting_staff`) and limits its answer to the claims'
scope. Sign-out (or deactivation) ends the session in intake, and with it the
only place claims are made: nothing stays valid elsewhere beyond a minute.
Writes go as tasks through the outbox, carrying the actor, as before.
"""
from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import wraps

from flask import current_app, g, request
from flask_smorest import abort
from itsdangerous import BadSignature, URLSafeTimedSerializer

from .settings import CALLERS


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    return header[7:] if header.startswith("Bearer ") else ""


def bearer_matches(*names: str) -> bool:
    """Whether `Authorization: Bearer <token>` carries one of the configured
    tokens (by config name); none configured matches nothing."""
    given = _bearer()
    return any(given and (expected := current_app.config.get(name))
               and hmac.compare_digest(given.encode(), expected.encode()) for name in names)


def caller() -> str | None:
    """Who is calling, by bearer token: "admin", or the calling service's
    name ("requests", "volunteers"); None for anybody else."""
    if bearer_matches("ADMIN_TOKEN"):
        return "admin"
    return next((c for c in CALLERS if bearer_matches(f"{c.upper()}_TOKEN")), None)


def require_caller(*allowed: str) -> str:
    """Let in only the named callers ("admin" and/or service names): each
    service's token opens just what that service needs."""
    who = caller()
    if who is None:
        abort(401, message="a valid bearer token is required")
    if who not in allowed:
        abort(403, message="this token is not for this interface")
    return who


def _mark(view: Callable, rule: str) -> Callable:
    # A tuple, so that a view given two guards shows two marks (and fails the test).
    view.access = (*getattr(view, "access", ()), rule)
    return view


def public(view: Callable) -> Callable:
    """Open to anybody: the view itself decides the rest (a tracking code,
    an offer link's token, an Open311 API key)."""
    return _mark(view, "public")


def callers(*allowed: str) -> Callable[[Callable], Callable]:
    """Only these bearer-token callers: 401 without a valid token, 403 for a
    token not in `allowed`. functools.wraps keeps flask-smorest's `_apidoc`,
    so the OpenAPI document does not change."""
    def guard(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args, **kwargs):
            require_caller(*allowed)
            return view(*args, **kwargs)
        return _mark(wrapper, f"callers: {', '.join(allowed)}")
    return guard


def signed_in(identify: Callable[[], bool], refuse: Callable[[], object]) -> Callable[[Callable], Callable]:
    """A guard for a browser session: `identify()` finds who is signed in
    (and puts them on `g`) and says whether they may go on; anybody else
    gets `refuse()` (a redirect to the sign-in page, or an error)."""
    def guard(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args, **kwargs):
            if not identify():
                return refuse()
            return view(*args, **kwargs)
        return _mark(wrapper, f"signed in: {identify.__name__}")
    return guard


# --- the staff member the console acts for ---

STAFF_HEADER = "X-Linli-Staff"
CLAIMS_SECONDS = 60  # claims are made per call: a minute covers a slow network, not a session


@dataclass(frozen=True)
class StaffClaims:
    """Who acts and where they may: the console's word for a signed-in staff member."""

    actor: str  # "staff:12", or "admin-token" for automation
    role: str  # admin, grid_leader, hallway_leader
    grid: str | None = None
    stairwells: tuple[str, ...] = field(default_factory=tuple)  # "building:unit"

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def allows_place(self, grid: str | None, building: str | None, unit: str | None) -> bool:
        if self.admin:
            return True
        if self.role == "grid_leader":
            return grid is not None and grid == self.grid
        return f"{building}:{unit}" in self.stairwells


ADMIN_CLAIMS = StaffClaims("admin-token", "admin")


def _claims_signer() -> URLSafeTimedSerializer:
    # Keyed with intake's service token: only intake can vouch for staff, and
    # every service that takes intake's calls already holds that token.
    return URLSafeTimedSerializer(current_app.config["REQUESTS_TOKEN"], salt="linli.staff-claims")


def vouch(claims: StaffClaims) -> str:
    """The header value that carries `claims` on intake's next call."""
    return _claims_signer().dumps(asdict(claims))


def acting_staff() -> StaffClaims | None:
    """The claims intake sent with this call, if signed and fresh."""
    value = request.headers.get(STAFF_HEADER, "")
    if not value or not current_app.config.get("REQUESTS_TOKEN"):
        return None
    try:
        data = _claims_signer().loads(value, max_age=CLAIMS_SECONDS)
        return StaffClaims(data["actor"], data["role"], data.get("grid"), tuple(data.get("stairwells") or ()))
    except (BadSignature, KeyError, TypeError, ValueError):
        return None


def staff(view: Callable) -> Callable:
    """A staff member's API: the admin token (automation, all of it), or
    intake's token vouching for a signed-in staff member (their scope). The
    view reads who acts from `g.acting`."""
    @wraps(view)
    def wrapper(*args, **kwargs):
        who = require_caller("admin", "requests")
        if who == "admin":
            g.acting = ADMIN_CLAIMS
        else:
            g.acting = acting_staff()
            if g.acting is None:
                abort(401, message="the console must say which staff member it acts for")
        return view(*args, **kwargs)
    return _mark(wrapper, "staff")
